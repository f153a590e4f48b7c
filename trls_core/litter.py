"""Temporary files and folders that a killed process left beside its outputs, removed on the next run.

:mod:`trls_core.io` writes every output to ``.<name>.<pid>.<random>.tmp``
(a file, or a folder holding e.g. partial downloads) and renames it into
place; :func:`~trls_core.io.atomic_dir` moves the previous output aside as
``.<name>.old.<pid>`` for the instant of the swap. A process killed in
between (``kill -9``, out of memory, a lost machine) leaves them behind for
good, each as large as the output. A stage calls :func:`remove_litter` on
its output's folder before it writes.

An entry is removed only when its writer cannot be running:

- the pid in its name belongs to no running process, or to one that started
  after the entry was last written (the pid was reused, as it is after a
  container restart);
- a name without a pid (written before names carried one) last written
  before this process started.

So another live process's temp is never touched. ``.<name>.old.<pid>`` of a
dead writer whose ``<name>`` is missing (killed between moving the old output
aside and putting the new one in place) is the last good output: it is moved
back, not removed. Pids are those of this machine: a data folder shared
between machines over a network file system needs one writer at a time.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

__all__ = ["remove_litter", "writer_alive"]

logger = logging.getLogger(__name__)

_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[a-z0-9_]{8}\.tmp$")  # io.temp_prefix + mkstemp's 8 chars
_OLD = re.compile(r"^\.(?P<name>.+)\.old\.(?P<pid>\d+)$")
_NO_PID = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp$")
#: /proc's start times are in clock ticks from a boot time given in whole seconds.
START_SLACK_S = 2.0


def _boot_time() -> float | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        pass
    return None


def process_start(pid: int) -> float | None:
    """Start time of process ``pid`` (seconds since the epoch) from ``/proc``; None where unknown."""
    boot = _boot_time()
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, starttime; the name in (...) may hold spaces
    except (OSError, IndexError, ValueError):
        return None
    return None if boot is None else boot + ticks / os.sysconf("SC_CLK_TCK")


def writer_alive(pid: int, last_written: float) -> bool:
    """Whether process ``pid`` is running and was already running when the entry was ``last_written``."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: running
    except (OverflowError, OSError):
        return False
    started = process_start(pid)
    return started is None or started <= last_written + START_SLACK_S


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_litter(folder: Path, name: str | None = None) -> list[Path]:
    """Remove dead writers' temporaries directly in ``folder`` (only those of output ``name`` when given).

    Returns what was removed or moved back; each is logged with the reason.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    own_start = process_start(os.getpid())
    handled: list[Path] = []
    for entry in sorted(folder.iterdir()):
        match = _TEMP.match(entry.name) or _OLD.match(entry.name)
        legacy = None if match else _NO_PID.match(entry.name)
        found = match or legacy
        if found is None or (name is not None and found["name"] != name):
            continue
        try:
            st = entry.lstat()
        except FileNotFoundError:  # its writer finished meanwhile
            continue
        if match is not None:
            pid = int(match["pid"])
            if writer_alive(pid, max(st.st_mtime, st.st_ctime)):  # ctime: a rename (``.old.<pid>``) keeps mtime
                continue
            why = f"its writer, pid {pid}, is gone"
        else:
            if own_start is None or st.st_mtime >= own_start:
                continue
            why = "no pid in the name, written before this process started"
        dest = folder / found["name"]
        if _OLD.match(entry.name) and not dest.exists():
            os.replace(entry, dest)
            logger.warning("restored %s from %s, left by a killed process (%s)", dest, entry.name, why)
        else:
            _remove(entry)
            logger.warning("removed %s, left by a killed process (%s)", entry, why)
        handled.append(entry)
    return handled
