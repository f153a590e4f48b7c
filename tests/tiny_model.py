"""A tiny registered-model project for the MLflow tests: windows Parquet, spectrogram folder, encoder folder.

The layout is the project's (``data/parquet/<ds>/windows.parquet``,
``data/spectrograms/<ds>/``), so code that derives one from the other is
exercised; sizes are seconds-small (64-sample windows, a 4-wide TFRNN).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

N_SAMPLES = 64
STFT = {
    "n_fft": 16,
    "hop": 8,
    "win_length": None,
    "window": "hann",
    "center": True,
    "log_eps": 1e-3,
    "fmax_bin": None,
    "normalisation": "train_per_freq",
    "dtype": "float32",
}
ENC_KWARGS = {"dim": 4, "depth": 1, "rep_dim": 8, "rnn_hidden": 2}


def windows_parquet(path: Path, raw: np.ndarray, splits: list[str]) -> Path:
    from trls_core.data.parquet import windows_frame, write_windows

    m = len(raw)
    table = windows_frame(
        raw,
        window_id=[f"w{i}" for i in range(m)],
        record_id=[f"r{i // 2}" for i in range(m)],
        subject_id=[f"r{i // 2}" for i in range(m)],
        split=splits,
        label=[i % 2 for i in range(m)],
        label_name=["a" if i % 2 == 0 else "b" for i in range(m)],
        fs=173.61,
    )
    counts = {s: splits.count(s) for s in sorted(set(splits))}
    write_windows(table, path, {"dataset": "epilepsy", "n_per_split": counts, "protocol": "random"})
    return path


def spectrogram_dir(path: Path, parquet_sha: str, raw: torch.Tensor) -> Path:
    from trls_core.spectrogram import fit_normaliser, stft_logmag

    spec = stft_logmag(raw, n_fft=STFT["n_fft"], hop=STFT["hop"], log_eps=STFT["log_eps"])
    path.mkdir(parents=True)
    save_file(fit_normaliser(spec, "train_per_freq"), str(path / "normaliser.safetensors"))
    meta = {
        "dataset": "epilepsy",
        "stft": STFT,
        "normalisation": "train_per_freq",
        "shape": list(spec.shape[1:]),
        "n_channels": 1,
        "n_samples": N_SAMPLES,
        "fs": 173.61,
        "parquet_sha256": parquet_sha,
        "tasks": {"binary": {"key": "y_binary", "classes": ["a", "b"]}},
    }
    (path / "meta.json").write_text(json.dumps(meta))
    return path


def encoder_dir(path: Path, input_shape: list[int]) -> Path:
    """What the pretrain stage writes: encoder.safetensors + encoder.json."""
    from trls_core.models import build_encoder

    torch.manual_seed(0)
    enc = build_encoder("tfrnn", in_channels=1, **ENC_KWARGS)
    path.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in enc.state_dict().items()}, str(path / "encoder.safetensors"))
    info = {
        "fingerprint": "f" * 16,
        "seed": 0,
        "profile": "tiny",
        "device": "cpu",
        "n_train_windows": 20,
        "resumed_from_epoch": None,
        "config": {
            "encoder": "tfrnn",
            "in_channels": 1,
            "kwargs": ENC_KWARGS,
            "input_shape": input_shape,
            "dataset": "epilepsy",
            "stft": STFT,
            "fs": 173.61,
            "n_samples": N_SAMPLES,
        },
        "history": [],
    }
    (path / "encoder.json").write_text(json.dumps(info))
    return path


def project(base: Path, parquet_sha: str, raw: torch.Tensor) -> tuple[Path, Path]:
    """A project layout: data/spectrograms/epilepsy (meta + normaliser) and data/parquet/epilepsy/windows.parquet."""
    sdir = spectrogram_dir(base / "data" / "spectrograms" / "epilepsy", parquet_sha, raw)
    windows_parquet(base / "data" / "parquet" / "epilepsy" / "windows.parquet", (raw * 100).numpy(), ["train"] * 20)
    return sdir, base / "data" / "parquet" / "epilepsy" / "windows.parquet"
