"""The two augmented views of a spectrogram batch (docs/design.md §1.2).

TRLS applies two *different* image-augmentation pipelines to the same
spectrogram and asks BYOL to map both to the same representation. Every
op here works batched on (B, C, F, T) tensors on their own device, with
per-sample random parameters drawn from torch's global RNG (so
``torch.manual_seed`` makes a view deterministic) and no Python loop over
samples.

Where kornia 0.9 has the op and it suits standardised log-magnitudes, it
is used: ``resized_crop`` (``kornia.augmentation.RandomResizedCrop``) and
``gaussian_blur`` (``RandomGaussianBlur``). kornia's ``ColorJitter``
brightness/contrast CLAMP their output to [0, 1] (measured: a
standardised spectrogram comes out entirely in [0, 1]), which would wreck
log-magnitudes with negative values, so ``brightness`` (additive offset,
= a gain in the log domain) and ``contrast`` (scale around the per-sample
mean) are small custom modules, as are SpecAugment-style ``time_mask`` and
``freq_mask``, ``time_shift`` (circular roll) and ``noise``.

Keep power-changing ops (brightness, contrast) mild: strong brightness
jitter teaches invariance to signal power, the same loss as per-window
standardisation.

A view is a list of ops as params.yaml writes them (``augment.view_a``),
validated by ``trls_core.settings.augment`` (one model per op)::

    [{"name": "contrast", "p": 0.8, "range": [0.8, 1.2]},
     {"name": "resized_crop", "p": 1.0, "scale": [0.6, 1.0], "ratio": [0.8, 1.25]}]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import kornia.augmentation as KA
import torch
from pydantic import ValidationError
from torch import nn

from trls_core.settings.augment import AUGMENT_OPS, op_names, parse_ops

__all__ = [
    "BUILDERS",
    "TwoViews",
    "build_view",
]


# ------------------------------------------------------------------ helpers


def _check_input(x: torch.Tensor, who: str) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"augment {who}: expected a (B, C, F, T) tensor, got {shape}")


def _gate(x: torch.Tensor, p: float) -> torch.Tensor:
    """Per-sample Bernoulli(p) gate of shape (B, 1, 1, 1) in x's dtype."""
    return (torch.rand(x.shape[0], 1, 1, 1, device=x.device) < p).to(x.dtype)


def _uniform(n: int, lo: float, hi: float, device: torch.device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, device=device)


