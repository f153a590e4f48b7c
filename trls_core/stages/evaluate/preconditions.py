"""What the evaluation protocol needs of the data before any unit runs, checked with a message naming the fix.

Without these checks an empty validation split fails inside scikit-learn
("Found array with 0 sample(s)") and a train split of one class inside the
probe's solver ("needs samples of at least 2 classes"), after the encoders
were loaded and maybe after other units ran. The label-fraction subsets keep
every class of the train split (``label_fraction_indices``'s
``min_per_class``), so a train split of two classes or more is what keeps a
fine-tuning subset from being one-class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from trls_core.errors import DataError

__all__ = ["check_splits"]

#: The settings that size each split, for the message.
_SIZED_BY = {
    "train": "{ds}.parquet.val_frac + {ds}.parquet.test_frac (what they leave)",
    "val": "{ds}.parquet.val_frac (or evaluate.val_windows)",
    "test": "{ds}.parquet.test_frac",
}


def check_splits(data: dict[str, Any], class_names: list[str], sdir: Path, dataset: str, task: str) -> None:
    """Fail when a split is empty or the train split holds fewer than two classes of ``task``."""
    for split in ("train", "val", "test"):
        if len(data[f"y_{split}"]) == 0:
            raise DataError(
                f"{sdir / (split + '.safetensors')}: split {split!r} has no windows; "
                f"it is sized by {_SIZED_BY[split].format(ds=dataset)}: add records or change it, then `dvc repro`"
            )
    present = np.unique(np.asarray(data["y_train"]))
    if present.size < 2:
        names = [class_names[int(k)] if 0 <= int(k) < len(class_names) else str(int(k)) for k in present]
        raise DataError(
            f"{sdir / 'train.safetensors'}: evaluate.task {task!r}: the train split holds only class {names} "
            f"(of {class_names}); the probe and fine-tuning need at least two classes"
        )
