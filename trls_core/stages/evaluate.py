"""Evaluation step: pretrained encoders -> reports/<dataset>/.

Reads params `evaluate` (and `pretrain.seeds`/`model` to find and rebuild the
encoders). Runs the downstream protocol of docs/design.md §1.5 over
`evaluate.seeds`: linear probe, fine-tuning per label fraction, and the two
controls (spectrogram pixels; the same encoder untrained). Writes
``metrics.json`` (the machine-readable shape other tools read),
``summary.md``, ``confusion_matrix.png``, ``tsne.png``,
``label_fractions.png``.

The protocol runs as independent units (``trls_core.protocol``). Each
unit's result is stored atomically in ``reports/<dataset>/units/<task>/``
with a fingerprint of what determines it (evaluation settings, the
encoder's weights file, the data digest), so

- the Prefect flow can map the units as separate task runs and
  :func:`write_reports` aggregates whatever ran, in whatever order, and
- a rerun after a crash (or with one more seed) only runs the units whose
  result is missing or stale.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trls_core.config import Params
from trls_core.data.tensors import load_meta, load_records, load_split, task_info
from trls_core.errors import DataError
from trls_core.io import sha256_file, write_json
from trls_core.models.loading import build_encoder_from_params, load_encoder
from trls_core.paths import model_dir, report_dir, report_file, spectrogram_dir
from trls_core.protocol import Unit, plan_units
from trls_core.runtime import resolve_device

logger = logging.getLogger(__name__)

UNIT_SCHEMA = 2  # 2: challenge_f1 / record-level scores in unit results


def _machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def units_for(params: Params) -> list[Unit]:
    """The protocol units ``params.evaluate`` asks for (both controls always on)."""
    ev = params.evaluate
    return plan_units(ev.fractions, ev.seeds, random_control=True, spectrogram_control=True)


def evaluation_dir(root: Path, params: Params) -> Path:
    """``reports/<dataset>/``, or ``reports/<dataset>/from_<source>/`` for a transfer.

    A transfer (``pretrain.dataset`` != ``evaluate.dataset``: an encoder
    pretrained on one dataset probed and fine-tuned on another) keeps its
    own folder, so its report never overwrites the target's own-pretraining
    report and both can be compared.
    """
    ev, pp = params.evaluate, params.pretrain
    base = report_dir(root, ev.dataset)
    return base if pp.dataset == ev.dataset else base / f"from_{pp.dataset}"


def units_dir(root: Path, params: Params) -> Path:
    return evaluation_dir(root, params) / "units" / params.evaluate.task


#: What an encoder's input must share with the data it embeds (the normaliser is fitted per dataset).
_TRANSFER_STFT_KEYS = ("n_fft", "hop", "win_length", "window", "center", "log_eps", "fmax_bin")


def check_transfer(encoder_json: Path, meta: dict[str, Any], meta_path: Path) -> None:
    """Fail, naming the setting and both files, when data cannot feed a pretrained encoder.

    The encoder records its preprocessing (``encoder.json``: channels, rate,
    STFT settings). A target dataset at another rate or with other STFT
    settings would give spectrograms whose rows mean other frequencies: the
    fix is the target's own ``<dataset>.parquet.target_fs`` (resample) and
    ``<dataset>.spectrogram`` settings, which the message names. Window
    length may differ: the TFRNN pools over time, so a shorter window gives
    fewer frames, not other features.
    """
    try:
        cfg = json.loads(encoder_json.read_text())["config"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{encoder_json}: unreadable encoder config ({exc}); rerun `trls pretrain`") from None
    ds = meta.get("dataset", "?")
    problems = []
    if int(cfg.get("in_channels", -1)) != int(meta.get("n_channels", -2)):
        problems.append(
            f"channels: the encoder reads {cfg.get('in_channels')}, the data has "
            f"{meta.get('n_channels')} (set {ds}.parquet.channels)"
        )
    if cfg.get("fs") is not None and meta.get("fs") is not None and float(cfg["fs"]) != float(meta["fs"]):
        problems.append(
            f"rate: the encoder was trained at {cfg['fs']:g} Hz, the data is at {float(meta['fs']):g} Hz "
            f"(set {ds}.parquet.target_fs: {cfg['fs']:g})"
        )
    enc_stft, data_stft = cfg.get("stft") or {}, meta.get("stft") or {}
    diff = {
        k: (enc_stft.get(k), data_stft.get(k))
        for k in _TRANSFER_STFT_KEYS
        if enc_stft and enc_stft.get(k) != data_stft.get(k)
    }
    if diff:
        problems.append(
            "spectrogram: "
            + ", ".join(f"{ds}.spectrogram.{k} is {d!r}, the encoder's is {e!r}" for k, (e, d) in diff.items())
        )
    if problems:
        raise DataError(f"cannot embed {meta_path} with the encoder of {encoder_json}: " + "; ".join(problems))


def unit_file(root: Path, params: Params, unit: Unit) -> Path:
    return units_dir(root, params) / f"{unit.slug}.json"


def pretrain_seed_for(params: Params, seed: int) -> int:
    """Evaluation seed i uses pretraining seed ``pretrain.seeds[i mod K]``.

    With K pretraining runs the spread over evaluation seeds then includes
    the spread over pretraining runs.
    """
    ev, pp = params.evaluate, params.pretrain
    return pp.seeds[ev.seeds.index(seed) % len(pp.seeds)]


@dataclass
class EvalContext:
    """What every unit of one evaluation needs, loaded once per process.

    Encoders are loaded lazily: a fine-tuning unit of seed 3 loads only
    seed 3's pretraining run.
    """

    root: Path
    params: Params
    meta: dict[str, Any]
    class_names: list[str]
    data: dict[str, Any]
    device: str
    _encoders: dict[int, tuple[nn.Module, str]]
    score_classes: list[str] | None = None  # the task's own F1 subset (CinC 2017: N, A, O)
    test_records: np.ndarray | None = None  # record index of each test window, when the data has them
    records: dict[str, np.ndarray] | None = None  # record of each window per split (evaluate.level: record)

    @property
    def select_classes(self) -> list[str] | None:
        """The classes whose mean F1 chooses C and the fine-tuning epoch (None: macro-F1 over all)."""
        if self.params.evaluate.select_by == "task_score" and self.score_classes:
            return list(self.score_classes)
        return None

    @property
    def in_channels(self) -> int:
        return int(self.data["x_train"].shape[1])

    def _load(self, pretrain_seed: int) -> tuple[nn.Module, str]:
        if pretrain_seed not in self._encoders:
            mdir = model_dir(self.root, self.params.pretrain.dataset, self.params.model.encoder, pretrain_seed)
            enc, _ = load_encoder(mdir)
            self._encoders[pretrain_seed] = (enc, sha256_file(mdir / "encoder.safetensors"))
        return self._encoders[pretrain_seed]

    def encoder(self, seed: int) -> nn.Module:
        """The pretrained encoder evaluation seed ``seed`` uses."""
        return self._load(pretrain_seed_for(self.params, seed))[0]

    def random_encoder(self, seed: int) -> nn.Module:
        """The same architecture, untrained, initialised from ``seed`` (the random-encoder control)."""
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return build_encoder_from_params(self.params, self.in_channels).eval()

    def fingerprint(self, unit: Unit) -> str:
        """Hash of everything that determines the unit's result (not device/threads)."""
        ev = self.params.evaluate
        blob: dict[str, Any] = {
            "schema": UNIT_SCHEMA,
            "unit": list(unit),
            "task": ev.task,
            "c_grid": list(ev.c_grid),
            "data": {
                "parquet_sha256": self.meta.get("parquet_sha256"),
                "stft": self.meta.get("stft"),
                "normalisation": self.meta.get("normalisation"),
            },
        }
        if unit.method in ("linear_probe", "finetune"):
            blob["encoder_sha256"] = self._load(pretrain_seed_for(self.params, unit.seed))[1]
        if unit.method == "finetune":
            blob["finetune"] = ev.finetune.model_dump()
        if unit.method == "random_encoder_linear":
            blob["model"] = self.params.model.model_dump()
        budget = evaluation_budget(ev)
        if budget:  # only when set, so results stored without a budget stay current
            blob["budget"] = budget
        if self.select_classes:
            # only when it differs from macro-F1: results of tasks without score classes stay current
            blob["select_classes"] = self.select_classes
        if ev.level != "window":  # only when set, so window-level results stay current
            blob["level"] = ev.level
        return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


