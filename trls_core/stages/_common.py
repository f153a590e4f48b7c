"""Shared plumbing for the DVC stage entry points.

A stage is ``python -m trls_core.stages.<name> DATASET``: it loads params,
calls one pure function and maps user errors to a one-line message and exit
code 2 (a traceback is for bugs, not for a bad input file).
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from trls_core.config import Params, load_params
from trls_core.errors import TrlsError

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def disk_full(exc: BaseException) -> bool:
    """An OSError (or pyarrow's / safetensors' wrapping of one) saying the disk or quota is full."""
    text = str(exc)
    return getattr(exc, "errno", None) in _DISK_FULL or any(
        s in text for s in ("No space left on device", "Disk quota exceeded", "os error 28", "errno 28")
    )


def run_stage(name: str, fn: Callable[[Path, str, Params], None], argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"trls_core.stages.{name}")
    parser.add_argument("dataset")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--root", default=".")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"[{name}] %(message)s")
    try:
        params = load_params(args.params)
        params.dataset(args.dataset)
        fn(Path(args.root), args.dataset, params)
    except TrlsError as exc:
        print(f"error: stage {name} {args.dataset}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if not disk_full(exc):
            raise
        where = getattr(exc, "filename", None) or Path(args.root).resolve()
        print(
            f"error: stage {name} {args.dataset}: disk full writing {where} ({exc}); the previous outputs are "
            "unchanged: free some space and rerun",
            file=sys.stderr,
        )
        return 2
    return 0
