"""Evaluation step: pretrained encoders -> reports/<dataset>/.

Reads params `evaluate` (and `pretrain.seeds`/`model` to find and rebuild the
encoders). Runs the downstream protocol of DESIGN.md §1.5 over
`evaluate.seeds`: linear probe, fine-tuning per label fraction, and the two
controls (spectrogram pixels; the same encoder untrained). Writes
``metrics.json`` (the machine-readable shape other tools read),
``summary.md``, ``confusion_matrix.png``, ``tsne.png``,
``label_fractions.png``.
"""

from __future__ import annotations

import logging
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from trls_core.config import Params
from trls_core.data.tensors import load_meta, load_split, task_info
from trls_core.paths import model_dir, report_dir, report_file, spectrogram_dir
from trls_core.stages.pretrain import build_encoder_from_params, load_encoder, resolve_device

logger = logging.getLogger(__name__)


def _machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def evaluate_all(
    root: Path,
    params: Params,
    progress: bool = True,
    on_result: Callable[[str, dict[str, Any]], None] | None = None,
) -> Path:
    """Run the protocol and write the reports; returns the report folder."""
    from trls_core.data.windows import label_fraction_indices
    from trls_core.evaluate import run_protocol
    from trls_core.plots import plot_confusion_matrix, plot_label_fraction_curve, plot_tsne
    from trls_core.reports import write_metrics_json, write_summary_md

    t0 = time.perf_counter()
    ev, pp = params.evaluate, params.pretrain
    if ev.dataset != pp.dataset:
        logger.warning("evaluate.dataset %r differs from pretrain.dataset %r", ev.dataset, pp.dataset)
    if pp.threads:
        torch.set_num_threads(pp.threads)
    sdir = spectrogram_dir(root, ev.dataset)
    meta = load_meta(sdir)
    tinfo = task_info(meta, ev.task)
    class_names = list(tinfo["classes"])
    splits = {s: load_split(sdir, s, ev.task) for s in ("train", "val", "test")}
    data = {f"{k}_{s}": getattr(splits[s], k) for s in splits for k in ("x", "y")}

    encoders: dict[int, nn.Module] = {}
    for s in pp.seeds:
        encoders[s], _ = load_encoder(model_dir(root, pp.dataset, params.model.encoder, s))

    def encoder_factory(seed: int) -> nn.Module:
        # evaluation seed i uses pretraining seed pp.seeds[i mod K]: with K pretraining
        # runs the spread over seeds includes the spread over pretraining runs.
        return encoders[pp.seeds[ev.seeds.index(seed) % len(pp.seeds)]]

    in_channels = int(data["x_train"].shape[1])

    def random_encoder_factory(seed: int) -> nn.Module:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return build_encoder_from_params(params, in_channels).eval()

    device = resolve_device(ev.device)
    ft = ev.finetune.model_dump()
    out = run_protocol(
        encoder_factory,
        data,
        class_names,
        fractions=ev.fractions,
        seeds=ev.seeds,
        finetune_kwargs=ft,
        random_encoder_factory=random_encoder_factory,
        fraction_indices=label_fraction_indices,
        progress=progress,
        on_result=on_result,
        device=device,
        probe_kwargs={"c_grid": tuple(ev.c_grid)},
    )
    results: dict[str, Any] = {
        **out.results,
        "dataset": ev.dataset,
        "task": ev.task,
        "class_names": class_names,
        "protocol": meta.get("protocol"),
        "profile": params.profile,
        "pretrain_seeds": list(pp.seeds),
        "encoder": params.model.encoder,
        "spectrogram": meta.get("stft"),
        "parquet_sha256": meta.get("parquet_sha256"),
        "machine": _machine(),
        "device": device,
        "wall_seconds": round(time.perf_counter() - t0, 1),
    }
    rdir = report_dir(root, ev.dataset)
    write_metrics_json(results, report_file(rdir, "metrics.json", ev.task))
    write_summary_md(results, report_file(rdir, "summary.md", ev.task))
    art = out.artifacts
    first = results["per_seed"][0]["linear_probe"]
    plot_confusion_matrix(np.asarray(first["confusion_matrix"]), class_names, report_file(rdir, "confusion_matrix.png", ev.task),
                          title=f"{ev.dataset} {ev.task}: linear probe, seed {ev.seeds[0]}")
    plot_tsne(art["z_test"], art["y_test"], class_names, report_file(rdir, "tsne.png", ev.task), seed=0, max_points=ev.tsne_points)
    plot_label_fraction_curve(results["finetune"], report_file(rdir, "label_fractions.png", ev.task),
                              reference=results["linear_probe"])
    logger.info("reports written to %s (%.0f s)", rdir, results["wall_seconds"])
    return rdir