def selection_rule(select_classes: list[str] | None) -> str:
    """The validation score that chose C and the fine-tuning epoch, as reports state it."""
    return f"mean F1 of {', '.join(select_classes)}" if select_classes else "macro-F1"


def evaluation_budget(ev: Any) -> dict[str, int]:
    """The set caps of ``evaluate`` (``label_pool``, ``val_windows``); empty when the splits are used whole."""
    return {k: int(v) for k in ("label_pool", "val_windows") if (v := getattr(ev, k, None)) is not None}


def finetune_budget(ev: Any) -> dict[str, Any]:
    """What bounds a fine-tuning unit's training: epochs, batches per epoch, batch size, patience.

    Learning rates are left out: methods may set them apart (the supervised
    baselines train the encoder at the head's lr), while the budget is the
    protocol every method of a comparison must share.
    """
    ft = ev.finetune
    return {
        "epochs": ft.epochs,
        "max_steps_per_epoch": ft.max_steps_per_epoch,
        "batch_size": ft.batch_size,
        "patience": ft.patience,
    }


#: Seed of the fixed pool / validation subsets: the same windows for every method and evaluation seed.
BUDGET_SEED = 0


def budget_indices(y: np.ndarray, cap: int) -> np.ndarray:
    """Indices of the fixed stratified ``cap``-window subset of labels ``y`` (drawn with :data:`BUDGET_SEED`).

    One definition of the cut, so the validation studies in ``bench/`` that
    need the windows *outside* it select exactly what the protocol selects.
    """
    from trls_core.data.windows import label_fraction_indices

    return np.asarray(label_fraction_indices(y, cap / len(y), BUDGET_SEED))


