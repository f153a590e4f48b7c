"""Encoders and heads.

``build_encoder`` is the one place that maps a params.yaml name to a class,
so the stages and flows never import encoder classes by hand.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from trls_core.models.cnn import CNNEncoder, TimeConvEncoder
from trls_core.models.heads import MLPHead, PredictionHead, ProjectionHead
from trls_core.models.tfrnn import TFRNN
from trls_core.models.ts2vec import TS2VecEncoder
from trls_core.models.tstcc import TSTCCEncoder

__all__ = [
    "TFRNN",
    "CNNEncoder",
    "TimeConvEncoder",
    "TSTCCEncoder",
    "TS2VecEncoder",
    "MLPHead",
    "ProjectionHead",
    "PredictionHead",
    "ENCODERS",
    "build_encoder",
    "encoder_input",
]

ENCODERS: dict[str, type[nn.Module]] = {
    "tfrnn": TFRNN,
    "cnn": CNNEncoder,
    "timeconv": TimeConvEncoder,
    "tstcc": TSTCCEncoder,
    "ts2vec": TS2VecEncoder,
}

# What each encoder reads: spectrograms (N, C, F, T) or raw windows (N, C, L).
INPUTS: dict[str, str] = {
    "tfrnn": "spectrogram",
    "cnn": "spectrogram",
    "timeconv": "raw",
    "tstcc": "raw",
    "ts2vec": "raw",
}


def encoder_input(name: str) -> str:
    """``"spectrogram"`` or ``"raw"``: which tensors pretraining and evaluation feed the encoder."""
    try:
        return INPUTS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown encoder {name!r}; expected one of {sorted(INPUTS)}") from None


def build_encoder(name: str, **kwargs: Any) -> nn.Module:
    """Build an encoder by name (a key of ``ENCODERS``); kwargs go to its constructor.

    Every encoder exposes ``out_dim`` (= its rep_dim) for sizing the heads.
    """
    cls = ENCODERS.get(name.lower())
    if cls is None:
        raise ValueError(f"unknown encoder {name!r}; expected one of {sorted(ENCODERS)}")
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ValueError(f"encoder {name!r}: bad arguments {sorted(kwargs)}: {e}") from e
