"""The small result files DVC reads: ``reports/dvc/`` (``metrics:`` and ``plots:`` in dvc.yaml).

``metrics.json`` holds every aggregate of an evaluation (mean/std/min/max/n
and the values of each metric, per-seed confusion matrices, the machine):
~330 columns in ``dvc metrics show``. DVC gets a compact copy instead, one
file per result, in a folder dvc.yaml declares as a whole, so a new dataset,
task or transfer needs no dvc.yaml edit:

- ``metrics/<dataset>[/from_<source>]/<task>.json``: per setting (linear
  probe, fine-tuning per label fraction, the controls) the mean and std over
  seeds of accuracy, macro-F1 and the task's own score where it has one,
  rounded to :data:`DIGITS` decimals;
- ``plots/label_fractions/<dataset>[/from_<source>]/<task>.csv``: the
  fine-tuning scores against the fraction of training labels;
- ``plots/loss/<dataset>/<encoder>_seed<S>.csv``: the pretraining history
  (epoch, loss and the other numeric series) of each encoder evaluated;
- ``plots/comparison/<dataset>/<task>.csv``: ``trls compare``'s rows, one
  bar per method and setting.

Every file is written atomically (``trls_core.io``). ``reports/dvc/`` is the
one part of ``reports/`` git does not ignore: committed, it is what
``dvc metrics diff`` / ``dvc plots diff`` compare across commits.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from trls_core.config import Params
from trls_core.io import write_json, write_text
from trls_core.paths import model_dir

__all__ = [
    "DIGITS",
    "comparison_plot_file",
    "dvc_dir",
    "fraction_key",
    "fraction_rows",
    "headline",
    "loss_plot_file",
    "loss_rows",
    "metrics_file",
    "fractions_plot_file",
    "write_comparison_plot",
    "write_evaluation_files",
]

DIGITS = 4
#: the scores DVC shows per setting; the task's own score joins them where the report has it
METRICS = ("accuracy", "macro_f1")
TASK_SCORES = ("challenge_f1",)
CONTROL_NAMES = {"random_encoder_linear": "untrained_encoder", "spectrogram_linear": "spectrogram_pixels"}


def dvc_dir(root: Path) -> Path:
    return Path(root) / "reports" / "dvc"


def _where(params: Params) -> Path:
    """``<dataset>`` or ``<dataset>/from_<source>`` (a transfer), as the evaluation's report folder."""
    ev, pp = params.evaluate, params.pretrain
    return Path(ev.dataset) if pp.dataset == ev.dataset else Path(ev.dataset) / f"from_{pp.dataset}"


def metrics_file(root: Path, params: Params) -> Path:
    return dvc_dir(root) / "metrics" / _where(params) / f"{params.evaluate.task}.json"


def fractions_plot_file(root: Path, params: Params) -> Path:
    return dvc_dir(root) / "plots" / "label_fractions" / _where(params) / f"{params.evaluate.task}.csv"


def loss_plot_file(root: Path, dataset: str, encoder: str, seed: int) -> Path:
    return dvc_dir(root) / "plots" / "loss" / dataset / f"{encoder}_seed{seed}.csv"


def comparison_plot_file(root: Path, dataset: str, task: str) -> Path:
    return dvc_dir(root) / "plots" / "comparison" / dataset / f"{task}.csv"


