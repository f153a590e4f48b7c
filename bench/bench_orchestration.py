"""Orchestration + tracking overhead: the pipeline flow vs the same work as bare Python calls.

Why: users run the job as a Prefect flow with MLflow tracking and model
registration (`make run`); the target is that this costs at most 10 % over
calling the training and evaluation functions directly.

Both modes run in this one process, one after the other, on the same
machine, each in its own fresh copy of the project's built data (so neither
reuses the other's checkpoints or unit results):

- ``bare``: ``trls_core.stages.pretrain.pretrain_all`` then
  ``trls_core.stages.evaluate.evaluate_all`` (what `trls pretrain` and
  `trls evaluate` call);
- ``flow``: ``flows.pipeline.pipeline_flow(skip_data=True)`` on an
  ephemeral Prefect API (started inside the timed region), with MLflow
  tracking to a fresh sqlite store, nested runs per seed and unit, the
  report artifacts, and model registration + promotion.

The data stages are outside both (DVC caches them; `dvc repro` is the same
command either way). Settings are the project's params.yaml and profile;
``--epochs``/``--seeds``/``--fractions`` shrink the work for a quick look
(the fixed costs then weigh more, so the ratio is pessimistic).

    python bench/bench_orchestration.py [--out bench/results/orchestration.json] [--epochs N]

Writes JSON: wall seconds per mode, the ratio flow/bare and the overhead in
percent, the flow's own step times, the settings and the machine.
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


def _shrunk(raw: dict[str, Any], epochs: int | None, seeds: list[int] | None,
            fractions: list[float] | None) -> dict[str, Any]:
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

    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
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
    return {"pretrain_epoch_seconds": round(epochs, 2), "eval_unit_seconds": float(metrics.get("unit_seconds", 0.0)),
            "eval_wall_seconds": float(metrics.get("wall_seconds", 0.0))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "bench/results/orchestration.json"))
    ap.add_argument("--epochs", type=int, default=None, help="override pretrain.epochs (quick look)")
    ap.add_argument("--seeds", type=int, nargs="*", default=None, help="override evaluate.seeds")
    ap.add_argument("--fractions", type=float, nargs="*", default=None, help="override evaluate.fractions")
    a = ap.parse_args()

    for k, v in {"DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true",
                 "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}.items():
        os.environ.setdefault(k, v)
    from trls_core.config import load_params

    raw = _shrunk(yaml.safe_load((ROOT / "params.yaml").read_text()), a.epochs, a.seeds, a.fractions)
    with tempfile.TemporaryDirectory(prefix="trls-bench-orch-") as tmp:
        tmp_p = Path(tmp)
        os.environ.setdefault("PREFECT_HOME", str(tmp_p / "prefect_home"))
        params_file = tmp_p / "params.yaml"
        params_file.write_text(yaml.safe_dump(raw, sort_keys=False))
        params = load_params(params_file)
        ds = params.pretrain.dataset
        bare_root = _project_copy(tmp_p / "bare", raw, ds)
        flow_root = _project_copy(tmp_p / "flow", raw, ds)
        print(f"bare run in {bare_root} ...", flush=True)
        bare = run_bare(bare_root)
        print(f"bare: {bare:.1f} s; flow run in {flow_root} ...", flush=True)
        flow, result = run_flow(flow_root)
        print(f"flow: {flow:.1f} s", flush=True)
        breakdown = {"bare": _breakdown(bare_root, params), "flow": _breakdown(flow_root, params)}

    import torch

    out = {
        "benchmark": "orchestration_overhead",
        "bare_seconds": round(bare, 2),
        "flow_seconds": round(flow, 2),
        "ratio_flow_over_bare": round(flow / bare, 4),
        "overhead_percent": round(100 * (flow / bare - 1), 2),
        "target_overhead_percent": 10.0,
        "flow_includes": ["ephemeral Prefect API start", "task runs per seed and evaluation unit",
                          "MLflow runs, metrics per epoch and unit, report artifacts",
                          "model registration with signature + promotion"],
        "breakdown": breakdown,
        "registration": {k: v for k, v in (result.get("registration") or {}).items() if k != "split_digest"},
        "settings": {"profile": params.profile, "epochs": params.pretrain.epochs,
                     "pretrain_seeds": list(params.pretrain.seeds), "eval_seeds": list(params.evaluate.seeds),
                     "fractions": list(params.evaluate.fractions)},
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "python": platform.python_version()},
    }
    write_json(a.out, out)
    print(f"overhead {out['overhead_percent']:+.1f} % (flow {flow:.1f} s / bare {bare:.1f} s) -> {a.out}")


if __name__ == "__main__":
    main()
