"""tune_malloc: freed activation-sized blocks are reused from the heap instead of page-faulted anew."""

from __future__ import annotations

import json
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
