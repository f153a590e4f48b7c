"""The strict base model and the settings every dataset shares (the STFT)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Strict", "SpectrogramParams"]


class Strict(BaseModel):
    """Unknown keys fail (a typo names its dotted key instead of falling back); values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SpectrogramParams(Strict):
    """The STFT of one dataset's windows (``trls_core.spectrogram``); section ``<dataset>.spectrogram``."""

    n_fft: int = Field(gt=1)
    hop: int = Field(gt=0)
    win_length: int | None  # None: n_fft
    window: Literal["hann", "hamming", "blackman", "rect"]
    center: bool
    log_eps: float = Field(gt=0)
    fmax_bin: int | None = Field(gt=0)  # None: every bin up to Nyquist
    normalisation: Literal["train_per_freq", "train_global", "per_window", "none"]
    dtype: Literal["float32", "float16"]
