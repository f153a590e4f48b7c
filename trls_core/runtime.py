"""Process-level settings for training processes (called by entry points, never at import).

Why the allocator: torch's CPU tensors are allocated with glibc ``malloc``.
Blocks above the mmap threshold (dynamic, at most 32 MiB) are mapped fresh
and returned to the kernel on free, so every training step that allocates
the same activations again page-faults and zeroes them anew; how often
depends on what else the process has allocated before (measured on the
2-core box, the same evaluation units: 0.6 M minor faults in one process,
6.8 M in another, 2.6 s vs 17.7 s of system time, units 14 % slower).
Fixing the thresholds makes the heap keep and reuse those blocks: 0.22 M
and 0.27 M faults in the two. The cost is up to ``trim`` bytes of freed
heap kept mapped per arena (RSS, not work).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

logger = logging.getLogger(__name__)

MALLOC_ENV = "TRLS_MALLOC_TUNE"
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_DONE: dict[str, int] = {}
_OFF = ("0", "false", "no", "off")


def resolve_device(device: str) -> str:
    """``auto`` -> cuda when available, else cpu."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def env_enabled(name: str, default: bool = True) -> bool:
    """An on/off switch from the environment: ``0``/``false``/``no``/``off`` (any case) is off."""
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() not in _OFF


def tune_malloc(mmap_threshold: int = 64 << 20, trim_threshold: int = 512 << 20) -> dict[str, int]:
    """Fix glibc's mmap and trim thresholds for this process; returns what was set ({} when nothing).

    Off with env ``TRLS_MALLOC_TUNE=0``; a no-op off Linux/glibc, and where
    ``GLIBC_TUNABLES`` already sets either threshold (the user's choice
    wins). Idempotent.
    """
    if _DONE:
        return dict(_DONE)
    if not env_enabled(MALLOC_ENV):
        return {}
    if not sys.platform.startswith("linux") or "malloc.mmap_threshold" in os.environ.get("GLIBC_TUNABLES", ""):
        return {}
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt
        return {}
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)) != 1 or mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)) != 1:
        logger.debug("mallopt refused the thresholds; allocator left as it was")
        return {}
    _DONE.update(mmap_threshold=int(mmap_threshold), trim_threshold=int(trim_threshold))
    return dict(_DONE)


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def exit_on_sigterm() -> bool:
    """Make SIGTERM a normal exit (``SystemExit(143)``) for this process; True when installed.

    Why: with the default handler SIGTERM ends the process at once, so
    ``finally`` blocks and ``atexit`` never run. Prefect's flow engine
    catches SIGTERM, marks the run Crashed, then re-sends it to the handler
    it found; with the default one that skipped the shutdown of the
    ephemeral Prefect API server, a child process left running after a
    stopped ``trls compare`` (measured). Raising ``SystemExit`` instead lets
    the interpreter unwind: temp files are removed, MLflow runs end, the
    server is stopped. Only replaces the default handler, only in the main
    thread (signals are set there); a handler someone else set is kept.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None):
        return signal.getsignal(signal.SIGTERM) is _raise_exit
    signal.signal(signal.SIGTERM, _raise_exit)
    return True


# docs/stack.md: telemetry off and a start-up limit that a loaded 2-core machine meets
QUIET_DEFAULTS: dict[str, str] = {
    "DO_NOT_TRACK": "true",  # prefect and mlflow (mlflow ignores "1")
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "60",
    "DVC_NO_ANALYTICS": "1",
    # MLflow retries a failed request 7 times with back-off (~4 min) before failing; against a tracking
    # server that went away mid-run, each log call would stall that long (failed logs wait in pending files)
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
}


def quiet_defaults() -> dict[str, str]:
    """Set ``QUIET_DEFAULTS`` where the environment has no value; returns what was set.

    Why: the Makefile exports these, but a user who runs ``.venv/bin/trls``
    directly on a hospital machine without internet otherwise gets
    "Failed to send telemetry" errors from the ephemeral Prefect server and
    a 20-s start-up limit it can miss under load. A value the user set wins.
    Must run before prefect or mlflow is imported (they read it then).
    """
    set_now = {k: v for k, v in QUIET_DEFAULTS.items() if k not in os.environ}
    os.environ.update(set_now)
    return set_now
