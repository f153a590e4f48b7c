"""The pipeline's parent run carries the result: where a user opening the run looks first.

:func:`log_headline` puts on the parent run, per evaluated task:

- metrics ``<task>/linear_probe_macro_f1_mean`` / ``_std``,
  ``<task>/finetune_<pct>pct_labels_macro_f1_mean`` / ``_std`` and
  ``<task>/control_untrained_encoder_macro_f1_mean`` /
  ``control_spectrogram_pixels_...`` (rounded; the UI groups them by task);
- the plots (label-fraction curve, t-SNE, confusion matrix) as artifacts
  ``plots/<task>/``;
- every aggregate as the table ``headline/aggregates.json``;
- a Markdown description (the run's "Description" in the UI,
  tag ``mlflow.note.content``): the same numbers as a table, the controls,
  the plot paths, the registration outcome and how to find the nested runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trls_core.tracking.evaluation import (
    CONTROL_LABELS,
    DIGITS,
    HEADLINE_METRIC,
    aggregate_rows,
    fraction_label,
    headline_metrics,
    read_report,
)
from trls_core.tracking.runs import Tracker
from trls_core.tracking.values import as_float

__all__ = ["NOTE_TAG", "PLOT_NAMES", "headline_note", "log_headline", "task_plots"]

NOTE_TAG = "mlflow.note.content"  # shown as the run's description in the MLflow UI
PLOT_NAMES = ("label_fractions.png", "tsne.png", "confusion_matrix.png")


def task_plots(metrics_file: Path, task: str) -> list[Path]:
    """The report's plots for ``task`` that exist (``tsne.png`` for binary, ``tsne_<task>.png`` otherwise)."""
    from trls_core.paths import report_file

    rdir = Path(metrics_file).parent
    return [p for name in PLOT_NAMES if (p := report_file(rdir, name, task)).is_file()]


def _cell(agg: Any) -> str:
    if not isinstance(agg, Mapping):
        return "–"
    mean, std = as_float(agg.get("mean")), as_float(agg.get("std"))
    if mean is None:
        return "–"
    return f"{mean:.{DIGITS}f}" + (f" ± {std:.{DIGITS}f}" if std is not None else "")


def _rows(results: Mapping[str, Any]) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = [("linear probe (frozen encoder)", (results.get("linear_probe") or {}))]
    for frac, aggs in (results.get("finetune") or {}).items():
        rows.append((f"fine-tune, {fraction_label(frac).removesuffix('pct')} % of labels", aggs))
    for name, aggs in (results.get("controls") or {}).items():
        label = CONTROL_LABELS.get(name, name).replace("_", " ")
        rows.append((f"control: {label} (linear probe)", aggs))
    return [(label, (aggs or {}).get(HEADLINE_METRIC)) for label, aggs in rows]


def headline_note(
    reports: Mapping[str, Mapping[str, Any]],
    plots: Mapping[str, list[str]],
    registration: Mapping[str, Any] | None = None,
    title: str = "",
) -> str:
    """The Markdown description of the parent run: one column per task, one row per setting."""
    tasks = list(reports)
    first = reports[tasks[0]] if tasks else {}
    seeds = first.get("seeds") or []
    lines = [f"### {title}" if title else "### Result", ""]
    metric = HEADLINE_METRIC.replace("_", "-").replace("f1", "F1")
    lines.append(
        f"Test split, {metric} mean ± std over {len(seeds) or '?'} evaluation seed(s)"
        f" (pretraining seeds {first.get('pretrain_seeds', '?')}, encoder {first.get('encoder', '?')})."
    )
    lines += ["", "| setting | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    table: dict[str, dict[str, str]] = {}
    for task in tasks:
        for label, agg in _rows(reports[task]):
            table.setdefault(label, {})[task] = _cell(agg)
    for label, cells in table.items():
        lines.append(f"| {label} | " + " | ".join(cells.get(t, "–") for t in tasks) + " |")
    lines += ["", "Metrics of this run: `<task>/linear_probe_macro_f1_mean` and the like (above, rounded);"]
    lines.append("every aggregate (accuracy, kappa, min/max, ...) in the table `headline/aggregates.json`.")
    for task, files in plots.items():
        if files:
            lines.append(f"Plots ({task}): " + ", ".join(f"`{f}`" for f in files) + " (this run's artifacts).")
    if registration:
        reg = registration
        lines += [
            "",
            f"Registry: `{reg.get('model_name')}` v{reg.get('version')}: {reg.get('reason', '')}",
        ]
    lines += [
        "",
        "Nested runs: `pretrain` (per seed: loss curves, system metrics), `evaluate/<task>` (per task: report "
        "files) and under each its units (`linear_probe/seed=s`, `finetune/<fraction>/seed=s`, ...; metric "
        "`macro_f1`). Filter: `tags.stage = 'evaluate-unit'`.",
    ]
    return "\n".join(lines) + "\n"


def log_headline(
    tracker: Tracker,
    reports: Mapping[str, Path],
    registration: Mapping[str, Any] | None = None,
    title: str = "",
) -> dict[str, float]:
    """Log the headline of ``reports`` (task -> its ``metrics*.json``) to ``tracker``'s run; returns the metrics."""
    results = {task: read_report(Path(path)) for task, path in reports.items()}
    metrics: dict[str, float] = {}
    rows: list[dict[str, Any]] = []
    plots: dict[str, list[str]] = {}
    for task, res in results.items():
        metrics.update(headline_metrics(res, prefix=f"{task}/"))
        rows += aggregate_rows(res, task)
        plots[task] = []
        for p in task_plots(Path(reports[task]), task):
            tracker.log_artifact(p, f"plots/{task}")
            plots[task].append(f"plots/{task}/{p.name}")
    logged = tracker.log_metrics(metrics)
    if rows:
        tracker.log_table(rows, "headline/aggregates.json")
    tracker.set_tags({NOTE_TAG: headline_note(results, plots, registration, title)})
    return logged
