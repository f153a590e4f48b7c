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

- :mod:`~trls_core.stages.evaluate.budget`: the fixed caps on the labelled pool and validation split;
- :mod:`~trls_core.stages.evaluate.context`: data, encoders and unit fingerprints (:class:`EvalContext`);
- :mod:`~trls_core.stages.evaluate.units`: unit result files, :func:`evaluate_unit`;
- :mod:`~trls_core.stages.evaluate.reports`: :func:`write_reports`;
- :func:`evaluate_all` (here): every unit in this process, then the reports.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trls_core.config import Params
from trls_core.stages.evaluate.budget import (
    BUDGET_SEED,
    apply_budget,
    budget_indices,
    evaluation_budget,
    finetune_budget,
)
from trls_core.stages.evaluate.context import (
    UNIT_SCHEMA,
    EvalContext,
    check_transfer,
    load_context,
    pretrain_seed_for,
)
from trls_core.stages.evaluate.reports import selection_rule, write_reports
from trls_core.stages.evaluate.units import (
    evaluate_unit,
    evaluated_weights_sha256,
    evaluation_dir,
    read_unit,
    unit_file,
    units_dir,
    units_for,
)

logger = logging.getLogger(__name__)

__all__ = [
    "BUDGET_SEED",
    "UNIT_SCHEMA",
    "EvalContext",
    "apply_budget",
    "budget_indices",
    "check_transfer",
    "evaluate_all",
    "evaluate_unit",
    "evaluated_weights_sha256",
    "evaluation_budget",
    "evaluation_dir",
    "finetune_budget",
    "load_context",
    "pretrain_seed_for",
    "read_unit",
    "selection_rule",
    "unit_file",
    "units_dir",
    "units_for",
    "write_reports",
]


def evaluate_all(
    root: Path,
    params: Params,
    progress: bool = True,
    on_result: Callable[[str, dict[str, Any]], None] | None = None,
    force: bool = False,
) -> Path:
    """Run every unit of the protocol in this process (reusing current stored results), then the reports.

    ``on_result(unit name, metrics)`` is called for every unit that ran now
    (not for reused ones). ``force`` reruns every unit. Holds the workspace
    lock (``trls evaluate``; :mod:`trls_core.locks`): another process writing
    ``models/`` or ``reports/`` of ``root`` makes it fail at once, naming it.
    """
    from trls_core.locks import workspace_lock

    with workspace_lock(root, "trls evaluate"):
        return _evaluate_all(root, params, progress, on_result, force)


def _evaluate_all(
    root: Path,
    params: Params,
    progress: bool,
    on_result: Callable[[str, dict[str, Any]], None] | None,
    force: bool,
) -> Path:
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
