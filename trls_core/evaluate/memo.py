"""Process-wide memos of deterministic evaluation steps, keyed by the exact content of their inputs.

Why: one evaluation runs ~36 units per task, and many of them repeat the
same computation on the same inputs: the linear probe of every evaluation
seed embeds the same pretrained encoder and fits the same lbfgs problem (the
seed does not enter either), every fine-tuning unit embeds the same
validation split, the 100 % fraction embeds and fits exactly what the probe
did, and the pipeline's second task embeds the same splits again. Measured
(Bonn, ``small`` profile, 1 thread): ~7 s per full embedding and ~7 s per
5-class probe fit, a third of the evaluation's CPU time.

Opt-in: a memo only remembers inside :func:`memoised` (the evaluation
stage wraps each unit in it), so a library call elsewhere (a test, a
benchmark) computes as it always did. A hit returns what the computation
returned for inputs with the same bytes
(SHA-1 of the arrays' contents, shapes and dtypes), so results are
unchanged; callers put everything else that decides the result (weights
digest, settings, thread count) into the key. Entries are evicted least
recently used beyond a byte budget. Cached arrays are read-only, so a
caller that tried to modify one in place would fail instead of corrupting
later hits.
"""

from __future__ import annotations

import contextvars
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

__all__ = ["Memo", "array_digest", "memoised"]

_ACTIVE: contextvars.ContextVar[bool] = contextvars.ContextVar("trls_memo_active", default=False)


@contextmanager
def memoised() -> Iterator[None]:
    """Within this block (this thread / context), memos remember and answer repeats."""
    token = _ACTIVE.set(True)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def array_digest(*arrays: Any) -> str:
    """SHA-1 of the arrays' bytes, shapes and dtypes (numpy arrays, torch tensors or None)."""
    h = hashlib.sha1()
    for a in arrays:
        if a is None:
            h.update(b"none;")
            continue
        arr = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
        arr = np.ascontiguousarray(arr)
        h.update(f"{arr.dtype.str}{arr.shape};".encode())
        h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


def _nbytes(value: Any) -> int:
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, tuple):
        return sum(_nbytes(v) for v in value)
    return 1024


class Memo:
    """A thread-safe LRU memo bounded by the bytes of its numpy values (``max_bytes``)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_or_compute(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """The memoised value of ``key``, computing (and storing) it on a miss; outside :func:`memoised`, computed."""
        if not _ACTIVE.get():
            return compute()
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key][0]
            self.misses += 1
        value = compute()
        if isinstance(value, np.ndarray):
            value.setflags(write=False)
        size = _nbytes(value)
        if size > self.max_bytes:
            return value
        with self._lock:
            if key not in self._items:
                self._items[key] = (value, size)
                self._bytes += size
            while self._bytes > self.max_bytes and self._items:
                _, (_, old) = self._items.popitem(last=False)
                self._bytes -= old
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0
