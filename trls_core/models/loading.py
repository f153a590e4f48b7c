"""Encoders from settings and from disk: build one from ``model`` params, describe it, load a saved one.

A saved encoder is ``encoder.safetensors`` (weights) + ``encoder.json``
(whose ``config`` is :func:`encoder_config`): enough to rebuild it without
unpickling anything. Pretraining writes the pair; evaluation and the
registered model read it.

The two files are written one after the other, so a crash or a concurrent
write between them could pair a config with other weights. ``encoder.json``
is written second (atomically) and records the weights' sha256
(``weights_sha256``); :func:`load_encoder` and :func:`verified_weights_sha256`
refuse a pair that disagrees. An encoder saved before the field existed is
accepted once as it is (its digest computed, logged); pretraining then
records the field (``trls_core.stages.pretrain``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from trls_core.errors import DataError
from trls_core.io import sha256_file
from trls_core.models import build_encoder

if TYPE_CHECKING:
    from trls_core.config import Params

logger = logging.getLogger(__name__)

__all__ = [
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "WEIGHTS_SHA_KEY",
    "build_encoder_from_params",
    "encoder_config",
    "load_encoder",
    "read_encoder_info",
    "verified_weights_sha256",
]

WEIGHTS_FILE = "encoder.safetensors"
CONFIG_FILE = "encoder.json"
WEIGHTS_SHA_KEY = "weights_sha256"


def build_encoder_from_params(params: Params, in_channels: int) -> nn.Module:
    """A freshly initialised encoder as ``params.model`` describes it."""
    return build_encoder(params.model.encoder, in_channels=in_channels, **params.model.encoder_kwargs())


def encoder_config(params: Params, in_channels: int, data_meta: dict[str, Any]) -> dict[str, Any]:
    """Everything needed to rebuild the encoder and its preprocessing from raw windows."""
    kwargs = params.model.encoder_kwargs()
    return {
        "encoder": params.model.encoder,
        "in_channels": in_channels,
        "kwargs": kwargs,
        "input_shape": data_meta.get("shape"),
        "dataset": data_meta.get("dataset"),
        "stft": data_meta.get("stft"),
        "fs": data_meta.get("fs"),
        "n_samples": data_meta.get("n_samples"),
    }


def read_encoder_info(directory: Path) -> dict[str, Any]:
    """``encoder.json`` of ``directory`` as a dict; a missing, unreadable or foreign file is a DataError naming it."""
    cfg_path = Path(directory) / CONFIG_FILE
    if not cfg_path.is_file():
        raise DataError(f"{cfg_path} not found: run `trls pretrain` first")
    try:
        info = json.loads(cfg_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{cfg_path}: unreadable encoder config ({exc}); rerun `trls pretrain`") from None
    if not isinstance(info, dict) or not isinstance(info.get("config"), dict):
        raise DataError(f"{cfg_path}: no 'config' object; not an encoder config written by `trls pretrain`")
    return info


def verified_weights_sha256(directory: Path, info: Mapping[str, Any]) -> str:
    """sha256 of ``directory/encoder.safetensors``, checked against ``info['weights_sha256']``.

    A mismatch is a DataError naming both files (the weights are not the
    ones the config was written for). A config without the field (written
    before it was recorded) is accepted: the digest is computed and returned,
    with a log line.
    """
    directory = Path(directory)
    w_path, cfg_path = directory / WEIGHTS_FILE, directory / CONFIG_FILE
    if not w_path.is_file():
        raise DataError(f"{w_path} not found: run `trls pretrain` first")
    sha = sha256_file(w_path)
    recorded = info.get(WEIGHTS_SHA_KEY)
    if recorded is None:
        logger.info(
            "%s has no %s (written before it was recorded): accepting %s as is (sha256 %s)",
            cfg_path,
            WEIGHTS_SHA_KEY,
            w_path,
            sha,
        )
    elif recorded != sha:
        raise DataError(
            f"{w_path} (sha256 {sha}) is not the file {cfg_path} was written for ({WEIGHTS_SHA_KEY} {recorded}): "
            "the pair is from an interrupted or concurrent write; rerun `trls pretrain` (it retrains this seed)"
        )
    return sha


def load_encoder(directory: Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a pretrained encoder from ``encoder.json`` + ``encoder.safetensors`` (no pickle).

    The weights are checked against the digest ``encoder.json`` records
    (:func:`verified_weights_sha256`); the returned info carries
    ``weights_sha256`` (computed for an encoder saved before it was recorded).
    """
    directory = Path(directory)
    info = read_encoder_info(directory)
    sha = verified_weights_sha256(directory, info)
    w_path = directory / WEIGHTS_FILE
    cfg = info["config"]
    try:
        enc = build_encoder(cfg["encoder"], in_channels=cfg["in_channels"], **cfg["kwargs"])
        state = load_file(str(w_path))
        enc.load_state_dict(state)
    except KeyError as exc:
        raise DataError(f"{directory / CONFIG_FILE}: config has no {exc}; rerun `trls pretrain`") from None
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise DataError(f"{w_path}: cannot load the encoder weights ({exc}); rerun `trls pretrain`") from None
    enc.eval()
    return enc, {**info, WEIGHTS_SHA_KEY: sha}
