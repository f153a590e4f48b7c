"""Score the evaluation protocol on validation: one part picks C and the epoch, the rest is scored.

The protocol's units (``stages.evaluate.evaluate_unit``) choose the probe's
C and the fine-tuning epoch on validation and report on test. A study must
choose between variants without reading test, and a score on the very
windows that chose C would favour whatever overfits them. So a study's
context splits validation in two, and the units run unchanged on it:

- *selection* (the units' validation): the protocol's own cut
  (``evaluate.val_windows``, drawn by ``stages.evaluate.budget_indices``)
  when it is set and smaller than validation, else a stratified
  ``select_fraction`` of it (of validation *records* at record level);
- *held out* (the units' "test"): every other validation window.

The test split's tensors are dropped before any unit runs. The units'
fingerprints add this split, so a study's results are never mistaken for a
test-split evaluation and change when the split does.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trls_core.errors import DataError
from trls_core.stages.evaluate import BUDGET_SEED, EvalContext, budget_indices, load_context

__all__ = ["HOLDOUT_SCHEMA", "HeldOutContext", "held_out_context", "selection_split"]

HOLDOUT_SCHEMA = 1


@dataclass
class HeldOutContext(EvalContext):
    """An :class:`EvalContext` whose "test" split is held-out validation (see the module doc)."""

    holdout: dict[str, Any] = field(default_factory=dict)

    def fingerprint(self, unit: Any) -> str:
        blob = {"protocol": super().fingerprint(unit), "holdout": self.holdout}
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


def selection_split(
    y_val: np.ndarray, records_val: np.ndarray | None, val_windows: int | None, select_fraction: float
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(selection window indices, held-out window indices, what was done) for validation labels ``y_val``.

    ``records_val`` (record of each window) splits by record: a record's
    windows stay on one side.
    """
    from trls_core.data.windows import label_fraction_indices
    from trls_core.pooling import Groups

    y = np.asarray(y_val).astype(np.int64)
    n = len(y)
    if records_val is not None:
        g = Groups.of(records_val, "validation records")
        rows = label_fraction_indices(g.labels(y, "validation labels"), select_fraction, BUDGET_SEED)
        sel = g.windows_of(rows)
        how: dict[str, Any] = {"select": "records", "select_fraction": select_fraction}
    elif val_windows is not None and val_windows < n:
        sel = budget_indices(y, val_windows)
        how = {"select": "val_windows", "val_windows": int(val_windows)}
    else:
        sel = label_fraction_indices(y, select_fraction, BUDGET_SEED)
        how = {"select": "windows", "select_fraction": select_fraction}
    rest = np.setdiff1d(np.arange(n), sel)
    if sel.size == 0 or rest.size == 0:
        raise DataError(
            f"validation has {n} windows: too few to keep {sel.size} for selection and score the other "
            f"{rest.size} (score.select_fraction {select_fraction})"
        )
    return np.asarray(sel, dtype=np.int64), rest.astype(np.int64), {"schema": HOLDOUT_SCHEMA, **how}


def held_out_context(root: Path, params: Any, select_fraction: float) -> HeldOutContext:
    """The evaluation context of ``params`` with validation split into selection and held-out parts."""
    from trls_core.data.tensors import load_records
    from trls_core.paths import spectrogram_dir

    ev = params.evaluate
    whole = params.model_copy(update={"evaluate": ev.model_copy(update={"val_windows": None})})
    ctx = load_context(root, whole)
    y_val = np.asarray(ctx.data["y_val"])
    rec_val = ctx.records["val"] if ctx.records is not None else None
    sel, rest, how = selection_split(y_val, rec_val, ev.val_windows, select_fraction)
    s, r = torch.as_tensor(sel), torch.as_tensor(rest)
    data = {k: v for k, v in ctx.data.items() if not k.endswith("_test")}
    data.update(
        x_val=ctx.data["x_val"][s], y_val=ctx.data["y_val"][s], x_test=ctx.data["x_val"][r], y_test=ctx.data["y_val"][r]
    )
    records = None
    if ctx.records is not None:
        records = {"train": ctx.records["train"], "val": rec_val[sel], "test": rec_val[rest]}
    test_records = None
    if ctx.test_records is not None:  # window-level units vote per record on the held-out windows
        test_records = load_records(spectrogram_dir(root, ev.dataset), "val")[0].numpy()[rest]
    base = {f.name: getattr(ctx, f.name) for f in fields(EvalContext)}
    # the variant's own params (budget included) enter the units' fingerprints; the data was cut above
    base.update(params=params, data=data, records=records, test_records=test_records)
    return HeldOutContext(**base, holdout=how)
