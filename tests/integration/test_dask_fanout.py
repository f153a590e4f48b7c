"""Evaluation units on a real 2-worker Dask LocalCluster (``evaluate.runner: dask``) against the inline runner.

Equality is exact, bit for bit, for every field but the wall-clock ones
(``unit_seconds``, ``fit_seconds``, a history row's ``seconds``), when both
runs use the same number of torch threads: Dask's nanny starts each worker
with ``OMP_NUM_THREADS=1``, so the inline run here sets ``pretrain.threads=1``
(``load_context`` applies it). With torch's default 2 threads inline, the
fine-tuning ``train_loss`` of later epochs differed in the 9th significant
digit (another summation order in 2-thread kernels; measured 2.5e-9
relative) while every score, prediction and probe result stayed equal. The
fingerprints are compared too: the runner is not part of them, so switching
runners reuses stored results.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.scale]

WALL_CLOCK = ("seconds", "unit_seconds", "fit_seconds")


def _without_wall_clock(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _without_wall_clock(v) for k, v in x.items() if k not in WALL_CLOCK}
    if isinstance(x, list):
        return [_without_wall_clock(v) for v in x]
    return x


def _unit_docs(folder: Path) -> dict[str, Any]:
    return {p.name: _without_wall_clock(json.loads(p.read_text())) for p in sorted(folder.glob("*.json"))}


def _spawned_children() -> set[int]:
    """Live children of this process started by multiprocessing's spawn (what a LocalCluster's nannies are).

    Multiprocessing's resource tracker, also a child, lives as long as this process and is not counted.
    """
    me, out = os.getpid(), set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == me and fields[0] != "Z" and b"spawn_main" in cmd:
                out.add(int(entry))
    return out


def _task_run_states(flow_run_id: Any) -> dict[str, str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {r.name: r.state.type.value for r in runs if r.state}


def test_dask_units_equal_the_inline_units_on_a_two_worker_local_cluster(
    tiny_project: Path, tiny_params: Path, prefect_api: None
) -> None:
    from flows.evaluate import evaluate_flow
    from flows.pretrain import pretrain_flow
    from trls_core.config import load_params
    from trls_core.stages.evaluate import units_dir, units_for

    common = {"root": str(tiny_project), "params_path": str(tiny_params), "track": False}
    # 2 seeds x (probe, fine-tuning on all labels, random-encoder control) + the spectrogram control;
    # 1 torch thread: the workers' count (see the module docstring)
    small = ["pretrain.epochs=1", "evaluate.fractions=[1.0]", "pretrain.threads=1"]
    t0 = time.perf_counter()
    assert pretrain_flow(**common, sets=small, return_state=True).is_completed()
    t1 = time.perf_counter()
    state = evaluate_flow(**common, sets=small, return_state=True)
    t2 = time.perf_counter()
    assert state.is_completed(), state.message
    params = load_params(tiny_params, None, small)
    folder = units_dir(tiny_project, params)
    inline = _unit_docs(folder)
    assert len(inline) == len(units_for(params)) == 7

    before = _spawned_children()
    sets = [*small, "evaluate.runner=dask", "evaluate.dask.n_workers=2", "evaluate.dask.threads_per_worker=1"]
    state = evaluate_flow(**common, sets=sets, force=True, return_state=True)  # force: every unit runs again
    t3 = time.perf_counter()
    assert state.is_completed(), state.message
    on_dask = _unit_docs(folder)
    assert on_dask == inline, [name for name in inline if on_dask.get(name) != inline[name]]

    # the flow's cluster is gone (its 2 workers and nannies), and every unit's task run reached Completed
    # in the API: the workers sent their last states before they were closed
    left = _spawned_children() - before
    assert not left, f"processes left after the flow: {left}"
    states = _task_run_states(state.state_details.flow_run_id)
    units = {n: s for n, s in states.items() if "seed=" in n}
    assert len(units) == 7 and set(units.values()) == {"COMPLETED"}, states
    print(f"pretrain {t1 - t0:.1f} s, evaluate inline {t2 - t1:.1f} s, on 2 Dask workers {t3 - t2:.1f} s")


def test_unreachable_scheduler_exits_2_through_the_cli_naming_it(tiny_project: Path, tiny_params: Path) -> None:
    """``trls pipeline`` checks the scheduler before Prefect starts: exit 2, the address named, nothing run."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"  # closed once the block ends
    cmd = [
        str(Path(sys.executable).with_name("trls")),
        "pipeline",
        "--root",
        str(tiny_project),
        "--params",
        str(tiny_params),
        "--no-track",
        "--set",
        "evaluate.runner=dask",
        "--set",
        f"evaluate.dask.address={address}",
        "--set",
        "evaluate.dask.connect_timeout_s=2",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    took = time.perf_counter() - t0
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"evaluate.dask.address '{address}'" in proc.stderr and "within 2 s" in proc.stderr, proc.stderr[-2000:]
    assert not (tiny_project / "models").exists()  # failed before pretraining
    print(f"trls pipeline with an unreachable scheduler: exit 2 after {took:.1f} s (2 s connect timeout)")