def _round(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return round(v, DIGITS) if v == v else None  # NaN -> None


def fraction_key(fraction: Any) -> str:
    """``0.01`` -> ``1pct``, ``0.005`` -> ``0_5pct``: no dot, which DVC reads as nesting."""
    return f"{100 * float(fraction):g}pct".replace(".", "_")


def _scores(aggs: Mapping[str, Any] | None, metrics: Sequence[str]) -> dict[str, dict[str, float | None]]:
    out = {}
    for m in metrics:
        agg = (aggs or {}).get(m)
        if isinstance(agg, Mapping) and agg.get("mean") is not None:
            out[m] = {"mean": _round(agg["mean"]), "std": _round(agg.get("std") or 0.0)}
    return out


def _metrics_of(report: Mapping[str, Any]) -> tuple[str, ...]:
    probe = report.get("linear_probe") or {}
    return METRICS + tuple(k for k in TASK_SCORES if k in probe)


def headline(report: Mapping[str, Any]) -> dict[str, Any]:
    """The compact metrics of one evaluation report (``metrics.json``'s shape) for ``dvc metrics``."""
    metrics = _metrics_of(report)
    out: dict[str, Any] = {"linear_probe": _scores(report.get("linear_probe"), metrics)}
    finetune = report.get("finetune") or {}
    if finetune:
        out["finetune"] = {fraction_key(f): _scores(finetune[f], metrics) for f in sorted(finetune, key=float)}
    controls = report.get("controls") or {}
    if controls:
        out["controls"] = {CONTROL_NAMES.get(c, c): _scores(a, metrics) for c, a in controls.items()}
    out["n_seeds"] = len(report.get("seeds") or [])
    return out


def fraction_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per label fraction: the fine-tuning scores (mean, std) and the linear probe beside them."""
    metrics = _metrics_of(report)
    probe = _scores(report.get("linear_probe"), metrics)
    rows = []
    finetune = report.get("finetune") or {}
    for frac in sorted(finetune, key=float):
        scores = _scores(finetune[frac], metrics)
        row: dict[str, Any] = {"fraction": float(frac)}
        for m in metrics:
            row[m] = (scores.get(m) or {}).get("mean")
            row[f"{m}_std"] = (scores.get(m) or {}).get("std")
        for m in metrics:
            row[f"linear_probe_{m}"] = (probe.get(m) or {}).get("mean")
        rows.append(row)
    return rows


def loss_rows(history: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The pretraining history: ``epoch`` (1-based: epochs done) and every numeric series, rounded."""
    rows = []
    for i, rec in enumerate(history):
        row: dict[str, Any] = {"epoch": int(rec.get("epoch", i)) + 1}
        for key, value in rec.items():
            if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
                row[key] = round(float(value), 6)
        rows.append(row)
    return rows


def _csv(rows: Sequence[Mapping[str, Any]]) -> str:
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_evaluation_files(root: Path, params: Params, report: Mapping[str, Any]) -> list[Path]:
    """The DVC files of one evaluation report: its metrics, its label-fraction curve, its encoders' losses."""
    import json

    root = Path(root)
    written = [metrics_file(root, params)]
    write_json(written[0], headline(report))
    rows = fraction_rows(report)
    if rows:  # a probe-only evaluation (fractions: []) has no curve
        written.append(fractions_plot_file(root, params))
        write_text(written[-1], _csv(rows))
    pp, encoder = params.pretrain, params.model.encoder
    for seed in report.get("pretrain_seeds") or pp.seeds:
        info = model_dir(root, pp.dataset, encoder, int(seed)) / "encoder.json"
        history = json.loads(info.read_text()).get("history") if info.is_file() else None
        if history:
            written.append(loss_plot_file(root, pp.dataset, encoder, int(seed)))
            write_text(written[-1], _csv(loss_rows(history)))
    return written


def write_comparison_plot(root: Path, dataset: str, task: str, comparison_csv: Path) -> Path:
    """``trls compare``'s ``comparison.csv`` -> one bar per method and setting (``label``), macro-F1 and accuracy."""
    with open(comparison_csv, newline="") as fh:
        table = list(csv.DictReader(fh))
    rows = []
    for r in table:
        row: dict[str, Any] = {
            "label": f"{r['method']}: {r['setting']}",
            "method": r["method"],
            "setting": r["setting"],
        }
        for m in METRICS:
            row[m] = _round(r.get(f"{m}_mean"))
            row[f"{m}_std"] = _round(r.get(f"{m}_std"))
        rows.append(row)
    path = comparison_plot_file(root, dataset, task)
    write_text(path, _csv(rows))
    return path