def apply_budget(data: dict[str, Any], ev: Any) -> dict[str, Any]:
    """``data`` with train cut to ``ev.label_pool`` and validation to ``ev.val_windows`` windows (stratified).

    Why: on a 2-core CPU, CinC 2017's 38,290 training and 8,169 validation
    windows make each probe or fine-tuning unit 1-2 min, most of it embedding
    and scoring windows that do not change the comparison. The subsets are
    drawn once with :data:`BUDGET_SEED`, stratified by label, so every
    method and seed sees the same labelled pool and the same selection set;
    the label fractions are fractions *of the pool*. Test is never cut.
    """
    out = dict(data)
    for split, cap in (("train", ev.label_pool), ("val", ev.val_windows)):
        y = np.asarray(out[f"y_{split}"])
        if cap is None or cap >= len(y):
            continue
        idx = torch.as_tensor(budget_indices(y, cap))
        out[f"x_{split}"], out[f"y_{split}"] = out[f"x_{split}"][idx], out[f"y_{split}"][idx]
    return out


def load_context(root: Path, params: Params) -> EvalContext:
    """Data splits, class names and device for ``params.evaluate``; fails naming what is missing."""
    ev, pp = params.evaluate, params.pretrain
    if ev.dataset != pp.dataset:
        logger.warning("evaluate.dataset %r differs from pretrain.dataset %r", ev.dataset, pp.dataset)
    if pp.threads:
        torch.set_num_threads(pp.threads)
    sdir = spectrogram_dir(root, ev.dataset)
    meta = load_meta(sdir)
    class_names = list(task_info(meta, ev.task)["classes"])
    from trls_core.ssl.factory import input_kind

    if input_kind(params) == "raw":  # raw-input baselines: the same windows, order and labels
        from trls_core.data.raw import load_raw_splits

        splits = load_raw_splits(root, ev.dataset, ev.task)
    else:
        splits = {s: load_split(sdir, s, ev.task) for s in ("train", "val", "test")}
    data = apply_budget({f"{k}_{s}": getattr(splits[s], k) for s in splits for k in ("x", "y")}, ev)
    if pp.dataset != ev.dataset and input_kind(params) != "raw":
        enc_json = model_dir(root, pp.dataset, params.model.encoder, pp.seeds[0]) / "encoder.json"
        if not enc_json.is_file():
            raise DataError(f"{enc_json} not found: pretrain on {pp.dataset!r} first (`trls pretrain`)")
        check_transfer(enc_json, meta, sdir / "meta.json")
    test_records = load_records(sdir, "test")[0].numpy() if meta.get("records") else None
    records = None
    if ev.level == "record":
        if not meta.get("records"):
            raise DataError(
                f"{sdir / 'meta.json'}: evaluate.level is 'record' but dataset {ev.dataset!r} has no "
                "record ids (records.json); use evaluate.level: window"
            )
        records = {s: load_records(sdir, s)[0].numpy() for s in ("train", "val", "test")}
        for s, r in records.items():
            if len(r) != len(data[f"y_{s}"]):
                raise DataError(
                    f"{sdir / (s + '.safetensors')}: {len(r)} record ids for {len(data[f'y_{s}'])} "
                    "windows (field 'record_idx'); rebuild the spectrograms (`dvc repro`)"
                )
    return EvalContext(
        root,
        params,
        meta,
        class_names,
        data,
        resolve_device(ev.device),
        {},
        score_classes=task_info(meta, ev.task).get("score_classes"),
        test_records=test_records,
        records=records,
    )


