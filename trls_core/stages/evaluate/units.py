"""Evaluation units on disk: where their results live, reading them, running one unless current."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from trls_core.config import Params
from trls_core.errors import DataError
from trls_core.io import write_json
from trls_core.paths import report_dir
from trls_core.protocol import Unit, plan_units
from trls_core.stages.evaluate.context import UNIT_SCHEMA, EvalContext, load_context, pretrain_seed_for

logger = logging.getLogger(__name__)

__all__ = [
    "ENCODER_KEY",
    "evaluate_unit",
    "evaluated_weights_sha256",
    "evaluation_dir",
    "read_unit",
    "unit_file",
    "units_dir",
    "units_for",
]

#: A unit result's record of the pretrained encoder it scored: ``{"pretrain_seed": s, "weights_sha256": sha}``.
#: Outside the fingerprint (which hashes the same digest), so stored fingerprints are unchanged.
ENCODER_KEY = "encoder"


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


def unit_file(root: Path, params: Params, unit: Unit) -> Path:
    return units_dir(root, params) / f"{unit.slug}.json"


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
    from trls_core.evaluate.memo import memoised
    from trls_core.metrics import record_level_scores, task_scores
    from trls_core.pooling import Groups
    from trls_core.protocol import run_unit

    ctx = ctx or load_context(root, params)
    path = unit_file(root, params, unit)
    fp = ctx.fingerprint(unit)
    scored = _scored_encoder(params, unit, ctx)
    if not force and path.is_file():
        doc = read_unit(path)
        if doc["fingerprint"] == fp:
            if scored and ENCODER_KEY not in doc:  # stored before it was recorded: the fingerprint vouches for it
                write_json(path, {**doc, ENCODER_KEY: scored})
                logger.info("%s: recorded the scored encoder's %s in %s", unit.name, scored, path)
            return path, doc["result"], False
        logger.info("%s: stored result is stale (fingerprint %s != %s), rerunning", unit.name, doc["fingerprint"], fp)
    ev = params.evaluate
    t0 = time.perf_counter()
    with memoised():  # repeats of the same embedding / probe fit across units are computed once
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
            embed_fn=ctx.embed,  # frozen features computed once per process (EvalContext.embed)
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
            **({ENCODER_KEY: scored} if scored else {}),
            "result": result,
        },
    )
    return path, result, True


def _scored_encoder(params: Params, unit: Unit, ctx: EvalContext) -> dict[str, Any] | None:
    """The pretrained encoder ``unit`` scores (pretraining seed, weights digest); None for the controls."""
    if unit.method not in ("linear_probe", "finetune"):
        return None
    return {"pretrain_seed": pretrain_seed_for(params, unit.seed), "weights_sha256": ctx.encoder_sha256(unit.seed)}


def evaluated_weights_sha256(evaluation: Path, task: str, pretrain_seed: int) -> str:
    """The weights digest the stored units of ``task`` scored for pretraining seed ``pretrain_seed``.

    ``evaluation`` is the evaluation's folder (:func:`evaluation_dir`, the
    report folder). What registration checks the weights it registers
    against: each unit result records the digest it scored
    (:data:`ENCODER_KEY`). None recorded, or several (units of other
    weights), is a DataError naming the folder.
    """
    units = Path(evaluation) / "units" / task  # = units_dir(root, params)
    seen: dict[str, list[str]] = {}
    for path in sorted(Path(units).glob("*.json")):
        enc = read_unit(path).get(ENCODER_KEY)
        if isinstance(enc, dict) and enc.get("pretrain_seed") == pretrain_seed and enc.get("weights_sha256"):
            seen.setdefault(str(enc["weights_sha256"]), []).append(path.name)
    if not seen:
        raise DataError(
            f"{units}: no unit result records the weights it scored for pretraining seed {pretrain_seed}; "
            "run the evaluation (`trls evaluate` or the pipeline) before registering"
        )
    if len(seen) > 1:
        detail = "; ".join(f"{sha[:12]}...: {', '.join(names)}" for sha, names in seen.items())
        raise DataError(
            f"{units}: the units scored different weights for pretraining seed {pretrain_seed} ({detail}); "
            "rerun the evaluation"
        )
    return next(iter(seen))
