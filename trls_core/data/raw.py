"""Raw signal windows per split, for the baselines that skip the spectrogram.

TS-TCC, TS2Vec and BYOL on the raw series learn from the windows
themselves. They must see exactly the windows, order and labels the
spectrogram methods see, or a comparison would mix protocols; so the
windows are read from the same ``windows.parquet`` the spectrogram stage
read (its digest is checked against the spectrograms' ``meta.json``),
split by the same ``split`` column in the same file order, and the labels
are taken from the spectrogram tensors of that split.

Normalisation mirrors the spectrogram stage's ``train_per_freq`` choice:
per channel, with mean and std of the TRAIN split only, so amplitude (a
seizure cue) is kept and no test statistics leak into training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from trls_core.data.tensors import SplitTensors, load_labels, load_meta
from trls_core.errors import DataError
from trls_core.io import sha256_file
from trls_core.paths import parquet_file, spectrogram_dir

__all__ = ["load_raw_splits", "raw_stats"]

SPLITS = ("train", "val", "test")


def raw_stats(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std over the train windows, (1, C, 1) each; a flat channel gets std 1."""
    mean = train.mean(axis=(0, 2), keepdims=True, dtype=np.float64)
    std = train.std(axis=(0, 2), keepdims=True, dtype=np.float64)
    std[std <= 1e-12] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def load_raw_splits(
    root: Path, dataset: str, task: str | None = None, splits: tuple[str, ...] = SPLITS
) -> dict[str, SplitTensors]:
    """``{split: SplitTensors(x=(N, C, L) float32 standardised, y=labels of task)}``.

    Fails naming the file when the Parquet file is missing, is not the one
    the spectrograms were built from, or disagrees on a split's size.
    """
    from trls_core.data.parquet import signals_array

    root = Path(root)
    sdir = spectrogram_dir(root, dataset)
    meta = load_meta(sdir)
    src = parquet_file(root, dataset)
    if not src.is_file():
        raise DataError(f"{src} not found: raw-input methods read the windows from it (run `dvc repro`)")
    want = meta.get("parquet_sha256")
    if want and sha256_file(src) != want:
        raise DataError(
            f"{src}: digest differs from the one {sdir / 'meta.json'} was built from; "
            f"rerun `dvc repro` so windows and spectrograms match"
        )
    raw = {s: signals_array(src, split=s) for s in set(splits) | {"train"}}
    mean, std = raw_stats(raw["train"])
    out: dict[str, SplitTensors] = {}
    for s in splits:
        x = (raw[s] - mean) / std
        y = load_labels(sdir, s, task)
        if len(x) != len(y):
            raise DataError(
                f"{src}: split {s!r} has {len(x)} windows but {sdir / (s + '.safetensors')} "
                f"has {len(y)}: rebuild with `dvc repro`"
            )
        out[s] = SplitTensors(x=torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), y=y)
    return out
