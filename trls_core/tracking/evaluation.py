"""An evaluation report (``metrics.json`` + its files) as run metrics and artifacts."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trls_core.tracking.runs import Tracker
from trls_core.tracking.values import as_float

__all__ = ["evaluation_metrics", "log_evaluation"]

_AGG_STATS = ("mean", "std", "min", "max")


def evaluation_metrics(results: Mapping[str, Any]) -> dict[str, float]:
    """Flat metrics of a ``metrics.json``: ``linear_probe.accuracy.mean``,
    ``finetune.0.1.macro_f1.mean``, ``controls.random_encoder_linear.accuracy.std`` ...

    Only the seed aggregates (mean/std/min/max); the per-seed values stay in
    the artifact.
    """
    out: dict[str, float] = {}

    def add(prefix: str, aggs: Any) -> None:
        if not isinstance(aggs, Mapping):
            return
        for metric, agg in aggs.items():
            if not isinstance(agg, Mapping):
                continue
            for stat in _AGG_STATS:
                f = as_float(agg.get(stat))
                if f is not None:
                    out[f"{prefix}.{metric}.{stat}"] = f

    add("linear_probe", results.get("linear_probe"))
    for frac, aggs in (results.get("finetune") or {}).items():
        add(f"finetune.{frac}", aggs)
    for name, aggs in (results.get("controls") or {}).items():
        add(f"controls.{name}", aggs)
    return out


def log_evaluation(
    tracker: Tracker, report_dir: Path, metrics_file: str = "metrics.json", artifact_path: str = "report"
) -> dict[str, float]:
    """Log an evaluation report: flat aggregate metrics + every file of ``report_dir``.

    Returns the metrics logged.
    """
    rdir = Path(report_dir)
    path = rdir / metrics_file
    if not path.is_file():
        raise FileNotFoundError(f"log_evaluation: {path} not found: run `trls evaluate` first")
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"log_evaluation: {path} is not valid JSON ({exc})") from exc
    logged = tracker.log_metrics(evaluation_metrics(results))
    tags = {k: results[k] for k in ("task", "protocol", "profile", "encoder", "parquet_sha256") if k in results}
    if tags:
        tracker.set_tags({f"eval.{k}": v for k, v in tags.items()})
    for f in sorted(rdir.iterdir()):  # the report files; the per-unit results live in the nested runs
        if f.is_file():
            tracker.log_artifact(f, artifact_path)
    return logged
