"""The evaluation budget: fixed stratified caps on the labelled pool and the validation split.

The caps (``evaluate.label_pool``, ``evaluate.val_windows``) are drawn once
with :data:`BUDGET_SEED`, so every method and seed sees the same windows;
:func:`finetune_budget` is what bounds a fine-tuning unit's training.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["BUDGET_SEED", "apply_budget", "budget_indices", "evaluation_budget", "finetune_budget"]


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
