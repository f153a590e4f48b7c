"""Evaluation fan-out on Dask: the same evaluation units on 1 and on 2 worker processes (``evaluate.runner: dask``).

Why: ``evaluate.runner: dask`` exists to spread the units over processes;
this measures what a second worker buys on this machine, with everything a
user's run pays (the flow's LocalCluster start and close, each worker's
imports and data loading, Prefect task runs), and checks that both runs
score the same.

Each run is ``flows.evaluate.evaluate_flow(force=True, track=False)`` on an
ephemeral Prefect API, in a scratch root holding a copy of the project's
built spectrograms and links to its pretrained encoders (so every run
computes every unit, and nothing of the project's ``reports/`` is touched).
Units: the params.yaml task with ``--seeds`` and ``--fractions`` (default:
2 seeds x (probe, 2 label fractions, random-encoder control) + the
spectrogram control = 9 units of the small profile on Bonn). Workers run one
unit at a time on one torch thread (``threads_per_worker: 1``); ``--inline``
adds the inline runner (the flow's thread, torch's default threads) as a
reference. Runs are interleaved ``--order`` (default 1,2,2,1: the shared
machine's speed drifts) and each mode's wall seconds are averaged.

    python bench/bench_scale_out.py [--out bench/results/scale_out.json] [--order 1,2,2,1] [--inline]

Writes only its key, ``dask``, of ``--out`` (read-modify-write: the DDP
benchmark, bench/bench_ddp.py, owns ``ddp`` in the same file): every run's
wall seconds and summed unit seconds, the mean per mode, the ratio
1 worker / 2 workers (> 1: the second worker helps), whether the runs'
unit results are identical, and the machine's load average around each run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
KEY = "dask"
WALL_CLOCK = ("seconds", "unit_seconds", "fit_seconds")


def _scratch_root(dst: Path, dataset: str, encoder: str, seeds: list[int]) -> Path:
    """A project root with a copy of ``dataset``'s spectrograms, links to the encoders and the project's params."""
    from trls_core.paths import model_dir, spectrogram_dir

    src = spectrogram_dir(ROOT, dataset)
    if not (src / "meta.json").is_file():
        raise SystemExit(f"{src}/meta.json not found: run `dvc repro` (or `make run`) first")
    shutil.copytree(src, spectrogram_dir(dst, dataset))
    for seed in seeds:
        enc = model_dir(ROOT, dataset, encoder, seed)
        if not (enc / "encoder.safetensors").is_file():
            raise SystemExit(f"{enc}/encoder.safetensors not found: run `trls pretrain` (or `make run`) first")
        model_dir(dst, dataset, encoder, seed).parent.mkdir(parents=True, exist_ok=True)
        model_dir(dst, dataset, encoder, seed).symlink_to(enc, target_is_directory=True)
    shutil.copy(ROOT / "params.yaml", dst / "params.yaml")
    return dst


def _without_wall_clock(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _without_wall_clock(v) for k, v in x.items() if k not in WALL_CLOCK}
    if isinstance(x, list):
        return [_without_wall_clock(v) for v in x]
    return x


def _one_run(root: Path, mode: str, sets: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """One forced evaluation in ``mode`` ('inline' or the worker count); (timings, unit results without timings)."""
    from flows.evaluate import evaluate_flow
    from trls_core.config import load_params
    from trls_core.stages.evaluate import units_dir

    runner = [] if mode == "inline" else ["evaluate.runner=dask", f"evaluate.dask.n_workers={mode}"]
    load = os.getloadavg()[0]
    t0, wall0 = time.perf_counter(), time.time()
    state = evaluate_flow(
        root=str(root), params_path="params.yaml", track=False, sets=[*sets, *runner], force=True, return_state=True
    )
    wall = time.perf_counter() - t0
    if not state.is_completed():
        raise SystemExit(f"{mode}: the evaluation failed: {state.message}")
    folder = units_dir(root, load_params(root / "params.yaml", None, sets))
    docs = {p.name: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}
    timing = {
        "mode": mode if mode == "inline" else f"{mode} workers",
        "wall_s": round(wall, 1),
        # flow call -> last unit result written: cluster start, worker start-up and the units, not the report
        "units_wall_s": round(max(p.stat().st_mtime for p in folder.glob("*.json")) - wall0, 1),
        "unit_seconds_sum": round(sum(float(d["result"].get("unit_seconds", 0)) for d in docs.values()), 1),
        "units": len(docs),
        "load_avg_1min_before": round(load, 2),
        "load_avg_1min_after": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(timing), flush=True)
    return timing, {k: _without_wall_clock(v) for k, v in docs.items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scale_out.json")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="evaluate.seeds")
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.1, 1.0], help="evaluate.fractions")
    ap.add_argument("--order", default="1,2,2,1", help="runs in this order: worker counts, or 'inline'")
    ap.add_argument("--inline", action="store_true", help="also one inline run (first), as the reference")
    args = ap.parse_args(argv)

    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "60")
    order = (["inline"] if args.inline else []) + [m.strip() for m in args.order.split(",") if m.strip()]
    from trls_core.config import load_params
    from trls_core.stages.evaluate import pretrain_seed_for, units_for

    sets = [
        f"evaluate.seeds={json.dumps(args.seeds)}",
        f"evaluate.fractions={json.dumps(args.fractions)}",
        "evaluate.tsne_points=200",  # the report's t-SNE runs in the flow's process, the same in every mode
    ]
    params = load_params(ROOT / "params.yaml", None, sets)
    with tempfile.TemporaryDirectory(prefix="trls-scale-out-") as tmp:
        os.environ["PREFECT_HOME"] = str(Path(tmp) / "prefect")  # a fresh ephemeral API, not the project's
        root = _scratch_root(
            Path(tmp) / "root",
            params.evaluate.dataset,
            params.model.encoder,
            sorted({pretrain_seed_for(params, s) for s in params.evaluate.seeds}),
        )
        runs, results = [], {}
        for mode in order:
            timing, docs = _one_run(root, mode, sets)
            runs.append(timing)
            results.setdefault(timing["mode"], []).append(docs)

    import torch

    def mean(key: str, mode: str) -> float:
        vals = [r[key] for r in runs if r["mode"] == mode]
        return round(sum(vals) / len(vals), 1)

    means = {m: mean("wall_s", m) for m in results}
    units_means = {m: mean("units_wall_s", m) for m in results}
    first = {m: v[0] for m, v in results.items()}
    dask_modes = [m for m in first if m != "inline"]
    out: dict[str, Any] = {
        "what": f"evaluate_flow(force=True, track=False) on the {params.evaluate.dataset} {params.evaluate.task} task, "
        f"{len(units_for(params))} units (seeds {args.seeds}, fractions {args.fractions}, small profile), "
        "evaluate.runner: dask with a LocalCluster the flow starts (threads_per_worker 1); wall seconds from the "
        "flow call to its return, cluster start and close included",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__},
        "runs": runs,
        "mean_wall_s": means,
        "mean_units_wall_s": units_means,
        "same_unit_results_across_worker_counts": all(first[m] == first[dask_modes[0]] for m in dask_modes),
    }
    if "1 workers" in means and "2 workers" in means:
        out["ratio_1_over_2_workers"] = round(means["1 workers"] / means["2 workers"], 3)
        out["ratio_1_over_2_workers_units_only"] = round(units_means["1 workers"] / units_means["2 workers"], 3)
    if "inline" in means and "2 workers" in means:
        out["ratio_inline_over_2_workers"] = round(means["inline"] / means["2 workers"], 3)

    from trls_core.io import write_json

    doc = json.loads(args.out.read_text()) if args.out.is_file() else {}  # read-modify-write: only our key
    doc[KEY] = out
    write_json(args.out, doc)
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":  # guarded: the LocalCluster's worker processes re-import this file
    main()
