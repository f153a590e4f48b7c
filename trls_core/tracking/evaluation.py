"""An evaluation report (``metrics.json`` + its files) as run metrics, a table and artifacts.

What a reader of the runs table needs is few, rounded numbers under names
that say what they are: :func:`headline_metrics` (macro-F1 mean and std of
the linear probe, of fine-tuning at each label fraction and of the two
controls). Every other aggregate (each metric's mean / std / min / max / n)
goes to one table artifact (:func:`aggregate_rows`), not to 200 metric
charts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trls_core.tracking.runs import Tracker
from trls_core.tracking.values import as_float

__all__ = [
    "CONTROL_LABELS",
    "HEADLINE_METRIC",
    "aggregate_rows",
    "evaluation_metrics",
    "fraction_label",
    "headline_metrics",
    "log_evaluation",
    "read_report",
]

_AGG_STATS = ("mean", "std", "min", "max")
HEADLINE_METRIC = "macro_f1"  # the promotion score's metric (linear-probe macro-F1 mean)
DIGITS = 4  # headline metrics are rounded: 0.9725, not 0.9725107596472293
TABLE_DIGITS = 6
#: controls by what they are (docs/design.md: the same encoder untrained; a linear model on the spectrogram pixels)
CONTROL_LABELS = {"random_encoder_linear": "untrained_encoder", "spectrogram_linear": "spectrogram_pixels"}


def fraction_label(fraction: Any) -> str:
    """A label fraction as a name part: ``0.1`` -> ``10pct``, ``1.0`` -> ``100pct``, ``0.005`` -> ``0.5pct``."""
    pct = round(float(fraction) * 100, 6)
    return f"{pct:g}pct"


def _groups(results: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, Any]]]:
    """(setting, headline name stem, aggregates) for the probe, each fine-tuning fraction and each control."""
    out: list[tuple[str, str, Mapping[str, Any]]] = []
    if isinstance(results.get("linear_probe"), Mapping):
        out.append(("linear_probe", "linear_probe", results["linear_probe"]))
    for frac, aggs in (results.get("finetune") or {}).items():
        if isinstance(aggs, Mapping):
            out.append((f"finetune.{frac}", f"finetune_{fraction_label(frac)}_labels", aggs))
    for name, aggs in (results.get("controls") or {}).items():
        if isinstance(aggs, Mapping):
            out.append((f"controls.{name}", f"control_{CONTROL_LABELS.get(name, name)}", aggs))
    return out


def headline_metrics(results: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """``<prefix>linear_probe_macro_f1_mean`` / ``_std``, ``<prefix>finetune_10pct_labels_macro_f1_mean`` ...,
    ``<prefix>control_untrained_encoder_macro_f1_mean`` ..., rounded to 4 digits."""
    out: dict[str, float] = {}
    for _, stem, aggs in _groups(results):
        agg = aggs.get(HEADLINE_METRIC)
        if not isinstance(agg, Mapping):
            continue
        for stat in ("mean", "std"):
            f = as_float(agg.get(stat))
            if f is not None:
                out[f"{prefix}{stem}_{HEADLINE_METRIC}_{stat}"] = round(f, DIGITS)
    return out


def aggregate_rows(results: Mapping[str, Any], task: str | None = None) -> list[dict[str, Any]]:
    """One row per setting x metric: mean, std, min, max, n (rounded to 6 digits) -- the logged table."""
    rows = []
    for setting, _, aggs in _groups(results):
        for metric, agg in aggs.items():
            if not isinstance(agg, Mapping):
                continue
            row: dict[str, Any] = {"task": task or results.get("task"), "setting": setting, "metric": metric}
            for stat in _AGG_STATS:
                f = as_float(agg.get(stat))
                row[stat] = round(f, TABLE_DIGITS) if f is not None else None
            row["n"] = agg.get("n")
            rows.append(row)
    return rows


def evaluation_metrics(results: Mapping[str, Any]) -> dict[str, float]:
    """Every seed aggregate of a ``metrics.json`` flat: ``linear_probe.accuracy.mean``,
    ``finetune.0.1.macro_f1.mean``, ``controls.random_encoder_linear.accuracy.std`` ...

    (What a study compares; the runs of an evaluation log :func:`headline_metrics`
    and these as a table.)
    """
    out: dict[str, float] = {}
    for setting, _, aggs in _groups(results):
        for metric, agg in aggs.items():
            if not isinstance(agg, Mapping):
                continue
            for stat in _AGG_STATS:
                f = as_float(agg.get(stat))
                if f is not None:
                    out[f"{setting}.{metric}.{stat}"] = f
    return out


def read_report(path: Path) -> dict[str, Any]:
    """A ``metrics.json``, with errors that name the file."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `trls evaluate` first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc})") from exc


def log_evaluation(
    tracker: Tracker, report_dir: Path, metrics_file: str = "metrics.json", artifact_path: str = "report"
) -> dict[str, float]:
    """Log an evaluation report: the headline metrics, every aggregate as the table
    ``<artifact_path>/aggregates[_<task>].json`` and every file of ``report_dir``.

    Returns the metrics logged.
    """
    rdir = Path(report_dir)
    results = read_report(rdir / metrics_file)
    logged = tracker.log_metrics(headline_metrics(results))
    tags = {k: results[k] for k in ("task", "protocol", "profile", "encoder", "parquet_sha256") if k in results}
    if tags:
        tracker.set_tags({f"eval.{k}": v for k, v in tags.items()})
    suffix = Path(metrics_file).stem.removeprefix("metrics")  # metrics_five_set.json -> _five_set
    tracker.log_table(aggregate_rows(results), f"{artifact_path}/aggregates{suffix}.json")
    for f in sorted(rdir.iterdir()):  # the report files; the per-unit results live in the nested runs
        if f.is_file():
            tracker.log_artifact(f, artifact_path)
    return logged
