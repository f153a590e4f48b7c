"""Helpers shared by the bench scripts (bench/ holds scripts, not a package).

``python bench/x.py`` puts bench/ first on sys.path, so a script imports
this module by name.
"""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def run_trls(*args: str) -> float:
    """Run one ``trls`` command (the venv's, beside this interpreter) from the project root.

    Benchmarks that measure what a user gets go through the same commands
    a user types; fails loudly; returns the command's wall seconds.
    """
    import subprocess
    import time

    exe = Path(sys.executable).with_name("trls")
    t0 = time.perf_counter()
    print("+ trls", " ".join(args), flush=True)
    subprocess.run([str(exe), *args], cwd=BENCH.parent, check=True)
    return round(time.perf_counter() - t0, 1)
