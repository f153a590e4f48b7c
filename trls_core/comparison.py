"""The comparison report: methods x settings from each method's ``metrics.json``.

Reads the evaluation reports the methods produced through the same protocol
and writes ``comparison.csv`` (one row per method x setting, fractions of 1,
mean/std/min/max/n over seeds), ``comparison.md`` (percent, mean ± std, with
the protocol, seeds, profile, machine and wall time stated), a bar chart of
the linear probe with error bars and the label-fraction curves of all
methods. The two controls of the first method's report appear as rows of
their own, so a reader sees what pretraining adds.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trls_core.errors import DataError
from trls_core.io import write_bytes, write_text
from trls_core.reports import finetune_budget_text

METRICS = ("accuracy", "macro_f1")
#: task scores a dataset's reports may carry (CinC 2017: mean F1 over N/A/O, per window and per record vote);
#: compared wherever every method's report has them
TASK_METRICS = ("challenge_f1", "record_challenge_f1")
_LABELS = {
    "accuracy": "Accuracy",
    "macro_f1": "Macro-F1",
    "challenge_f1": "Challenge F1 (windows)",
    "record_challenge_f1": "Challenge F1 (records, majority vote)",
}
_CONTROLS = {"spectrogram_linear": "control: pixels + linear", "random_encoder_linear": "control: untrained encoder"}


def read_report(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the evaluation report ({exc})") from None
    for key in ("linear_probe", "finetune", "seeds"):
        if key not in doc:
            raise DataError(f"{path}: not an evaluation report (no {key!r})")
    return doc


def task_metrics(reports: Mapping[str, Mapping[str, Any]]) -> tuple[str, ...]:
    """The :data:`TASK_METRICS` every method's linear probe and fine-tuning blocks report."""

    def has(rep: Mapping[str, Any], key: str) -> bool:
        blocks = [rep["linear_probe"], *rep["finetune"].values()]
        return all(key in b for b in blocks)

    return tuple(k for k in TASK_METRICS if reports and all(has(r, k) for r in reports.values()))


