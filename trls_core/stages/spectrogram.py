"""DVC stage `spectrogram`: windows.parquet -> {train,val,test}.safetensors + meta.json.

Reads params `<dataset>.spectrogram`. One batched STFT over all windows, a
normaliser fitted on the TRAIN split only (no test statistics leak), every
task's labels stored as int64 tensors (``y_<task>``), and the normaliser
stats saved so the registered model can reapply the exact preprocessing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from trls_core.config import Params, SpectrogramParams
from trls_core.data.parquet import read_windows, signals_array
from trls_core.errors import DataError
from trls_core.io import atomic_dir
from trls_core.paths import parquet_file, spectrogram_dir
from trls_core.spectrogram import apply_normaliser, fit_normaliser, stft_logmag
from trls_core.stages._common import run_stage

SPLITS = ("train", "val", "test")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def compute_spectrograms(
    signals: np.ndarray, splits: np.ndarray, sp: SpectrogramParams
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """STFT all windows in one batched call, normalise with train-split stats."""
    spec = stft_logmag(
        torch.from_numpy(np.array(signals, dtype=np.float32, copy=True)),
        n_fft=sp.n_fft,
        hop=sp.hop,
        win_length=sp.win_length,
        window=sp.window,
        center=sp.center,
        log_eps=sp.log_eps,
        fmax_bin=sp.fmax_bin,
    )
    train = torch.from_numpy(splits == "train")
    if not bool(train.any()):
        raise DataError("no window is in the train split: cannot fit the normaliser")
    stats = fit_normaliser(spec[train], sp.normalisation)
    return apply_normaliser(spec, sp.normalisation, stats), stats


def build_spectrograms(root: Path, dataset: str, params: Params) -> None:
    sp = params.dataset(dataset).spectrogram
    src = parquet_file(root, dataset)
    df, meta = read_windows(src)
    signals = signals_array(src)
    if not np.isfinite(signals).all():
        bad = int(np.flatnonzero(~np.isfinite(signals).reshape(len(signals), -1).all(axis=1))[0])
        raise DataError(f"{src}: window {df['window_id'].iloc[bad]!r} field 'signal' has NaN/inf")
    splits = df["split"].to_numpy().astype(str)
    x, stats = compute_spectrograms(signals, splits, sp)
    dtype = torch.float16 if sp.dtype == "float16" else torch.float32
    tasks: dict[str, Any] = meta.get("tasks") or {"default": {"column": "label", "classes": None}}
    out = spectrogram_dir(root, dataset)
    with atomic_dir(out) as tmp:
        counts: dict[str, dict[str, int]] = {}
        for split in SPLITS:
            idx = np.flatnonzero(splits == split)
            tensors = {"x": x[idx].to(dtype).contiguous(), "y": torch.from_numpy(df["label"].to_numpy()[idx].astype(np.int64))}
            for task, spec in tasks.items():
                tensors[f"y_{task}"] = torch.from_numpy(df[spec["column"]].to_numpy()[idx].astype(np.int64))
            save_file(tensors, str(tmp / f"{split}.safetensors"))
            counts[split] = {"n": int(len(idx))}
            for task, spec in tasks.items():
                labels = tensors[f"y_{task}"].numpy()
                counts[split][task] = {str(k): int(v) for k, v in zip(*np.unique(labels, return_counts=True))}
        save_file({k: v.contiguous() for k, v in stats.items()}, str(tmp / "normaliser.safetensors"))
        info = {
            "dataset": dataset,
            "stft": sp.model_dump(),
            "normalisation": sp.normalisation,
            "shape": list(x.shape[1:]),
            "n_channels": int(signals.shape[1]),
            "n_samples": int(signals.shape[2]),
            "fs": float(df["fs"].iloc[0]),
            "tasks": {t: {"key": f"y_{t}", "classes": s.get("classes")} for t, s in tasks.items()},
            "protocol": meta.get("protocol"),
            "parquet_sha256": _sha256(src),
            "counts": counts,
        }
        (tmp / "meta.json").write_text(json.dumps(info, indent=2) + "\n")
    logging.info("%s: spectrograms %s -> %s", dataset, tuple(x.shape), out)


if __name__ == "__main__":
    sys.exit(run_stage("spectrogram", build_spectrograms))
