"""A study's variant as run params and metrics (``flows/study.py``: one child run per variant)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trls_core.tracking.evaluation import evaluation_metrics
from trls_core.tracking.runs import Tracker
from trls_core.tracking.values import as_float

__all__ = ["study_variant_metrics", "log_study_variant"]


def study_variant_metrics(
    aggregates: Mapping[str, Mapping[str, Any]], summaries: Mapping[str, Mapping[str, Any]]
) -> dict[str, float]:
    """``<task>.linear_probe.macro_f1.mean`` ... (every validation aggregate) and ``<task>.score.{mean,std,
    untrained,gain,pixels}`` (the study metric); the first task's study metric also as ``score``."""
    out: dict[str, float] = {}
    for task, agg in aggregates.items():
        out.update({f"{task}.{k}": v for k, v in evaluation_metrics(agg).items()})
    for i, (task, summary) in enumerate(summaries.items()):
        for k, v in summary.items():
            f = as_float(v)
            if f is not None:
                out[f"{task}.score.{k}"] = f
                if i == 0 and k == "mean":
                    out["score"] = f
    return out


def log_study_variant(
    tracker: Tracker,
    aggregates: Mapping[str, Mapping[str, Any]],
    summaries: Mapping[str, Mapping[str, Any]],
    tags: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """Log a variant's validation scores (and ``tags``) to its run; returns the metrics logged."""
    logged = tracker.log_metrics(study_variant_metrics(aggregates, summaries))
    if tags:
        tracker.set_tags(tags)
    return logged
