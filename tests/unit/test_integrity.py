"""Weights and config that disagree: encoder.json's weights_sha256, checked on load and at registration."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.tiny_model import encoder_dir
from trls_core.errors import DataError
from trls_core.io import sha256_file
from trls_core.models.loading import WEIGHTS_SHA_KEY, load_encoder


def _encoder(tmp_path: Path, record: bool = True) -> Path:
    mdir = encoder_dir(tmp_path / "model", [9, 9])
    if record:
        info = json.loads((mdir / "encoder.json").read_text())
        info[WEIGHTS_SHA_KEY] = sha256_file(mdir / "encoder.safetensors")
        (mdir / "encoder.json").write_text(json.dumps(info))
    return mdir


def _other_weights(mdir: Path) -> None:
    w = load_file(str(mdir / "encoder.safetensors"))
    save_file({k: v + 0.5 for k, v in w.items()}, str(mdir / "encoder.safetensors"))


def test_load_checks_the_recorded_digest_and_names_both_files(tmp_path: Path) -> None:
    mdir = _encoder(tmp_path)
    enc, info = load_encoder(mdir)
    assert info[WEIGHTS_SHA_KEY] == sha256_file(mdir / "encoder.safetensors")
    _other_weights(mdir)
    with pytest.raises(DataError) as err:
        load_encoder(mdir)
    msg = str(err.value)
    assert str(mdir / "encoder.safetensors") in msg and str(mdir / "encoder.json") in msg, msg
    assert sha256_file(mdir / "encoder.safetensors") in msg and info[WEIGHTS_SHA_KEY] in msg


def test_an_encoder_saved_before_the_digest_is_accepted_and_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mdir = _encoder(tmp_path, record=False)
    with caplog.at_level(logging.INFO, logger="trls_core.models.loading"):
        enc, info = load_encoder(mdir)
    assert info[WEIGHTS_SHA_KEY] == sha256_file(mdir / "encoder.safetensors")
    assert any("has no weights_sha256" in r.getMessage() for r in caplog.records)
    assert WEIGHTS_SHA_KEY not in json.loads((mdir / "encoder.json").read_text())  # loading writes nothing
    x = torch.randn(2, 1, 9, 9)
    with torch.no_grad():
        assert enc(x).shape == (2, 8)


@pytest.mark.parametrize("bad", ["{not json", "[1, 2]", '{"seed": 0}'])
def test_a_broken_encoder_json_is_a_data_error_naming_it(tmp_path: Path, bad: str) -> None:
    mdir = _encoder(tmp_path)
    (mdir / "encoder.json").write_text(bad)
    with pytest.raises(DataError, match=str(mdir / "encoder.json")):
        load_encoder(mdir)


def test_registration_refuses_weights_the_evaluation_did_not_score(tmp_path: Path) -> None:
    """Checked before anything reaches MLflow: no tracker, store or run is needed to refuse."""
    from trls_core.tracking import register_encoder

    mdir = _encoder(tmp_path)
    sha = sha256_file(mdir / "encoder.safetensors")
    sdir = tmp_path / "spec"
    with pytest.raises(DataError, match=r"is not the encoder the evaluation scored \(sha256 0{64}\)") as err:
        register_encoder(None, mdir, sdir, "trls-x-encoder", evaluated_sha256="0" * 64)  # type: ignore[arg-type]
    assert str(mdir / "encoder.safetensors") in str(err.value) and sha in str(err.value)
    _other_weights(mdir)  # weights encoder.json was not written for
    with pytest.raises(DataError, match="was written for") as err:
        register_encoder(None, mdir, sdir, "trls-x-encoder", evaluated_sha256=sha)  # type: ignore[arg-type]
    assert str(mdir / "encoder.json") in str(err.value)


def _unit(path: Path, method: str, encoder: dict | None) -> None:
    doc = {"schema": 2, "unit": path.stem, "method": method, "fingerprint": "f" * 16, "result": {"macro_f1": 0.5}}
    if encoder is not None:
        doc["encoder"] = encoder
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def test_the_digest_the_units_scored(tmp_path: Path) -> None:
    from trls_core.stages.evaluate import evaluated_weights_sha256

    units = tmp_path / "units" / "binary"
    _unit(units / "linear_probe_seed0.json", "linear_probe", {"pretrain_seed": 0, "weights_sha256": "a" * 64})
    _unit(units / "finetune_1.0_seed0.json", "finetune", {"pretrain_seed": 0, "weights_sha256": "a" * 64})
    _unit(units / "linear_probe_seed1.json", "linear_probe", {"pretrain_seed": 1, "weights_sha256": "b" * 64})
    _unit(units / "controls_spectrogram_seed0.json", "spectrogram_linear", None)
    assert evaluated_weights_sha256(tmp_path, "binary", 0) == "a" * 64
    assert evaluated_weights_sha256(tmp_path, "binary", 1) == "b" * 64
    with pytest.raises(DataError, match=f"{units}: no unit result records the weights .* seed 2"):
        evaluated_weights_sha256(tmp_path, "binary", 2)
    _unit(units / "finetune_0.5_seed0.json", "finetune", {"pretrain_seed": 0, "weights_sha256": "c" * 64})
    with pytest.raises(DataError, match=r"scored different weights .*finetune_0.5_seed0.json"):
        evaluated_weights_sha256(tmp_path, "binary", 0)
