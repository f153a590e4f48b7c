"""Record pooling: window-level features, logits and labels -> one row per record.

Why a module of its own: datasets scored per record (CinC 2017 decides a
whole ECG recording, not a 10-s window of it) evaluate every method the same
way: a record's linear-probe feature is the mean of its windows' embeddings,
a fine-tuned model's record logits are the mean of its windows' logits (the
same thing for a linear head: the head of the mean is the mean of the
heads), and label fractions are fractions of *records*. One definition here
keeps the probe, fine-tuning, the controls and the floors on the same rows.

Pure numpy/scipy: no torch, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import sparse

from trls_core.errors import DataError


@dataclass(frozen=True)
class Groups:
    """Which record each window of a split belongs to.

    ``inverse[i]`` is the record row (0..n_records-1) of window ``i``;
    records are ordered by their id. ``counts[r]`` windows belong to record ``r``.
    """

    ids: np.ndarray
    inverse: np.ndarray
    counts: np.ndarray

    @classmethod
    def of(cls, record_of_window: np.ndarray, name: str = "records") -> Groups:
        r = np.asarray(record_of_window).reshape(-1)
        if r.size == 0:
            raise DataError(f"{name}: no windows to group")
        ids, inverse, counts = np.unique(r, return_inverse=True, return_counts=True)
        return cls(ids=ids, inverse=inverse.astype(np.int64), counts=counts.astype(np.int64))

    @property
    def n(self) -> int:
        return int(self.ids.size)

    def __len__(self) -> int:
        return int(self.inverse.size)

    @cached_property
    def order(self) -> np.ndarray:
        """Window indices sorted by record (stable): record ``r``'s windows are
        ``order[starts[r] : starts[r] + counts[r]]``."""
        return np.argsort(self.inverse, kind="stable")

    @cached_property
    def starts(self) -> np.ndarray:
        """Where each record's windows begin in :attr:`order`."""
        return np.cumsum(self.counts) - self.counts

    def mean_matrix(self) -> sparse.csr_matrix:
        """(n_records, n_windows) sparse matrix whose product with (N, D) features is the per-record mean."""
        n_win = self.inverse.size
        w = 1.0 / self.counts[self.inverse]
        return sparse.csr_matrix((w, (self.inverse, np.arange(n_win))), shape=(self.n, n_win))

    def mean(self, values: np.ndarray) -> np.ndarray:
        """Per-record mean of ``values`` (N, ...) -> (n_records, prod(...)) float32."""
        v = np.asarray(values)
        if len(v) != self.inverse.size:
            raise DataError(f"record pooling: {len(v)} rows but {self.inverse.size} windows")
        flat = v.reshape(len(v), -1).astype(np.float32, copy=False)
        return np.asarray(self.mean_matrix() @ flat, dtype=np.float32)

    def labels(self, y: np.ndarray, name: str = "labels") -> np.ndarray:
        """The label of each record; windows of one record that disagree are an error naming the record."""
        y = np.asarray(y).reshape(-1).astype(np.int64)
        if len(y) != self.inverse.size:
            raise DataError(f"{name}: {len(y)} labels but {self.inverse.size} windows")
        first = y[self.order[self.starts]]
        bad = np.flatnonzero(first[self.inverse] != y)
        if bad.size:
            rec = self.ids[self.inverse[bad[0]]].item()
            raise DataError(
                f"{name}: record {rec} has windows with different labels "
                f"({sorted(set(y[self.inverse == self.inverse[bad[0]]].tolist()))}); "
                "record-level evaluation needs one label per record"
            )
        return first

    def windows_of(self, record_rows: np.ndarray) -> np.ndarray:
        """Indices of the windows of the given record rows (sorted), e.g. a label fraction of records."""
        keep = np.zeros(self.n, dtype=bool)
        keep[np.asarray(record_rows, dtype=np.int64)] = True
        return np.flatnonzero(keep[self.inverse])

    def subset(self, windows: np.ndarray) -> Groups:
        """The grouping of a subset of the windows (by index)."""
        return Groups.of(self.ids[self.inverse[np.asarray(windows, dtype=np.int64)]])
