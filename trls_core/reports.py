"""metrics.json and summary.md of a downstream evaluation.

The JSON keeps fractions of 1 (machine-readable, what the lead's comparison
and champion logic read); the markdown shows percent with ``mean ± std``
over seeds, the form in which the paper and its baselines report results.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from trls_core.io import write_json, write_text

_EXTRA_LABELS = {
    "challenge_f1": "challenge F1 (score classes)",
    "record_accuracy": "record accuracy (voted)",
    "record_macro_f1": "record macro-F1 (voted)",
    "record_challenge_f1": "record challenge F1 (voted)",
    "window_accuracy": "window accuracy",
    "window_macro_f1": "window macro-F1",
    "window_challenge_f1": "window challenge F1",
}
#: At ``level: record`` the record scores are the unit's own (pooled), not a vote over window predictions.
_RECORD_LEVEL_LABELS = {
    "challenge_f1": "record challenge F1",
    "record_accuracy": "record accuracy",
    "record_macro_f1": "record macro-F1",
    "record_challenge_f1": "record challenge F1",
}

_CONTROL_LABELS = {
    "spectrogram_linear": "control: linear on spectrogram pixels",
    "random_encoder_linear": "control: linear on random-init encoder",
}


def finetune_budget_text(budget: Mapping[str, Any] | None) -> str | None:
    """The fine-tuning budget as one sentence; None for reports written before it was recorded.

    Why a report states it: the budget decides whether "fine-tuning" trains
    at all. On CinC 2017 a CPU cap of 4 rounds of <= 4 batches never beat
    the probe-initialised head, so its "FT 100 %" column was a second probe
    (docs/design.md §6.4), and the budget differs between datasets and
    profiles.
    """
    if not budget:
        return None
    steps, bs, patience = budget.get("max_steps_per_epoch"), budget.get("batch_size"), budget.get("patience")
    what = (
        f"rounds of ≤ {steps} batches of {bs} (a CPU cap, not full passes)"
        if steps
        else f"full passes over the labelled subset (batch {bs})"
    )
    stop = f", early stopping after {patience} epochs without improvement" if patience else ""
    return (
        f"LP-FT, up to {budget.get('epochs')} {what}{stop}; the best validation epoch is kept "
        "(epoch 0 = the probe-initialised head)"
    )


def _jsonable(obj: Any) -> Any:
    """numpy scalars/arrays -> Python; NaN/inf -> None (strict JSON has no NaN)."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_metrics_json(results: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write ``results`` (from ``run_protocol`` + task/protocol/profile) as JSON, atomically.

    Raises ``TypeError`` naming nothing half-written if something in
    ``results`` is not serialisable (e.g. a stray tensor): the check runs
    before the file is touched.
    """
    clean = _jsonable(results)
    json.dumps(clean, allow_nan=False)  # fail before touching the file
    write_json(path, clean)


def _pm(agg: Mapping[str, Any] | None, key: str) -> str:
    """``97.85 ± 0.21`` (percent) for one metric aggregate, ``–`` if absent."""
    if not agg or key not in agg:
        return "–"
    a = agg[key]
    return f"{100 * a['mean']:.2f} ± {100 * a.get('std', 0.0):.2f}"


def _n(agg: Mapping[str, Any] | None) -> str:
    if not agg:
        return "–"
    first = next(iter(agg.values()))
    return str(first.get("n", len(first.get("values", []))))


_SCORE_NAMES = {"macro_f1": "macro-F1", "challenge_f1": "challenge F1"}


def _beats_line(name: str, probe: Mapping[str, Any], ctrl: Mapping[str, Any], key: str = "macro_f1") -> str:
    """Does pretraining beat a control by more than the seed std (the larger of the two)?"""
    if key not in probe or key not in ctrl:
        return f"- vs. `{name}`: {key} missing."
    diff = 100 * (probe[key]["mean"] - ctrl[key]["mean"])
    std = 100 * max(probe[key].get("std", 0.0), ctrl[key].get("std", 0.0))
    verdict = "**yes**" if diff > std else "**no**"
    label = _SCORE_NAMES.get(key, key)
    return (
        f"- Linear probe vs. `{name}`: {diff:+.2f} pp {label} "
        f"(seed std {std:.2f} pp) — beats it by more than the seed std: {verdict}"
    )


def render_summary_md(results: Mapping[str, Any]) -> str:
    """A readable markdown summary of a protocol run.

    Header (task, protocol, profile, dataset, seeds), a table of linear
    probe, controls and each fine-tuning fraction (accuracy, macro-F1,
    kappa as ``mean ± std`` in percent over seeds), a line per control
    saying whether pretraining beats it by more than the seed std, and the
    per-class report + confusion matrix of the first seed's linear probe.
    """
    lines: list[str] = []
    task = results.get("task", "?")
    lines.append(f"# Downstream evaluation: {task}")
    lines.append("")
    for key in ("task", "dataset", "protocol", "profile", "method", "encoder"):
        if key in results:
            lines.append(f"- **{key}**: {results[key]}")
    seeds = results.get("seeds", [])
    lines.append(f"- **seeds**: {', '.join(str(s) for s in seeds)} (n = {len(seeds)})")
    if results.get("budget"):
        n = results.get("n_windows") or {}
        lines.append(
            f"- **evaluation budget**: {results['budget']}: train (labelled pool) {n.get('train')}, "
            f"validation {n.get('val')}, test {n.get('test')} windows; fractions are of the pool"
        )
    record_level = results.get("level") == "record"
    if record_level:
        lines.append(
            "- **level**: record: every score in the first table is per record (a record's windows pooled: "
            "mean embedding for probes and controls, mean window logits for fine-tuning); label fractions "
            "are fractions of training records; window-level scores beside them"
        )
    if results.get("selected_by"):
        unit = "records" if record_level else "windows"
        lines.append(
            f"- **model selection**: C and the fine-tuning epoch chosen by validation {results['selected_by']} "
            f"(on validation {unit})"
        )
    if ft := finetune_budget_text(results.get("finetune_budget")):
        lines.append(f"- **fine-tuning**: {ft}")
    lines.append("- scores in percent, mean ± sample std (ddof = 1) over seeds")
    lines.append("")

    lines.append("| setting | n | accuracy | macro-F1 | Cohen's κ (×100) | balanced acc. |")
    lines.append("|---|---|---|---|---|---|")

    def row(label: str, agg: Mapping[str, Any] | None) -> None:
        lines.append(
            f"| {label} | {_n(agg)} | {_pm(agg, 'accuracy')} | {_pm(agg, 'macro_f1')} | "
            f"{_pm(agg, 'cohen_kappa')} | {_pm(agg, 'balanced_accuracy')} |"
        )

    probe = results.get("linear_probe")
    controls = results.get("controls", {}) or {}
    finetune = results.get("finetune", {}) or {}
    settings = [("linear probe (frozen)", probe)]
    settings += [(_CONTROL_LABELS.get(name, f"control: {name}"), agg) for name, agg in controls.items()]
    settings += [(f"fine-tune {100 * float(frac):g} % labels", finetune[frac]) for frac in sorted(finetune, key=float)]
    for label, agg in settings:
        row(label, agg)
    lines.append("")

    labels = {**_EXTRA_LABELS, **(_RECORD_LEVEL_LABELS if record_level else {})}
    extra = [k for k in _EXTRA_LABELS if probe and k in probe and not (record_level and k == "challenge_f1")]
    if extra:  # the task's own score and record-level (voted or pooled) scores
        lines.append("| setting | " + " | ".join(labels[k] for k in extra) + " |")
        lines.append("|---" * (len(extra) + 1) + "|")
        for label, agg in settings:
            lines.append(f"| {label} | " + " | ".join(_pm(agg, k) for k in extra) + " |")
        lines.append("")

    if probe and controls:
        lines.append("## Pretraining vs. controls")
        lines.append("")
        for name, agg in controls.items():
            lines.append(_beats_line(name, probe, agg))
            if "challenge_f1" in probe and "challenge_f1" in agg:  # the task's own score, where it has one
                lines.append(_beats_line(name, probe, agg, "challenge_f1"))
        lines.append("")

    per_seed = results.get("per_seed") or []
    if per_seed and per_seed[0].get("linear_probe", {}).get("per_class"):
        first = per_seed[0]
        lp = first["linear_probe"]
        lines.append(f"## Per-class report (linear probe, seed {first.get('seed', '?')})")
        lines.append("")
        if "C" in lp:
            lines.append(f"Chosen C = {lp['C']:g} (by validation {results.get('selected_by') or 'macro-F1'}).")
            lines.append("")
        lines.append("| class | precision | recall | F1 | support |")
        lines.append("|---|---|---|---|---|")
        for name, pc in lp["per_class"].items():
            lines.append(
                f"| {name} | {100 * pc['precision']:.2f} | {100 * pc['recall']:.2f} | "
                f"{100 * pc['f1']:.2f} | {pc['support']} |"
            )
        lines.append("")
        cm = lp.get("confusion_matrix")
        if cm:
            names = list(lp["per_class"])
            lines.append("Confusion matrix (rows = true, columns = predicted):")
            lines.append("")
            lines.append("| true \\ pred | " + " | ".join(names) + " |")
            lines.append("|---" * (len(names) + 1) + "|")
            for name, r in zip(names, cm):
                lines.append(f"| {name} | " + " | ".join(str(v) for v in r) + " |")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def write_summary_md(results: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Render :func:`render_summary_md` and write it atomically."""
    write_text(path, render_summary_md(results))