def read_unit(path: Path) -> dict[str, Any]:
    """A stored unit result; a broken file is an error naming it (never silently rerun or skipped)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable unit result ({exc}); delete it to rerun the unit") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("result"), dict) or "fingerprint" not in doc:
        raise DataError(f"{path}: not a unit result (no 'fingerprint'/'result'); delete it to rerun the unit")
    return doc


def evaluate_unit(
    root: Path,
    params: Params,
    unit: Unit,
    ctx: EvalContext | None = None,
    progress: bool = False,
    force: bool = False,
) -> tuple[Path, dict[str, Any], bool]:
    """Run one unit unless its stored result is current; returns (file, result, ran).

    ``ran`` is False when a stored result with the same fingerprint was
    reused. The result file is written atomically, so a killed unit leaves
    either no file or the previous complete one.
    """
    from trls_core.arrays import strip_arrays
    from trls_core.data.windows import label_fraction_indices
    from trls_core.metrics import record_level_scores, task_scores
    from trls_core.pooling import Groups
    from trls_core.protocol import run_unit

    ctx = ctx or load_context(root, params)
    path = unit_file(root, params, unit)
    fp = ctx.fingerprint(unit)
    if not force and path.is_file():
        doc = read_unit(path)
        if doc["fingerprint"] == fp:
            return path, doc["result"], False
        logger.info("%s: stored result is stale (fingerprint %s != %s), rerunning", unit.name, doc["fingerprint"], fp)
    ev = params.evaluate
    t0 = time.perf_counter()
    result = run_unit(
        unit,
        ctx.data,
        ctx.class_names,
        encoder_factory=ctx.encoder,
        random_encoder_factory=ctx.random_encoder,
        fraction_indices=label_fraction_indices,
        finetune_kwargs={**ev.finetune.model_dump(), "select_classes": ctx.select_classes},
        probe_kwargs={"c_grid": tuple(ev.c_grid), "select_classes": ctx.select_classes},
        device=ctx.device,
        progress=progress,
        records=ctx.records,
    )
    if ctx.records is not None:  # record-level unit: the headline is per record, windows beside it
        y_win = np.asarray(ctx.data["y_test"])
        y_rec = Groups.of(ctx.records["test"]).labels(y_win, "test")
        result.update(
            record_level_scores(
                y_rec, result["y_pred"], y_win, result.get("y_pred_windows"), ctx.class_names, ctx.score_classes
            )
        )
    elif isinstance(result.get("y_pred"), np.ndarray):  # task score and record-level votes
        result.update(
            task_scores(
                np.asarray(ctx.data["y_test"]), result["y_pred"], ctx.class_names, ctx.score_classes, ctx.test_records
            )
        )
    result = strip_arrays(result)
    result["unit_seconds"] = round(time.perf_counter() - t0, 3)
    write_json(
        path,
        {
            "schema": UNIT_SCHEMA,
            "unit": unit.name,
            "method": unit.method,
            "seed": unit.seed,
            "fraction": unit.fraction,
            "fingerprint": fp,
            "result": result,
        },
    )
    return path, result, True


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
    from trls_core.evaluate import embed
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
    first = out["per_seed"][0]["linear_probe"]
    plot_confusion_matrix(
        np.asarray(first["confusion_matrix"]),
        ctx.class_names,
        report_file(rdir, "confusion_matrix.png", ev.task),
        title=f"{ev.dataset} {ev.task}: linear probe, seed {ev.seeds[0]}",
    )
    z_test = embed(ctx.encoder(ev.seeds[0]), ctx.data["x_test"], 512, ctx.device)
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


def evaluate_all(
    root: Path,
    params: Params,
    progress: bool = True,
    on_result: Callable[[str, dict[str, Any]], None] | None = None,
    force: bool = False,
) -> Path:
    """Run every unit of the protocol in this process (reusing current stored results), then the reports.

    ``on_result(unit name, metrics)`` is called for every unit that ran now
    (not for reused ones). ``force`` reruns every unit.
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    ctx = load_context(root, params)
    units = units_for(params)
    reused = 0
    bar = tqdm(units, desc="evaluate", unit="unit", disable=not progress)
    for unit in bar:
        bar.set_postfix_str(unit.name)
        _, result, ran = evaluate_unit(root, params, unit, ctx, force=force)
        if ran and on_result is not None:
            on_result(unit.name, result)
        reused += not ran
    if reused:
        logger.info("reused %d of %d stored unit results (same fingerprint)", reused, len(units))
    return write_reports(root, params, ctx, wall_seconds=time.perf_counter() - t0)
