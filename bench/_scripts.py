"""Load another bench script as a module: bench/ holds scripts, not a package.

``python bench/x.py`` puts bench/ first on sys.path, so a script imports
this helper by name and reuses a sibling's functions without copying them.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parent


def load_script(name: str) -> ModuleType:
    """``bench/<name>.py`` as a module (loaded once per process)."""
    key = f"trls_bench_{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, BENCH / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[key] = mod
    spec.loader.exec_module(mod)
    return mod


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
