"""Stage outputs checked against their source Parquet (issue 19, item 6).

The spectrogram stage must keep each window's labels and record with its
spectrogram, in file order, and normalise with statistics of the TRAIN
split only. Both are checked here from the Parquet itself (recomputing the
STFT and the normaliser), so a normaliser fitted on train + val + test or
labels reordered within a split fail, which tests comparing one stage
output with another cannot see.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from trls_core.config import load_params
from trls_core.data.parquet import read_schema_names, read_windows, signals_array
from trls_core.paths import parquet_file, spectrogram_dir
from trls_core.spectrogram import apply_normaliser, fit_normaliser, stft_logmag

SPLITS = ("train", "val", "test")


def _source(root: Path):
    src = parquet_file(root, "epilepsy")
    df, meta = read_windows(src, columns=[c for c in read_schema_names(src) if c != "signal"])
    return df, meta, signals_array(src)


def _logmag(signals: np.ndarray, sp) -> torch.Tensor:
    return stft_logmag(
        np.ascontiguousarray(signals, dtype=np.float32),
        n_fft=sp.n_fft,
        hop=sp.hop,
        win_length=sp.win_length,
        window=sp.window,
        center=sp.center,
        log_eps=sp.log_eps,
        fmax_bin=sp.fmax_bin,
    )


def test_labels_and_records_match_the_parquet_row_by_row(tiny_project: Path) -> None:
    df, meta, _ = _source(tiny_project)
    sdir = spectrogram_dir(tiny_project, "epilepsy")
    records = json.loads((sdir / "records.json").read_text())
    tasks = meta.get("tasks") or {}
    assert tasks, "the tiny epilepsy Parquet declares its tasks"
    splits = df["split"].to_numpy().astype(str)
    for split in SPLITS:
        rows = np.flatnonzero(splits == split)
        assert rows.size > 0, split
        out = load_file(str(sdir / f"{split}.safetensors"))
        np.testing.assert_array_equal(out["y"].numpy(), df["label"].to_numpy()[rows], err_msg=split)
        for task, spec in tasks.items():
            np.testing.assert_array_equal(
                out[f"y_{task}"].numpy(), df[spec["column"]].to_numpy()[rows], err_msg=f"{split} {task}"
            )
        rec_of_window = np.asarray(records[split])[out["record_idx"].numpy()]
        np.testing.assert_array_equal(rec_of_window, df["record_id"].to_numpy().astype(str)[rows], err_msg=split)
        # labels are not constant within a split: reordering them would change the arrays above
        assert np.unique(out["y"].numpy()).size > 1, split


def test_spectrograms_are_the_parquet_windows_normalised_with_train_statistics(
    tiny_project: Path, tiny_params: Path
) -> None:
    sp = load_params(tiny_params).dataset("epilepsy").spectrogram
    assert sp.normalisation.startswith("train_"), "the check needs a fitted normaliser"
    df, _, signals = _source(tiny_project)
    splits = df["split"].to_numpy().astype(str)
    sdir = spectrogram_dir(tiny_project, "epilepsy")
    stored = load_file(str(sdir / "normaliser.safetensors"))
    spec = _logmag(signals, sp)
    train_only = fit_normaliser(spec[torch.from_numpy(splits == "train")], sp.normalisation)
    everything = fit_normaliser(spec, sp.normalisation)
    for key in ("mean", "std"):
        torch.testing.assert_close(stored[key], train_only[key], rtol=1e-4, atol=1e-5)
        # the leak the check exists for is visible on this data
        assert not torch.allclose(stored[key], everything[key], rtol=1e-3, atol=1e-3), key
    for split in SPLITS:
        rows = torch.from_numpy(np.flatnonzero(splits == split))
        expected = apply_normaliser(spec[rows], sp.normalisation, train_only)
        x = load_file(str(sdir / f"{split}.safetensors"))["x"].float()
        tol = 2e-2 if sp.dtype == "float16" else 1e-4
        torch.testing.assert_close(x, expected, rtol=tol, atol=tol, msg=split)
