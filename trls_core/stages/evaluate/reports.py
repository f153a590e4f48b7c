"""The evaluation report: stored unit results -> ``metrics.json``, ``summary.md`` and the plots."""

from __future__ import annotations

import logging
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trls_core.config import Params
from trls_core.errors import DataError
from trls_core.paths import report_file
from trls_core.protocol import Unit
from trls_core.stages.evaluate.budget import evaluation_budget, finetune_budget
from trls_core.stages.evaluate.context import EvalContext, load_context
from trls_core.stages.evaluate.units import evaluation_dir, read_unit, unit_file, units_for

logger = logging.getLogger(__name__)

__all__ = ["selection_rule", "write_reports"]


def _machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def selection_rule(select_classes: list[str] | None) -> str:
    """The validation score that chose C and the fine-tuning epoch, as reports state it."""
    return f"mean F1 of {', '.join(select_classes)}" if select_classes else "macro-F1"


def write_reports(
    root: Path,
    params: Params,
    ctx: EvalContext | None = None,
    wall_seconds: float | None = None,
) -> Path:
    """Aggregate the stored unit results of ``params.evaluate`` into the reports; returns the folder.

    Every planned unit must have a current result (same fingerprint): a
    missing or stale one is an error naming it, so a report never mixes
    settings. ``wall_seconds`` defaults to the sum of the units' own times.
    """
    from trls_core.dvc_files import write_evaluation_files
    from trls_core.plots import plot_confusion_matrix, plot_label_fraction_curve, plot_tsne
    from trls_core.protocol import aggregate_units
    from trls_core.reports import write_metrics_json, write_summary_md

    ctx = ctx or load_context(root, params)
    ev, pp = params.evaluate, params.pretrain
    results: dict[Unit, dict[str, Any]] = {}
    problems = []
    for unit in units_for(params):
        path = unit_file(root, params, unit)
        if not path.is_file():
            problems.append(f"{unit.name} (no {path.name})")
            continue
        doc = read_unit(path)
        if doc["fingerprint"] != ctx.fingerprint(unit):
            problems.append(f"{unit.name} (stale {path.name})")
            continue
        results[unit] = doc["result"]
    if problems:
        raise DataError(
            f"cannot write the {ev.dataset}/{ev.task} report, unit results missing or stale: "
            f"{', '.join(problems)}; run `trls evaluate` to complete them"
        )
    agg = aggregate_units(results, ev.seeds, ev.fractions)
    unit_total = sum(float(r.get("unit_seconds", 0.0)) for r in results.values())
    out: dict[str, Any] = {
        **agg,
        "dataset": ev.dataset,
        "task": ev.task,
        "class_names": ctx.class_names,
        "protocol": ctx.meta.get("protocol"),
        "profile": params.profile,
        "pretrain_seeds": list(pp.seeds),
        "pretrain_subset_fraction": pp.subset_fraction,
        "pretrain_method": pp.method,
        "pretrain_dataset": pp.dataset,
        "encoder": params.model.encoder,
        "input": "raw" if ctx.data["x_train"].dim() == 3 else "spectrogram",
        "budget": evaluation_budget(ev),
        "level": ev.level,
        "selected_by": selection_rule(ctx.select_classes),
        "finetune_budget": finetune_budget(ev),
        "n_windows": {s: int(len(ctx.data[f"y_{s}"])) for s in ("train", "val", "test")},
        **({"n_records": {s: int(np.unique(r).size) for s, r in ctx.records.items()}} if ctx.records else {}),
        "spectrogram": ctx.meta.get("stft"),
        "parquet_sha256": ctx.meta.get("parquet_sha256"),
        "machine": _machine(),
        "device": ctx.device,
        "unit_seconds": round(unit_total, 1),
        "wall_seconds": round(wall_seconds if wall_seconds is not None else unit_total, 1),
    }
    rdir = evaluation_dir(root, params)
    write_metrics_json(out, report_file(rdir, "metrics.json", ev.task))
    write_summary_md(out, report_file(rdir, "summary.md", ev.task))
    write_evaluation_files(root, params, out)  # reports/dvc/: what dvc metrics / dvc plots read
    first = out["per_seed"][0]["linear_probe"]
    plot_confusion_matrix(
        np.asarray(first["confusion_matrix"]),
        ctx.class_names,
        report_file(rdir, "confusion_matrix.png", ev.task),
        title=f"{ev.dataset} {ev.task}: linear probe, seed {ev.seeds[0]}",
    )
    z_test = ctx.embed(ctx.encoder(ev.seeds[0]), ctx.data["x_test"], 512, ctx.device)  # the probe units' features
    plot_tsne(
        z_test,
        np.asarray(ctx.data["y_test"]),
        ctx.class_names,
        report_file(rdir, "tsne.png", ev.task),
        seed=0,
        max_points=ev.tsne_points,
    )
    if out["finetune"]:  # a probe-only evaluation (fractions: []) has no curve to draw
        plot_label_fraction_curve(
            out["finetune"], report_file(rdir, "label_fractions.png", ev.task), reference=out["linear_probe"]
        )
    logger.info("reports written to %s", rdir)
    return rdir
