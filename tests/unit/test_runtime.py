"""Process settings of the entry points: tune_malloc (freed activation-sized blocks are reused) and
exit_on_sigterm (a stopped run unwinds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

_PROBE = """
import json, resource, sys
import numpy as np
from trls_core.runtime import tune_malloc
done = tune_malloc() if sys.argv[1] == "tuned" else {}
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096
base = rss()
a = np.ones(6 << 20)  # 48 MiB: above glibc's largest dynamic mmap threshold (32 MiB)
del a
kept = rss() - base  # freed but still mapped: the next allocation of that size reuses it
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    a = np.ones(6 << 20)
    del a
print(json.dumps({"kept": kept, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, "done": done}))
"""


def _faults(mode: str, env_extra: dict[str, str] | None = None) -> dict:
    import os

    env = {**os.environ, **(env_extra or {})}
    env.pop("GLIBC_TUNABLES", None)
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_tuned_process_reuses_large_blocks_instead_of_faulting_them_in_again() -> None:
    plain, tuned = _faults("plain"), _faults("tuned")
    if not tuned["done"]:
        pytest.skip("no glibc mallopt here")
    assert tuned["done"] == {"mmap_threshold": 64 << 20, "trim_threshold": 512 << 20}
    assert plain["kept"] < 8 << 20  # plain glibc: a 48 MiB block is unmapped on free ...
    assert tuned["kept"] > 40 << 20  # tuned: kept on the heap for the next allocation
    assert tuned["faults"] < plain["faults"]  # ... so reallocating it faults less (huge pages blur the count)


def test_env_switch_turns_it_off() -> None:
    assert _faults("tuned", {"TRLS_MALLOC_TUNE": "0"})["done"] == {}


_SIGTERM_PROBE = """
import atexit, os, signal, sys, time
from pathlib import Path
from trls_core.runtime import exit_on_sigterm
mark = Path(sys.argv[1])
if sys.argv[2] == "installed":
    assert exit_on_sigterm() is True
    assert exit_on_sigterm() is True  # idempotent
atexit.register(lambda: mark.write_text(mark.read_text() + "|atexit"))
try:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)
finally:
    mark.write_text("finally")
"""


@pytest.mark.parametrize("mode", ["installed", "default"])
def test_sigterm_unwinds_only_with_exit_on_sigterm(tmp_path, mode: str) -> None:
    """With it, SIGTERM runs finally blocks and atexit (where Prefect stops its API server) and exits 143."""
    mark = tmp_path / "mark"
    proc = subprocess.run([sys.executable, "-c", _SIGTERM_PROBE, str(mark), mode], capture_output=True, timeout=60)
    if mode == "installed":
        assert proc.returncode == 143, proc.stderr.decode()
        assert mark.read_text() == "finally|atexit"
    else:  # the default handler ends the process at once: nothing ran
        assert proc.returncode == -15
        assert not mark.exists()


def test_exit_on_sigterm_keeps_a_handler_someone_else_set() -> None:
    code = """
import signal
from trls_core.runtime import exit_on_sigterm
mine = lambda s, f: None
signal.signal(signal.SIGTERM, mine)
assert exit_on_sigterm() is False
assert signal.getsignal(signal.SIGTERM) is mine
print("kept")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "kept", out.stderr


def test_trls_console_script_runs_the_entry_point_with_process_settings() -> None:
    """`trls` must call cli.main (malloc tuning, SIGTERM unwinding), not the bare typer app."""
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="console_scripts") if e.name == "trls"]
    assert ep.value == "trls_core.cli:main"


def test_quiet_defaults_fill_gaps_and_keep_the_users_values(monkeypatch: pytest.MonkeyPatch) -> None:
    from trls_core.runtime import QUIET_DEFAULTS, quiet_defaults

    for k in QUIET_DEFAULTS:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("DO_NOT_TRACK", "false")  # the user's choice
    set_now = quiet_defaults()
    assert "DO_NOT_TRACK" not in set_now and os.environ["DO_NOT_TRACK"] == "false"
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert quiet_defaults() == {}  # nothing left to fill
