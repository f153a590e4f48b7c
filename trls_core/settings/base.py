"""The strict base model and the settings every dataset shares (the STFT)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["SplitFractions", "Strict", "SpectrogramParams"]


class Strict(BaseModel):
    """Unknown keys fail (a typo names its dotted key instead of falling back); values are frozen.

    ``inf`` and ``nan`` are refused for every float: ``lr: .inf`` passes ``gt=0`` and would only
    show up as a diverged loss (or a resampler's error) much later.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SplitFractions(Strict):
    """A dataset's ``parquet`` settings with ``val_frac`` and ``test_frac``: together they must leave a train split.

    Each is checked in (0, 1) by its own field; their sum is checked here, in the settings, so
    ``0.5 + 0.5`` fails when params.yaml is read, naming both keys, and not later in the splitter.
    """

    @model_validator(mode="after")
    def _leaves_a_train_split(self) -> SplitFractions:
        val, test = getattr(self, "val_frac", 0.0), getattr(self, "test_frac", 0.0)
        if val + test >= 1:
            raise ValueError(
                f"val_frac + test_frac must be < 1, got {val} + {test} = {val + test:g} (nothing left to train on)"
            )
        return self


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
