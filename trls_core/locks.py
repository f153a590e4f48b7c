"""File locks: one writer of a project root at a time, and short critical sections (promotion).

Why ``fcntl.flock`` on an open file: the kernel releases the lock when its
holder dies however it dies (``kill -9``, OOM, power loss of a container), so
a crashed run never leaves a lock that blocks the next one. The lock file also
records who holds it (pid, host, start time, command) so the error a second
start gets names the holder. The file is never deleted (deleting a locked
file would let a third process lock a new file of the same name while the
second still holds the old one); a clean release empties it, so a non-empty
record found by the next holder is a crashed run's, recovered with a log line.

- :func:`workspace_lock`: ``<root>/.trls/pipeline.lock``, taken by the
  pipeline flow, the pretrain / evaluate flows and ``trls pretrain`` /
  ``trls evaluate`` (everything that writes ``models/`` or ``reports/``).
  Re-entrant within one process (the pipeline flow calls the pretrain and
  evaluate flows in its own process); a second process fails at once with
  :class:`WorkspaceLocked` (a :class:`~trls_core.errors.TrlsError`: exit 2).
- :func:`hold`: the plain, non-re-entrant lock, waiting up to ``wait``
  seconds (promotion's compare-and-set, :mod:`trls_core.tracking.promotion`).

Linux/macOS only (``fcntl``). flock on NFS is emulated with POSIX locks by
Linux clients, which also work across hosts; the holder record says the host.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import logging
import os
import shlex
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from trls_core.errors import TrlsError

logger = logging.getLogger(__name__)

__all__ = [
    "LOCK_DIR",
    "LockHeld",
    "WorkspaceLocked",
    "describe",
    "hold",
    "holder_of",
    "workspace_lock",
    "workspace_lock_path",
]

LOCK_DIR = ".trls"
WORKSPACE_LOCK = "pipeline.lock"
_POLL_S = 0.05


class LockHeld(TrlsError):
    """Another process holds the lock; the message names it (pid, host, since, command)."""

    def __init__(self, message: str, path: Path, holder: dict[str, Any] | None) -> None:
        super().__init__(message)
        self.path = path
        self.holder = holder


class WorkspaceLocked(LockHeld):
    """Another pipeline / pretrain / evaluate writes this project root (exit 2 from the CLI)."""


def _command() -> str:
    argv = [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv and sys.argv[0] else ["python"]
    text = shlex.join(argv)
    return text if len(text) <= 300 else text[:297] + "..."


def _record(what: str) -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "what": what,
        "command": _command(),
    }


def _parse(text: str) -> dict[str, Any] | None:
    """The holder record in a lock file's text; None when empty (released cleanly) or unreadable."""
    if not text.strip():
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        return {"unreadable": text[:200]}
    return doc if isinstance(doc, dict) else {"unreadable": text[:200]}


def holder_of(path: Path) -> dict[str, Any] | None:
    """The holder recorded in lock file ``path`` (None: no record); reading takes no lock."""
    try:
        return _parse(Path(path).read_text())
    except OSError:
        return None


def _alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError, OverflowError):
        return True  # exists (another user's), or not a pid we can judge
    return True


def describe(holder: dict[str, Any] | None) -> str:
    """``pid 123 on host h since 2026-01-01T10:00:00Z (pipeline flow: `trls pipeline`)``, or what is known."""
    if not holder:
        return "a process that has not written its record yet"
    if "unreadable" in holder:
        return f"a process whose record is unreadable ({holder['unreadable']!r})"
    what = f"{holder.get('what') or '?'}: `{holder.get('command') or '?'}`"
    return f"pid {holder.get('pid')} on host {holder.get('host')} since {holder.get('since')} ({what})"


def _try_lock(f: IO[str]) -> bool:
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _held_message(path: Path, holder: dict[str, Any] | None) -> str:
    msg = f"{path} is held by {describe(holder)}"
    if holder and holder.get("host") == socket.gethostname() and not _alive(holder.get("pid", -1)):
        msg += (
            f"; pid {holder.get('pid')} is no longer running but a process it started still holds the lock "
            f"(find it with `fuser {path}`)"
        )
    return msg


@contextlib.contextmanager
def hold(path: str | os.PathLike[str], what: str, wait: float = 0.0) -> Iterator[dict[str, Any]]:
    """Hold the exclusive lock on ``path`` for a block; yields this holder's record.

    Waits up to ``wait`` seconds for another holder to finish, then raises
    :class:`LockHeld` naming it. Not re-entrant: a second ``hold`` of the same
    path in this process (any thread) waits for the first, like another process.
    A record left by a holder that died is logged (a warning) and replaced.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+", encoding="utf-8")  # never truncates before the lock is ours
    try:
        deadline = time.monotonic() + max(0.0, wait)
        while not _try_lock(f):
            if time.monotonic() >= deadline:
                holder = holder_of(path)
                raise LockHeld(_held_message(path, holder), path, holder)
            time.sleep(_POLL_S)
        f.seek(0)
        stale = _parse(f.read())
        if stale is not None:
            gone = "" if stale.get("host") != socket.gethostname() or _alive(stale.get("pid", -1)) else ", gone"
            logger.warning(
                "%s: recovered a stale lock left by %s%s (it did not release it)", path, describe(stale), gone
            )
        record = _record(what)
        f.seek(0)
        f.truncate()
        f.write(json.dumps(record))
        f.flush()
        os.fsync(f.fileno())
        try:
            yield record
        finally:
            f.seek(0)
            f.truncate()  # a clean release leaves no record: a record found later is a crashed holder's
            f.flush()
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    finally:
        f.close()


def workspace_lock_path(root: str | os.PathLike[str]) -> Path:
    """``<root>/.trls/pipeline.lock``: the lock of everything that writes ``models/`` and ``reports/``."""
    return Path(root).expanduser().resolve() / LOCK_DIR / WORKSPACE_LOCK


@dataclass
class _Held:
    stack: contextlib.ExitStack
    depth: int


_HELD: dict[Path, _Held] = {}
_HELD_LOCK = threading.Lock()


@contextlib.contextmanager
def workspace_lock(root: str | os.PathLike[str], what: str) -> Iterator[Path]:
    """Hold ``root``'s workspace lock for a block; re-entrant within this process; yields the lock path.

    A second process gets :class:`WorkspaceLocked` at once, naming the
    holder (pid, host, since, command), so ``trls pipeline`` started twice on
    one checkout fails with exit 2 instead of two runs writing ``models/``
    together. Inside this process the pipeline flow's nested pretrain and
    evaluate flows (any thread) share the outer hold.
    """
    path = workspace_lock_path(root)
    with _HELD_LOCK:
        held = _HELD.get(path)
        if held is not None:
            held.depth += 1
        else:
            stack = contextlib.ExitStack()
            try:
                stack.enter_context(hold(path, what))
            except LockHeld as exc:
                raise WorkspaceLocked(
                    f"workspace {path.parent.parent} is in use: {exc} -- one pipeline / pretrain / evaluate per "
                    "project root at a time; wait for it to finish or stop it (a crashed holder's lock is released "
                    "by the system and recovered on the next start)",
                    exc.path,
                    exc.holder,
                ) from None
            held = _HELD[path] = _Held(stack, 1)
    try:
        yield path
    finally:
        with _HELD_LOCK:
            held.depth -= 1
            if held.depth == 0:
                del _HELD[path]
                held.stack.close()
