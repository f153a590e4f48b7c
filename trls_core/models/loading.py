"""Encoders from settings and from disk: build one from ``model`` params, describe it, load a saved one.

A saved encoder is ``encoder.safetensors`` (weights) + ``encoder.json``
(whose ``config`` is :func:`encoder_config`): enough to rebuild it without
unpickling anything. Pretraining writes the pair; evaluation and the
registered model read it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors.torch import load_file
from torch import nn

from trls_core.errors import DataError
from trls_core.models import build_encoder

if TYPE_CHECKING:
    from trls_core.config import Params

__all__ = ["build_encoder_from_params", "encoder_config", "load_encoder"]


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


def load_encoder(directory: Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a pretrained encoder from ``encoder.json`` + ``encoder.safetensors`` (no pickle)."""
    cfg_path, w_path = directory / "encoder.json", directory / "encoder.safetensors"
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise DataError(f"{p} not found: run `trls pretrain` first")
    info = json.loads(cfg_path.read_text())
    cfg = info["config"]
    enc = build_encoder(cfg["encoder"], in_channels=cfg["in_channels"], **cfg["kwargs"])
    enc.load_state_dict(load_file(str(w_path)))
    enc.eval()
    return enc, info
