"""Model tier: every baseline through the real pretrain + evaluate stage code on a tiny project."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from trls_core.config import load_params
from trls_core.data.parquet import read_windows, signals_array
from trls_core.data.raw import load_raw_splits
from trls_core.data.tensors import load_split
from trls_core.errors import DataError
from trls_core.methods import method_params
from trls_core.models.loading import load_encoder
from trls_core.paths import parquet_file, report_dir, spectrogram_dir
from trls_core.stages.evaluate import evaluate_all
from trls_core.stages.pretrain import pretrain_seed

pytestmark = pytest.mark.slow


def _method_params(tiny_params: Path, method: str, tmp_path: Path):
    raw = yaml.safe_load(tiny_params.read_text())
    raw["evaluate"].update({"seeds": [0], "fractions": [1.0]})
    path = tmp_path / f"params_{method}.yaml"
    path.write_text(yaml.safe_dump(method_params(raw, method), sort_keys=False))
    return load_params(path)


def meta_column(pq: Path) -> str:
    """The Parquet column of the ``binary`` task."""
    _, meta = read_windows(pq, columns=["split"])
    return meta["tasks"]["binary"]["column"]


def test_raw_splits_match_the_spectrogram_splits(tiny_project: Path) -> None:
    raw = load_raw_splits(tiny_project, "epilepsy", "binary")
    sdir = spectrogram_dir(tiny_project, "epilepsy")
    # the labels and signals each loader returns, checked against the source Parquet (not each other)
    pq = parquet_file(tiny_project, "epilepsy")
    df, meta = read_windows(pq, columns=["split", meta_column(pq)])
    splits = df["split"].to_numpy().astype(str)
    signals = signals_array(pq)
    for split in ("train", "val", "test"):
        spec = load_split(sdir, split, "binary")
        rows = np.flatnonzero(splits == split)
        expected = torch.from_numpy(df[meta_column(pq)].to_numpy()[rows].astype(np.int64))
        assert raw[split].x.dim() == 3 and len(raw[split].x) == len(spec.x) == rows.size
        assert torch.equal(raw[split].y, expected) and torch.equal(spec.y, expected), split
        assert len(np.unique(expected)) > 1, split  # a reordering would show
        # raw windows are the Parquet's signals in file order, standardised (a positive affine map)
        src = torch.from_numpy(signals[rows].reshape(rows.size, -1))
        got = raw[split].x.reshape(rows.size, -1).double()
        corr = torch.corrcoef(torch.stack([src.double().flatten(), got.flatten()]))[0, 1]
        assert corr > 0.999, (split, float(corr))
    # standardised with train statistics only
    tr = raw["train"].x
    assert abs(float(tr.mean())) < 1e-4 and abs(float(tr.std()) - 1.0) < 1e-2


def test_raw_loader_refuses_a_parquet_the_spectrograms_were_not_built_from(tiny_project: Path) -> None:
    pq = parquet_file(tiny_project, "epilepsy")
    pq.write_bytes(pq.read_bytes() + b"\0")
    with pytest.raises(DataError, match="windows.parquet: digest differs"):
        load_raw_splits(tiny_project, "epilepsy")


@pytest.mark.parametrize("method", ["simclr", "ts_tcc", "ts2vec", "byol_raw", "supervised_tfrnn"])
def test_baseline_pretrains_and_evaluates(method: str, tiny_project: Path, tiny_params: Path, tmp_path: Path) -> None:
    params = _method_params(tiny_params, method, tmp_path)
    out = pretrain_seed(tiny_project, params, 0, progress=False)
    info = json.loads((out / "encoder.json").read_text())
    assert info["method"] == params.pretrain.method
    raw_input = method in ("ts_tcc", "ts2vec", "byol_raw")
    assert info["input"] == ("raw" if raw_input else "spectrogram")
    if method == "supervised_tfrnn":
        assert info["history"] == [] and not (out / "checkpoint.safetensors").exists()
    else:
        assert len(info["history"]) == params.pretrain.epochs
        assert all(np.isfinite(h["loss"]) for h in info["history"])
    enc, _ = load_encoder(out)
    shape = (2, 1, 256) if raw_input else (2, *info["config"]["input_shape"])
    assert enc(torch.randn(*shape)).shape[0] == 2
    # a second call with the same parameters reuses the model
    assert pretrain_seed(tiny_project, params, 0, progress=False) == out

    rdir = evaluate_all(tiny_project, params, progress=False, force=True)
    metrics = json.loads((rdir / "metrics.json").read_text())
    # floors a broken method fails: the tiny binary task is separable (each of the five methods
    # scored 1.0 here when measured); a majority-class predictor has macro-F1 <= 0.5
    assert metrics["linear_probe"]["macro_f1"]["mean"] >= 0.9, metrics["linear_probe"]
    assert metrics["finetune"]["1.0"]["macro_f1"]["mean"] >= 0.9, metrics["finetune"]
    assert set(metrics["finetune"]) == {"1.0"}
    assert rdir == report_dir(tiny_project, "epilepsy")