def comparison_rows(reports: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (method, setting); settings: ``linear_probe``, ``finetune_<fraction>``, controls."""
    rows: list[dict[str, Any]] = []
    metrics = METRICS + task_metrics(reports)

    def add(method: str, setting: str, aggs: Mapping[str, Any]) -> None:
        row: dict[str, Any] = {"method": method, "setting": setting}
        for m in metrics:
            a = aggs.get(m) or {}
            for stat in ("mean", "std", "min", "max", "n"):
                row[f"{m}_{stat}"] = a.get(stat)
        rows.append(row)

    for method, rep in reports.items():
        add(method, "linear_probe", rep["linear_probe"])
        for frac in sorted(rep["finetune"], key=float):
            add(method, f"finetune_{frac}", rep["finetune"][frac])
    first = next(iter(reports.values()), None)
    for ctrl, label in _CONTROLS.items():
        if first is not None and ctrl in (first.get("controls") or {}):
            add(label, "linear_probe", first["controls"][ctrl])
    return rows


def _pm(row: Mapping[str, Any], metric: str) -> str:
    m, s = row.get(f"{metric}_mean"), row.get(f"{metric}_std")
    return "–" if m is None else f"{100 * m:.2f} ± {100 * (s or 0.0):.2f}"


def _cell(agg: Mapping[str, Any] | None) -> str:
    if not agg or agg.get("mean") is None:
        return "–"
    return f"{100 * agg['mean']:.2f} ± {100 * (agg.get('std') or 0.0):.2f}"


def _matrix(reports: Mapping[str, Mapping[str, Any]], metric: str) -> list[str]:
    """Methods (and the controls) x settings, one metric, mean ± std in percent."""
    first = next(iter(reports.values()))
    fracs = sorted(first["finetune"], key=float)
    head = ["method", "linear probe"] + [f"FT {100 * float(f):g} %" for f in fracs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, rep in reports.items():
        cells = [_cell(rep["linear_probe"].get(metric))]
        cells += [_cell((rep["finetune"].get(f) or {}).get(metric)) for f in fracs]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    for ctrl, label in _CONTROLS.items():
        block = (first.get("controls") or {}).get(ctrl)
        if block:
            lines.append(f"| {label} | {_cell(block.get(metric))} |" + " |" * len(fracs))
    return lines


def _robustness(reports: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Spread of the linear probe over seeds, i.e. over pretraining runs (each on its own training subset)."""
    lines = [
        "| method | pretraining runs | subset of train split | LP macro-F1 std | LP macro-F1 min–max |",
        "|---|---|---|---|---|",
    ]
    for method, rep in reports.items():
        f1 = rep["linear_probe"].get("macro_f1") or {}
        runs = len(rep.get("pretrain_seeds") or []) or "?"
        sub = rep.get("pretrain_subset_fraction")
        sub_s = "?" if sub is None else f"{100 * float(sub):g} %"
        lo, hi = f1.get("min"), f1.get("max")
        span = "–" if lo is None or hi is None else f"{100 * lo:.2f} – {100 * hi:.2f}"
        lines.append(f"| {method} | {runs} | {sub_s} | {100 * (f1.get('std') or 0.0):.2f} | {span} |")
    return lines


def _block(rep: Mapping[str, Any], setting: str) -> Mapping[str, Any]:
    """A report's aggregates of one setting: ``linear_probe`` or a fine-tuning fraction key."""
    return rep["linear_probe"] if setting == "linear_probe" else (rep["finetune"].get(setting) or {})


def _setting_label(setting: str) -> str:
    return "linear probe" if setting == "linear_probe" else f"fine-tuning {100 * float(setting):g} %"


def _reading(reports: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Where the first method (TRLS) stands against every other one, computed, not written by hand.

    Linear probe on every metric; with a task score (CinC 2017's challenge
    F1) also fine-tuning with 10 % and 100 % of the labels, where the
    challenge claim is made.
    """
    names = list(reports)
    if len(names) < 2:
        return []
    ref = names[0]
    checks = [("linear_probe", m) for m in METRICS + task_metrics(reports)]
    fracs = set(reports[ref]["finetune"])
    checks += [(f, m) for m in task_metrics(reports)[:1] for f in ("0.1", "1.0") if f in fracs]
    out = []
    for setting, metric in checks:
        mine = _block(reports[ref], setting).get(metric) or {}
        beaten = [
            m
            for m in names[1:]
            if (_block(reports[m], setting).get(metric) or {}).get("mean", -1.0) > (mine.get("mean") or 0.0)
        ]
        out.append(
            f"- {_setting_label(setting)} {metric}: `{ref}` is at or above every other method's mean: "
            + ("**yes**" if not beaten else f"**no** (above it: {', '.join(beaten)})")
        )
    mine_std = (reports[ref]["linear_probe"].get("macro_f1") or {}).get("std") or 0.0
    wider = [m for m in names[1:] if ((reports[m]["linear_probe"].get("macro_f1") or {}).get("std") or 0.0) < mine_std]
    out.append(
        f"- linear-probe macro-F1 spread over pretraining runs: `{ref}` at or below every other method's: "
        + ("**yes**" if not wider else f"**no** (smaller: {', '.join(wider)})")
    )
    return out


def _budget_lines(report: Mapping[str, Any]) -> list[str]:
    """The evaluation budget (``evaluate.label_pool`` / ``val_windows``) as a protocol line, if one was set."""
    budget, n = report.get("budget") or {}, report.get("n_windows") or {}
    if not budget:
        return []
    parts = []
    if "label_pool" in budget:
        parts.append(
            f"labels drawn from a fixed stratified pool of {n.get('train', budget['label_pool']):,} "
            "training windows (label fractions are fractions of this pool)"
        )
    if "val_windows" in budget:
        rule = f" by {report['selected_by']}" if report.get("selected_by") else ""
        parts.append(
            f"C and early stopping chosen{rule} on a fixed stratified {n.get('val', budget['val_windows']):,} "
            "validation windows"
        )
    test = f" ({n['test']:,} windows)" if isinstance(n.get("test"), int) else ""
    return [f"- evaluation budget: {'; '.join(parts)}; test split scored whole{test}"]


def stored_compute_seconds(model_dirs: Sequence[Path], metrics_file: Path) -> float:
    """Seconds a method's results cost when they were computed: pretraining epochs + evaluation units.

    A rerun of the comparison reuses stored encoders and unit results, so
    its wall time says nothing about what a method costs; the epoch times
    kept in each ``encoder.json`` history and the ``unit_seconds`` of the
    report do. A missing or unreadable file fails with its path.
    """
    total = 0.0
    for d in model_dirs:
        info = Path(d) / "encoder.json"
        try:
            history = json.loads(info.read_text()).get("history") or []
            total += sum(float(rec.get("seconds", 0.0)) for rec in history)
        except (OSError, ValueError, AttributeError, TypeError) as exc:
            raise DataError(f"{info}: cannot read the pretraining history ({exc})") from exc
    return total + float(read_report(Path(metrics_file)).get("unit_seconds") or 0.0)


def render_markdown(
    rows: Sequence[Mapping[str, Any]],
    reports: Mapping[str, Mapping[str, Any]],
    descriptions: Mapping[str, str],
    wall_seconds: Mapping[str, float],
    compute_seconds: Mapping[str, float] | None = None,
) -> str:
    first = next(iter(reports.values()))
    machine = first.get("machine") or {}
    lines = [
        f"# Comparison: {first.get('dataset')} ({first.get('task')} task)",
        "",
        f"- protocol: **{first.get('protocol')}** split; profile `{first.get('profile')}`; "
        f"evaluation seeds {first.get('seeds')}; label fractions {first.get('fractions')}",
        f"- pretraining: {len(first.get('pretrain_seeds') or [])} run(s) per method "
        f"(evaluation seed i uses pretraining run i mod K), each on a seeded random "
        f"{100 * float(first.get('pretrain_subset_fraction') or 1.0):g} % subset of the train split",
        *_budget_lines(first),
        *([f"- fine-tuning: {ft}"] if (ft := finetune_budget_text(first.get("finetune_budget"))) else []),
        f"- machine: {machine.get('platform')}, {machine.get('cpu_count')} CPUs, device {first.get('device')}",
        "- wall time per method (pretraining + evaluation): "
        + ", ".join(f"{m} {s:.0f} s" for m, s in wall_seconds.items())
        + f"; total {sum(wall_seconds.values()) / 60:.1f} min",
        *(
            []
            if not compute_seconds
            else [
                "- compute per method when its results were made (pretraining epochs + evaluation units; "
                "differs from the wall time where this run reused stored results): "
                + ", ".join(f"{m} {s:,.0f} s" for m, s in compute_seconds.items())
                + f"; total {sum(compute_seconds.values()) / 60:.1f} min"
            ]
        ),
        "- scores on the test split, mean ± std over seeds (percent); hyper-parameters chosen on validation only",
        "",
    ]
    for metric in task_metrics(reports) + ("macro_f1", "accuracy"):
        lines += [f"## {_LABELS[metric]} (%)", "", *_matrix(reports, metric), ""]
    lines += [
        "## Spread over pretraining runs (robustness)",
        "",
        *_robustness(reports),
        "",
        "## Reading (computed from the tables above)",
        "",
        *_reading(reports),
        "",
        "## All rows",
        "",
    ]
    cols = METRICS + task_metrics(reports)
    lines += ["| method | setting | " + " | ".join(_LABELS[c] for c in cols) + " |", "|---|---|" + "---|" * len(cols)]
    for r in rows:
        lines.append(f"| {r['method']} | {r['setting']} | " + " | ".join(_pm(r, c) for c in cols) + " |")
    lines += ["", "Methods:", ""]
    lines += [f"- `{m}`: {d}" for m, d in descriptions.items()]
    return "\n".join(lines) + "\n"


def render_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return buf.getvalue()


def plot_probe_bars(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> None:
    """Linear-probe accuracy and macro-F1 per method (and control), mean with std error bars."""
    from trls_core.plots import new_figure, palette, save_figure

    probe = [r for r in rows if r["setting"] == "linear_probe"]
    x = np.arange(len(probe))
    fig, axes = new_figure(max(5.0, 1.1 * len(probe) + 2), 4.2)
    ax = axes[0, 0]
    colors = palette(2)
    for i, m in enumerate(METRICS):
        mean = np.array([100 * (r[f"{m}_mean"] or 0.0) for r in probe])
        std = np.array([100 * (r[f"{m}_std"] or 0.0) for r in probe])
        ax.bar(x + (i - 0.5) * 0.38, mean, 0.38, yerr=std, capsize=3, color=colors[i], label=m)
    lo = min(100 * min(r[f"{m}_mean"] or 0.0 for m in METRICS) for r in probe)
    ax.set_ylim(max(0.0, lo - 5), 100)
    ax.set_xticks(x, labels=[r["method"] for r in probe], rotation=30, ha="right")
    ax.set_ylabel("test score (%)")
    ax.set_title("Linear probe, mean ± std over seeds")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def plot_fraction_curves(
    reports: Mapping[str, Mapping[str, Any]], path: str | os.PathLike[str], metric: str = "macro_f1"
) -> None:
    """Fine-tuning ``metric`` against the label fraction, one line (± std band) per method."""
    from trls_core.plots import new_figure, palette, save_figure

    fig, axes = new_figure(6.5, 4.2)
    ax = axes[0, 0]
    colors = palette(len(reports))
    for c, (method, rep) in enumerate(reports.items()):
        fracs = sorted(rep["finetune"], key=float)
        x = np.array([float(f) for f in fracs])
        mean = np.array([100 * rep["finetune"][f][metric]["mean"] for f in fracs])
        std = np.array([100 * rep["finetune"][f][metric].get("std", 0.0) for f in fracs])
        ax.plot(x, mean, marker="o", color=colors[c], label=method)
        ax.fill_between(x, mean - std, mean + std, color=colors[c], alpha=0.15)
    ax.set_xscale("log")
    ax.set_xlabel("fraction of training labels")
    ax.set_ylabel(f"test {metric} (%)")
    ax.set_title(f"Fine-tuning {metric} vs. label fraction")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def write_comparison(
    out_dir: Path,
    metrics_files: Mapping[str, Path],
    descriptions: Mapping[str, str],
    wall_seconds: Mapping[str, float],
    compute_seconds: Mapping[str, float] | None = None,
) -> dict[str, Path]:
    """Write the comparison files into ``out_dir``; returns them by kind.

    ``metrics_files`` maps method name -> its ``metrics.json`` (in the order
    the table should list them). All reports must share dataset, task,
    protocol, seeds, evaluation budget and fine-tuning budget: otherwise the
    rows would not be comparable, and the error says which differs.
    """
    if not metrics_files:
        raise DataError("comparison: no method reports")
    reports = {m: read_report(p) for m, p in metrics_files.items()}
    ref_name, ref = next(iter(reports.items()))
    for m, rep in reports.items():
        for key in ("dataset", "task", "protocol", "seeds", "fractions", "parquet_sha256", "budget", "finetune_budget"):
            if (rep.get(key) or None) != (ref.get(key) or None):
                raise DataError(
                    f"comparison: {m} has {key}={rep.get(key)!r} but {ref_name} has {ref.get(key)!r}: "
                    "methods must go through the same protocol"
                )
    rows = comparison_rows(reports)
    out_dir = Path(out_dir)
    files = {
        "md": out_dir / "comparison.md",
        "csv": out_dir / "comparison.csv",
        "bars": out_dir / "comparison_probe.png",
        "fractions": out_dir / "comparison_fractions.png",
    }
    write_text(files["csv"], render_csv(rows))
    write_text(files["md"], render_markdown(rows, reports, descriptions, wall_seconds, compute_seconds))
    plot_probe_bars(rows, files["bars"])
    plot_fraction_curves(reports, files["fractions"])
    # each method's t-SNE next to the comparison, so one folder (and one MLflow run) holds them all
    for method, mfile in metrics_files.items():
        tsne = Path(mfile).with_name(Path(mfile).name.replace("metrics", "tsne", 1)).with_suffix(".png")
        if tsne.is_file():
            dst = out_dir / f"comparison_tsne_{method}.png"
            write_bytes(dst, tsne.read_bytes())
            files[f"tsne_{method}"] = dst
    return files