class _Op(nn.Module):
    """Base: applies ``_transform`` to the gated samples; p == 0 is an exact identity."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, type(self).__name__)
        if self.p <= 0.0:
            return x
        return self._transform(x)

    def _transform(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_") and k != "training")


# ------------------------------------------------------------------ custom ops


class Identity(_Op):
    def _transform(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Brightness(_Op):
    """Add a per-sample offset in [-max_delta, max_delta] (log domain: a random gain)."""

    def __init__(self, p: float, max_delta: float) -> None:
        super().__init__(p)
        self.max_delta = float(max_delta)

    def _transform(self, x: torch.Tensor) -> torch.Tensor:
        delta = _uniform(x.shape[0], -self.max_delta, self.max_delta, x.device).to(x.dtype)
        return x + delta.view(-1, 1, 1, 1) * _gate(x, self.p)


class Contrast(_Op):
    """Scale each sample around its own per-channel mean by a factor in ``range``.

    The mean is kept, so the power cue survives; only the dynamic range changes.
    """

    def __init__(self, p: float, range: tuple[float, float]) -> None:  # noqa: A002 - params.yaml key
        super().__init__(p)
        self.range = (float(range[0]), float(range[1]))

    def _transform(self, x: torch.Tensor) -> torch.Tensor:
        factor = _uniform(x.shape[0], *self.range, x.device).to(x.dtype).view(-1, 1, 1, 1)
        factor = 1.0 + (factor - 1.0) * _gate(x, self.p)
        mean = x.mean(dim=(2, 3), keepdim=True)
        return mean + factor * (x - mean)


class _AxisMask(_Op):
    """SpecAugment-style masks along one axis (-1: time, -2: frequency).

    Each sample gets ``n_masks`` bands, each of a width drawn uniformly in
    [0, floor(max_width * size)] at a uniform start; the band is filled with
    0 (``fill="zero"``; 0 is the train mean after train_* normalisation) or
    with the sample's per-channel mean (``fill="mean"``). Masks are built as
    one (B, n_masks, size) comparison against an ``arange``.
    """

    axis: int = -1

    def __init__(self, p: float, max_width: float, n_masks: int, fill: str) -> None:
        super().__init__(p)
        self.max_width = float(max_width)
        self.n_masks = int(n_masks)
        self.fill = fill

    def band_mask(self, x: torch.Tensor) -> torch.Tensor:
        """Boolean (B, size) mask, True where masked (already gated by p)."""
        b, size = x.shape[0], x.shape[self.axis]
        max_w = int(math.floor(self.max_width * size))
        width = torch.floor(torch.rand(b, self.n_masks, device=x.device) * (max_w + 1)).long()
        start = torch.floor(torch.rand(b, self.n_masks, device=x.device) * (size - width + 1)).long()
        pos = torch.arange(size, device=x.device).view(1, 1, size)
        mask = (pos >= start.unsqueeze(-1)) & (pos < (start + width).unsqueeze(-1))
        gate = torch.rand(b, device=x.device) < self.p
        return mask.any(dim=1) & gate.unsqueeze(-1)

    def _transform(self, x: torch.Tensor) -> torch.Tensor:
        mask = self.band_mask(x)
        mask = mask.view(x.shape[0], 1, 1, -1) if self.axis == -1 else mask.view(x.shape[0], 1, -1, 1)
        if self.fill == "zero":
            value = torch.zeros((), dtype=x.dtype, device=x.device)
        else:
            value = x.mean(dim=(2, 3), keepdim=True)
        return torch.where(mask, value, x)


class TimeMask(_AxisMask):
    axis = -1


class FreqMask(_AxisMask):
    axis = -2


class TimeShift(_Op):
    """Circular roll along time by a per-sample integer in [-s, s], s = floor(max_fraction * T)."""

    def __init__(self, p: float, max_fraction: float) -> None:
        super().__init__(p)
        self.max_fraction = float(max_fraction)

    def _transform(self, x: torch.Tensor) -> torch.Tensor:
        b, c, f, t = x.shape
        s = int(math.floor(self.max_fraction * t))
        if s == 0:
            return x
        shift = torch.randint(-s, s + 1, (b,), device=x.device)
        shift = shift * (torch.rand(b, device=x.device) < self.p).long()
        idx = (torch.arange(t, device=x.device).view(1, t) - shift.view(b, 1)) % t
        return torch.gather(x, 3, idx.view(b, 1, 1, t).expand(b, c, f, t))


class Noise(_Op):
    """Additive gaussian noise of standard deviation ``std`` (in normalised units)."""

    def __init__(self, p: float, std: float) -> None:
        super().__init__(p)
        self.std = float(std)

    def _transform(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.randn_like(x) * (self.std * _gate(x, self.p))


class Mix(_Op):
    """Mix each sample with another one of the batch (BYOL-A's mixup, log domain).

    ``log((1 - l)·exp(x) + l·exp(x_other))`` with a per-sample l ~ U(0, alpha):
    the other window acts as background activity of lower weight, so the
    encoder must keep what dominates the window rather than every detail.
    Computed with logaddexp, batched, no loop over samples.
    """

    def __init__(self, p: float, alpha: float) -> None:
        super().__init__(p)
        self.alpha = float(alpha)

    def _transform(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        if b < 2 or self.alpha == 0.0:
            return x
        lam = torch.rand(b, device=x.device, dtype=x.dtype) * self.alpha
        lam = (lam * (torch.rand(b, device=x.device) < self.p).to(x.dtype)).view(b, 1, 1, 1)
        other = x[torch.randperm(b, device=x.device)]
        mixed = torch.logaddexp(x + torch.log1p(-lam), other + torch.log(lam.clamp_min(1e-12)))
        return torch.where(lam > 0, mixed, x)


# ------------------------------------------------------------------ kornia ops


class ResizedCrop(_Op):
    """kornia RandomResizedCrop back to the input's own (F, T).

    ``ratio`` is RELATIVE to the input's aspect ratio T/F (kornia's is
    absolute width/height): ratio [1, 1] crops a shrunken copy of the
    spectrogram's own shape, whatever F and T are. One kornia module is
    built per (F, T) seen and cached.
    """

    def __init__(self, p: float, scale: tuple[float, float], ratio: tuple[float, float]) -> None:
        super().__init__(p)
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self._cache: dict[tuple[int, int], nn.Module] = {}

    def _kornia(self, f: int, t: int) -> nn.Module:
        key = (f, t)
        if key not in self._cache:
            aspect = t / f
            self._cache[key] = KA.RandomResizedCrop(
                (f, t),
                scale=self.scale,
                ratio=(self.ratio[0] * aspect, self.ratio[1] * aspect),
                p=self.p,
            )
        return self._cache[key]

    def _transform(self, x: torch.Tensor) -> torch.Tensor:
        return self._kornia(x.shape[-2], x.shape[-1])(x)


class GaussianBlur(_Op):
    """kornia RandomGaussianBlur with a square odd kernel and sigma drawn per sample."""

    def __init__(self, p: float, kernel_size: int, sigma: tuple[float, float]) -> None:
        super().__init__(p)
        self.kernel_size = int(kernel_size)
        self.sigma = (float(sigma[0]), float(sigma[1]))
        self._blur = KA.RandomGaussianBlur(
            (self.kernel_size, self.kernel_size), self.sigma, border_type="reflect", p=self.p
        )

    def _transform(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size
        if k // 2 >= min(x.shape[-2], x.shape[-1]):
            raise ValueError(
                f"augment gaussian_blur: kernel_size={k} too large for spectrogram (F, T)={tuple(x.shape[-2:])}"
            )
        return self._blur(x)


# ------------------------------------------------------------------ ops from settings


def _mask(cls: type[_AxisMask]) -> Callable[[Any], nn.Module]:
    def make(o: Any) -> nn.Module:
        return cls(o.p, o.max_width, o.n_masks, o.fill)

    return make


#: op name -> the module built from its validated settings (``trls_core.settings.augment``)
BUILDERS: dict[str, Callable[[Any], nn.Module]] = {
    "resized_crop": lambda o: ResizedCrop(o.p, o.scale, o.ratio),
    "brightness": lambda o: Brightness(o.p, o.max_delta),
    "contrast": lambda o: Contrast(o.p, o.range),
    "gaussian_blur": lambda o: GaussianBlur(o.p, o.kernel_size, o.sigma),
    "time_mask": _mask(TimeMask),
    "freq_mask": _mask(FreqMask),
    "time_shift": lambda o: TimeShift(o.p, o.max_fraction),
    "noise": lambda o: Noise(o.p, o.std),
    "mix": lambda o: Mix(o.p, o.alpha),
    "identity": lambda o: Identity(o.p),
}


def _view_error(err: ValidationError) -> str:
    """One line per problem, naming the op (its index in the view) and the key."""
    lines = []
    for e in err.errors():
        loc, got = list(e["loc"]), e.get("input")
        if not loc:
            lines.append(f"augment: a view must be a list of op dicts ({e['msg']})")
        elif e["type"] == "union_tag_invalid":
            lines.append(
                f"augment: op #{loc[0]} has unknown name {got.get('name')!r}; allowed: {', '.join(op_names())}"
            )
        elif len(loc) == 1:
            lines.append(f"augment: op #{loc[0]}: {e['msg']} (got {got!r})")
        else:
            op, key = f"{loc[1]} (#{loc[0]})", ".".join(str(k) for k in loc[2:])
            if e["type"] == "extra_forbidden":
                lines.append(f"augment op {op!r}: unknown key {key!r}; allowed: {_keys(str(loc[1]))}")
            elif e["type"] == "missing":
                lines.append(f"augment op {op!r}: {key!r} is required")
            else:
                lines.append(f"augment op {op!r}: {key!r}: {e['msg']} (got {got!r})")
    return "; ".join(lines)


def _keys(name: str) -> list[str]:
    return [k for k in AUGMENT_OPS[op_names().index(name)].model_fields if k != "name"]


# ------------------------------------------------------------------ views


class View(nn.Sequential):
    """A sequence of ops; ``ops`` keeps the dict spec it was built from (for logging)."""

    def __init__(self, modules: list[nn.Module], ops: list[dict[str, Any]]) -> None:
        super().__init__(*modules)
        self.ops = [dict(o) for o in ops]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, "view")
        return super().forward(x)


def build_view(ops: Sequence[Any]) -> nn.Module:
    """Build one view pipeline from a list of ops: ``{"name": op, "p": prob, ...its keys}`` or op models.

    Every op key is required (params.yaml holds the values). An unknown op
    name or key, a missing key or a bad value raises ``ValueError`` naming
    the op (and its index in the list) and the key.
    """
    try:
        parsed = parse_ops(list(ops) if isinstance(ops, tuple) else ops)
    except ValidationError as err:
        raise ValueError(_view_error(err)) from None
    return View([BUILDERS[op.name](op) for op in parsed], [op.model_dump() for op in parsed])


class TwoViews(nn.Module):
    """Two different augmentation pipelines over the same batch: ``forward(x) -> (a, b)``."""

    def __init__(self, view_a: Sequence[Any], view_b: Sequence[Any]) -> None:
        super().__init__()
        self.view_a = build_view(view_a)
        self.view_b = build_view(view_b)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_input(x, "TwoViews")
        return self.view_a(x), self.view_b(x)

    def pair(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """View A of ``x1`` and view B of ``x2``: the views stay different when the inputs differ too."""
        _check_input(x1, "TwoViews")
        _check_input(x2, "TwoViews")
        return self.view_a(x1), self.view_b(x2)
