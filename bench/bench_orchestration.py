"""Orchestration + tracking overhead: the pipeline flow vs the same work as bare Python calls.

Why: users run the job as a Prefect flow with MLflow tracking and model
registration (`make run`); the target is that this costs at most 10 % over
calling the training and evaluation functions directly.

Each run is a fresh ``python`` process (so each pays the imports, and each
flow run starts its own ephemeral Prefect server with a fresh
``PREFECT_HOME`` and sqlite MLflow store, as ``make run`` on a fresh clone
does), in its own fresh copy of the project's built data (no run reuses
another's checkpoints or unit results), timed from process start to exit:

- ``bare``: ``trls_core.stages.pretrain.pretrain_all`` then
  ``trls_core.stages.evaluate.evaluate_all`` (what `trls pretrain` and
  `trls evaluate` call);
- ``flow``: ``flows.pipeline.pipeline_flow(skip_data=True)`` on an
  ephemeral Prefect API, with MLflow tracking, nested runs per seed and
  unit, the report artifacts, and model registration + promotion.

The machine's speed drifts by several percent over minutes (a shared VM),
so the modes are interleaved ABBA by default (``--order``) and the
overhead is mean(flow) / mean(bare) - 1.

The data stages are outside both (DVC caches them; `dvc repro` is the same
command either way). Settings are the project's params.yaml and profile;
``--epochs``/``--seeds``/``--fractions`` shrink the work for a quick look
(the fixed costs then weigh more, so the ratio is pessimistic).

    python bench/bench_orchestration.py [--out bench/results/orchestration.json] [--epochs N] [--order bare,flow]

Writes JSON: every run's wall seconds and breakdown (pretraining epoch
seconds, evaluation unit seconds), the mean per mode, the ratio flow/bare
and the overhead in percent, the settings and the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trls_core.io import write_json  # noqa: E402


def _project_copy(dst: Path, params: dict[str, Any], dataset: str) -> Path:
    """A project root holding the built spectrograms of ``dataset`` and the given params."""
    from trls_core.paths import spectrogram_dir

    src = spectrogram_dir(ROOT, dataset)
    if not (src / "meta.json").is_file():
        raise SystemExit(f"{src}/meta.json not found: run `dvc repro` (or `make run`) first")
    shutil.copytree(src, spectrogram_dir(dst, dataset))
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return dst


def _shrunk(
    raw: dict[str, Any], epochs: int | None, seeds: list[int] | None, fractions: list[float] | None
) -> dict[str, Any]:
    from trls_core.config import deep_merge

    over: dict[str, Any] = {"pretrain": {}, "evaluate": {}}
    if epochs:
        over["pretrain"]["epochs"] = epochs
    if seeds:
        over["evaluate"]["seeds"] = seeds
    if fractions:
        over["evaluate"]["fractions"] = fractions
    return deep_merge(raw, over)


def run_bare(root: Path) -> float:
    from trls_core.config import load_params
    from trls_core.stages.evaluate import evaluate_all
    from trls_core.stages.pretrain import pretrain_all

    t0 = time.perf_counter()
    params = load_params(root / "params.yaml")
    pretrain_all(root, params, progress=False)
    evaluate_all(root, params, progress=False)
    return time.perf_counter() - t0


def run_flow(root: Path) -> tuple[float, dict[str, Any]]:
    from flows.pipeline import pipeline_flow

    t0 = time.perf_counter()
    state = pipeline_flow(root=str(root), skip_data=True, model_name="trls-bench-encoder", return_state=True)
    wall = time.perf_counter() - t0
    if not state.is_completed():
        raise SystemExit(f"pipeline flow did not complete: {state.message}")
    return wall, state.result()


def _breakdown(root: Path, params: Any) -> dict[str, float]:
    """Where a mode's time went: summed epoch seconds of pretraining and the units' own seconds.

    Equal compute in both modes with a larger wall means fixed orchestration
    costs; larger compute seconds in the flow mean the orchestration slows
    the training itself (CPU contention on 2 cores).
    """
    import json

    from trls_core.paths import model_dir, report_dir, report_file

    ds = params.pretrain.dataset
    epochs = 0.0
    for s in params.pretrain.seeds:
        info = json.loads((model_dir(root, ds, params.model.encoder, s) / "encoder.json").read_text())
        epochs += sum(float(r.get("seconds", 0.0)) for r in info.get("history", []))
    metrics = json.loads(report_file(report_dir(root, ds), "metrics.json", params.evaluate.task).read_text())
    from trls_core.stages.evaluate import read_unit, unit_file, units_for

    per_unit = {}
    for u in units_for(params):
        r = read_unit(unit_file(root, params, u))["result"]
        # seconds, and what the unit computed: a different F1 or epoch count would mean different work
        per_unit[u.name] = [
            float(r.get("unit_seconds", 0.0)),
            round(float(r.get("macro_f1", 0.0)), 5),
            len(r.get("history") or []),
        ]
    return {
        "pretrain_epoch_seconds": round(epochs, 2),
        "eval_unit_seconds": float(metrics.get("unit_seconds", 0.0)),
        "eval_wall_seconds": float(metrics.get("wall_seconds", 0.0)),
        "unit_seconds": per_unit,
    }


_GC = {"collections": 0, "seconds": 0.0, "gen2": 0, "gen2_seconds": 0.0, "_t0": 0.0}


def _gc_timer(phase: str, info: dict[str, int]) -> None:
    """gc.callbacks hook: total time spent in Python's cyclic garbage collector.

    Why: the flow process holds many more long-lived objects (Prefect,
    MLflow, SQLAlchemy, pydantic) than a bare run; each full collection
    walks all of them, during training.
    """
    if phase == "start":
        _GC["_t0"] = time.perf_counter()
        return
    dt = time.perf_counter() - _GC["_t0"]
    _GC["collections"] += 1
    _GC["seconds"] += dt
    if info.get("generation") == 2:
        _GC["gen2"] += 1
        _GC["gen2_seconds"] += dt


def _child(mode: str, root: Path) -> None:
    """One timed run in THIS (fresh) process; prints a JSON line with its wall time and breakdown."""
    import gc
    import json

    from trls_core.config import load_params
    from trls_core.runtime import tune_malloc

    tune_malloc()  # as `trls` and `python -m flows.pipeline` do, in both modes
    gc.callbacks.append(_gc_timer)
    if mode == "bare":
        wall, result = run_bare(root), {}
    else:
        wall, result = run_flow(root)
    params = load_params(root / "params.yaml")
    reg = {k: v for k, v in (result.get("registration") or {}).items() if k != "split_digest"}
    print(
        "RESULT "
        + json.dumps(
            {
                "mode": mode,
                "inner_seconds": round(wall, 2),
                "breakdown": _breakdown(root, params),
                "cpu_seconds": _cpu_seconds(),
                "gc": {k: round(v, 2) for k, v in _GC.items() if not k.startswith("_")},
                "gc_tracked_objects": len(gc.get_objects()),
                "registration": reg,
            }
        ),
        flush=True,
    )


def _cpu_seconds() -> dict[str, Any]:
    """CPU time (user + system) of this process and of Prefect's ephemeral server child, if any.

    Tells a slower flow run apart: more CPU in this process (Python-side
    orchestration), in the server (API bookkeeping), or neither (the same
    work just ran slower).
    """
    import resource

    from flows import _server_pids

    me = resource.getrusage(resource.RUSAGE_SELF)
    out: dict[str, Any] = {
        "process": round(me.ru_utime + me.ru_stime, 1),
        "user": round(me.ru_utime, 1),
        "system": round(me.ru_stime, 1),
        "minor_faults": me.ru_minflt,
        "voluntary_switches": me.ru_nvcsw,
        "involuntary_switches": me.ru_nivcsw,
    }
    tick = os.sysconf("SC_CLK_TCK")
    server = 0.0
    for pid in _server_pids():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            server += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        except (OSError, ValueError, IndexError):
            continue
    out["prefect_server"] = round(server, 1)
    # per thread name (this process): torch/OpenMP workers vs Prefect's and MLflow's background threads
    import threading

    py_names = {t.native_id: t.name for t in threading.enumerate()}
    threads: dict[str, float] = {}
    preempted: dict[str, int] = {}
    for task_dir in Path("/proc/self/task").iterdir():
        try:
            stat = (task_dir / "stat").read_text()
            name = py_names.get(int(task_dir.name)) or "native:" + stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat.rsplit(")", 1)[1].split()
            threads[name] = threads.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
            status = (task_dir / "status").read_text()
            nonvol = int(status.split("nonvoluntary_ctxt_switches:")[1].split()[0])
            preempted[name] = preempted.get(name, 0) + nonvol
        except (OSError, ValueError, IndexError):
            continue
    out["thread_preemptions"] = {k: v for k, v in preempted.items() if v}
    out["threads"] = {k: round(v, 1) for k, v in sorted(threads.items(), key=lambda kv: -kv[1]) if v >= 0.1}
    return out


def _spawn(mode: str, root: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run one mode in a fresh Python process (imports, Prefect server start and all, as `make run` does)."""
    import json
    import subprocess

    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--root", str(root)], env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{mode} run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return {**json.loads(line[len("RESULT ") :]), "process_seconds": round(wall, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "bench/results/orchestration.json"))
    ap.add_argument("--epochs", type=int, default=None, help="override pretrain.epochs (quick look)")
    ap.add_argument("--seeds", type=int, nargs="*", default=None, help="override evaluate.seeds")
    ap.add_argument("--fractions", type=float, nargs="*", default=None, help="override evaluate.fractions")
    ap.add_argument(
        "--order", default="bare,flow,flow,bare", help="run order (ABBA cancels a linear drift of the machine's speed)"
    )
    ap.add_argument("--child", choices=("bare", "flow"), help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    a = ap.parse_args()

    for k, v in {
        "DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }.items():
        os.environ.setdefault(k, v)
    if a.child:
        _child(a.child, Path(a.root))
        return
    from trls_core.config import load_params

    order = [m.strip() for m in a.order.split(",") if m.strip()]
    if not order or set(order) - {"bare", "flow"} or not {"bare", "flow"} <= set(order):
        raise SystemExit(f"--order must list both 'bare' and 'flow', got {a.order!r}")
    raw = _shrunk(yaml.safe_load((ROOT / "params.yaml").read_text()), a.epochs, a.seeds, a.fractions)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="trls-bench-orch-") as tmp:
        tmp_p = Path(tmp)
        params_file = tmp_p / "params.yaml"
        params_file.write_text(yaml.safe_dump(raw, sort_keys=False))
        params = load_params(params_file)
        ds = params.pretrain.dataset
        for i, mode in enumerate(order):
            root = _project_copy(tmp_p / f"{i}_{mode}", raw, ds)
            # a fresh Prefect home per flow run: its server starts (and migrates) like on a fresh clone
            env = {
                **os.environ,
                "PREFECT_HOME": str(root / ".prefect"),
                "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
            }
            print(f"[{i + 1}/{len(order)}] {mode} run in {root} ...", flush=True)
            runs.append(_spawn(mode, root, env))
            print(f"    {mode}: {runs[-1]['process_seconds']:.1f} s ({runs[-1]['breakdown']})", flush=True)

    import torch

    total = {m: sum(r["process_seconds"] for r in runs if r["mode"] == m) / order.count(m) for m in ("bare", "flow")}
    out = {
        "benchmark": "orchestration_overhead",
        "method": "each run a fresh `python` process (imports, ephemeral Prefect server start, sqlite "
        "MLflow store: what `make run` pays) in a fresh copy of the built data; modes "
        f"interleaved {','.join(order)}; overhead = mean flow / mean bare - 1",
        "bare_seconds": round(total["bare"], 2),
        "flow_seconds": round(total["flow"], 2),
        "ratio_flow_over_bare": round(total["flow"] / total["bare"], 4),
        "overhead_percent": round(100 * (total["flow"] / total["bare"] - 1), 2),
        "target_overhead_percent": 10.0,
        "runs": runs,
        "flow_includes": [
            "ephemeral Prefect API start",
            "task runs per seed and evaluation unit",
            "MLflow runs, metrics per epoch and unit, report artifacts",
            "model registration with signature + promotion",
        ],
        "settings": {
            "profile": params.profile,
            "epochs": params.pretrain.epochs,
            "pretrain_seeds": list(params.pretrain.seeds),
            "eval_seeds": list(params.evaluate.seeds),
            "fractions": list(params.evaluate.fractions),
        },
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
        },
    }
    write_json(a.out, out)
    print(
        f"overhead {out['overhead_percent']:+.1f} % (flow {total['flow']:.1f} s / bare {total['bare']:.1f} s, "
        f"mean of {order.count('flow')} / {order.count('bare')} runs) -> {a.out}"
    )


if __name__ == "__main__":
    main()
