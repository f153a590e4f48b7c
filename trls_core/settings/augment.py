"""Augmentation settings: the spectrogram views' ops (a discriminated union) and the raw views.

A view is a list of ops; each op is one model below, chosen by its ``name``
key, with exactly its own keys (all required: the values live in
params.yaml). A bad op fails with the view, its index, its name and the key,
e.g. ``augment.view_b.1.time_mask.max_width``. ``trls_core.augment`` builds
the torch modules from these models.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StrictInt, TypeAdapter

from trls_core.settings.base import Strict

__all__ = [
    "AUGMENT_OPS",
    "AugmentOp",
    "AugmentParams",
    "RawAugmentParams",
    "RawStrongParams",
    "RawWeakParams",
    "op_names",
    "parse_ops",
]

# strict: a bool or a string is not a number here (an int is)
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Probability = Annotated[Number, Field(ge=0, le=1)]
NonNegative = Annotated[Number, Field(ge=0)]


def _range(lo_min: float, strict_pos: bool = False, hi_max: float = math.inf) -> Any:
    def check(v: list[float]) -> list[float]:
        lo, hi = v
        low_ok = lo > 0 if strict_pos else lo >= lo_min
        if not (low_ok and lo <= hi <= hi_max):
            bound = "> 0" if strict_pos else f">= {lo_min:g}"
            top = f" <= {hi_max:g}" if math.isfinite(hi_max) else ""
            raise ValueError(f"must be [lo, hi] with {bound} lo <= hi{top}")
        return v

    return AfterValidator(check)


Pair = Annotated[list[Number], Field(min_length=2, max_length=2)]


class ResizedCropOp(Strict):
    """Crop a random area (``scale`` of the input) of relative aspect ``ratio``, resized back."""

    name: Literal["resized_crop"]
    p: Probability
    scale: Annotated[Pair, _range(0.0, strict_pos=True, hi_max=1.0)]
    ratio: Annotated[Pair, _range(0.0, strict_pos=True)]


class BrightnessOp(Strict):
    """Add a per-sample offset in [-max_delta, max_delta] (a gain in the log domain)."""

    name: Literal["brightness"]
    p: Probability
    max_delta: NonNegative


class ContrastOp(Strict):
    """Scale around the per-sample mean by a factor in ``range``."""

    name: Literal["contrast"]
    p: Probability
    range: Annotated[Pair, _range(0.0)]


def _odd(v: int) -> int:
    if v % 2 == 0:
        raise ValueError(f"must be odd, got {v}")
    return v


class GaussianBlurOp(Strict):
    """Gaussian blur with a square odd ``kernel_size`` and sigma drawn in ``sigma``."""

    name: Literal["gaussian_blur"]
    p: Probability
    kernel_size: Annotated[StrictInt, Field(ge=1), AfterValidator(_odd)]
    sigma: Annotated[Pair, _range(0.0, strict_pos=True)]


class _MaskFields(Strict):
    p: Probability
    max_width: Probability  # fraction of the axis
    n_masks: Annotated[StrictInt, Field(ge=1)]
    fill: Literal["zero", "mean"]  # zero: the train mean after train_* normalisation; mean: the sample's


class TimeMaskOp(_MaskFields):
    """SpecAugment time masks."""

    name: Literal["time_mask"]


class FreqMaskOp(_MaskFields):
    """SpecAugment frequency masks."""

    name: Literal["freq_mask"]


class TimeShiftOp(Strict):
    """Circular roll along time by up to ``max_fraction`` of T."""

    name: Literal["time_shift"]
    p: Probability
    max_fraction: Probability


class NoiseOp(Strict):
    """Additive gaussian noise of standard deviation ``std`` (normalised units)."""

    name: Literal["noise"]
    p: Probability
    std: NonNegative


class MixOp(Strict):
    """Log-domain mix with another sample of the batch, weight drawn in [0, alpha)."""

    name: Literal["mix"]
    p: Probability
    alpha: Annotated[Number, Field(ge=0, lt=1)]


class IdentityOp(Strict):
    name: Literal["identity"]
    p: Probability


AUGMENT_OPS: tuple[type[Strict], ...] = (
    ResizedCropOp,
    BrightnessOp,
    ContrastOp,
    GaussianBlurOp,
    TimeMaskOp,
    FreqMaskOp,
    TimeShiftOp,
    NoiseOp,
    MixOp,
    IdentityOp,
)
AugmentOp = Annotated[
    ResizedCropOp
    | BrightnessOp
    | ContrastOp
    | GaussianBlurOp
    | TimeMaskOp
    | FreqMaskOp
    | TimeShiftOp
    | NoiseOp
    | MixOp
    | IdentityOp,
    Field(discriminator="name"),
]
_VIEW = TypeAdapter(list[AugmentOp])


def op_names() -> list[str]:
    """Every op name, in the union's order."""
    return [cls.model_fields["name"].annotation.__args__[0] for cls in AUGMENT_OPS]  # type: ignore[union-attr]


def parse_ops(ops: Any) -> list[AugmentOp]:
    """Validate a view given as plain dicts (or op models); raises pydantic's ``ValidationError``."""
    return _VIEW.validate_python(ops)


class AugmentParams(Strict):
    """Section ``augment``: the two spectrogram views, and the raw-window views of the raw-input methods."""

    view_a: list[AugmentOp]
    view_b: list[AugmentOp]
    raw: RawAugmentParams

    def as_dicts(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return ([op.model_dump() for op in self.view_a], [op.model_dump() for op in self.view_b])


class RawWeakParams(Strict):
    """TS-TCC's weak view: scaling by N(scale_mean, scale_sigma)."""

    scale_sigma: NonNegative
    scale_mean: Number


class RawStrongParams(Strict):
    """TS-TCC's strong view: permutation of up to ``max_segments`` segments + jitter."""

    max_segments: Annotated[StrictInt, Field(ge=1)]
    jitter_sigma: NonNegative


class RawAugmentParams(Strict):
    """TS-TCC's weak/strong views of raw windows (``trls_core.augment_raw.RawTwoViews``).

    For the raw-input methods (byol/simclr/ts_tcc on ``timeconv``/``tstcc``).
    Windows are standardised per channel, so TS-TCC's HAR-scale values apply
    (its epilepsy values, 0.001, were for unscaled microvolts).
    """

    weak: RawWeakParams
    strong: RawStrongParams


AugmentParams.model_rebuild()
