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

A view is described by a list of plain dicts (params.yaml friendly)::

    [{"name": "contrast", "p": 0.8, "range": [0.8, 1.2]},
     {"name": "resized_crop", "p": 1.0, "scale": [0.6, 1.0], "ratio": [0.8, 1.25]}]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import kornia.augmentation as KA
import torch
from torch import nn

__all__ = [
    "DEFAULT_VIEW_A",
    "DEFAULT_VIEW_B",
    "OPS",
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
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"augment op 'mix': 'alpha' must be in [0, 1), got {alpha}")
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


# ------------------------------------------------------------------ param checks


def _prob(op: str, key: str, v: Any) -> float:
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 <= float(v) <= 1.0:
        raise ValueError(f"augment op {op!r}: {key!r} must be a number in [0, 1], got {v!r}")
    return float(v)


def _nonneg(op: str, key: str, v: Any) -> float:
    if not isinstance(v, (int, float)) or isinstance(v, bool) or float(v) < 0.0 or not math.isfinite(float(v)):
        raise ValueError(f"augment op {op!r}: {key!r} must be a finite number >= 0, got {v!r}")
    return float(v)


def _pos_int(op: str, key: str, v: Any) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ValueError(f"augment op {op!r}: {key!r} must be an int >= 1, got {v!r}")
    return v


def _range(op: str, key: str, v: Any, lo_min: float = 0.0, strict_pos: bool = False) -> tuple[float, float]:
    ok = isinstance(v, (list, tuple)) and len(v) == 2
    ok = ok and all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in v)
    if ok:
        lo, hi = float(v[0]), float(v[1])
        ok = lo <= hi and lo >= lo_min and (lo > 0.0 or not strict_pos) and math.isfinite(hi)
    if not ok:
        cond = f"> {lo_min}" if strict_pos else f">= {lo_min}"
        raise ValueError(f"augment op {op!r}: {key!r} must be [lo, hi] with {cond} lo <= hi, got {v!r}")
    return (float(v[0]), float(v[1]))


def _mk_resized_crop(op: str, p: float, kw: dict[str, Any]) -> nn.Module:
    scale = _range(op, "scale", kw.get("scale", [0.6, 1.0]), strict_pos=True)
    if scale[1] > 1.0:
        raise ValueError(f"augment op {op!r}: 'scale' must lie in (0, 1], got {list(scale)}")
    ratio = _range(op, "ratio", kw.get("ratio", [0.8, 1.25]), strict_pos=True)
    return ResizedCrop(p, scale, ratio)


def _mk_brightness(op: str, p: float, kw: dict[str, Any]) -> nn.Module:
    return Brightness(p, _nonneg(op, "max_delta", kw.get("max_delta", 0.1)))


def _mk_contrast(op: str, p: float, kw: dict[str, Any]) -> nn.Module:
    return Contrast(p, _range(op, "range", kw.get("range", [0.8, 1.2])))


def _mk_blur(op: str, p: float, kw: dict[str, Any]) -> nn.Module:
    k = _pos_int(op, "kernel_size", kw.get("kernel_size", 3))
    if k % 2 == 0:
        raise ValueError(f"augment op {op!r}: 'kernel_size' must be odd, got {k}")
    return GaussianBlur(p, k, _range(op, "sigma", kw.get("sigma", [0.1, 1.0]), strict_pos=True))


def _mk_mask(cls: type[_AxisMask]) -> Callable[[str, float, dict[str, Any]], nn.Module]:
    def make(op: str, p: float, kw: dict[str, Any]) -> nn.Module:
        width = _prob(op, "max_width", kw.get("max_width", 0.15))
        n_masks = _pos_int(op, "n_masks", kw.get("n_masks", 1))
        fill = kw.get("fill", "zero")
        if fill not in ("zero", "mean"):
            raise ValueError(f"augment op {op!r}: 'fill' must be 'zero' or 'mean', got {fill!r}")
        return cls(p, width, n_masks, fill)

    return make


def _mk_shift(op: str, p: float, kw: dict[str, Any]) -> nn.Module:
    return TimeShift(p, _prob(op, "max_fraction", kw.get("max_fraction", 0.1)))


def _mk_noise(op: str, p: float, kw: dict[str, Any]) -> nn.Module:
    return Noise(p, _nonneg(op, "std", kw.get("std", 0.05)))


def _mk_mix(op: str, p: float, kw: dict[str, Any]) -> nn.Module:
    return Mix(p, _nonneg(op, "alpha", kw.get("alpha", 0.3)))


def _mk_identity(op: str, p: float, kw: dict[str, Any]) -> nn.Module:
    return Identity(p)


# name -> (allowed param keys besides name/p, factory)
OPS: dict[str, tuple[tuple[str, ...], Callable[[str, float, dict[str, Any]], nn.Module]]] = {
    "resized_crop": (("scale", "ratio"), _mk_resized_crop),
    "brightness": (("max_delta",), _mk_brightness),
    "contrast": (("range",), _mk_contrast),
    "gaussian_blur": (("kernel_size", "sigma"), _mk_blur),
    "time_mask": (("max_width", "n_masks", "fill"), _mk_mask(TimeMask)),
    "freq_mask": (("max_width", "n_masks", "fill"), _mk_mask(FreqMask)),
    "time_shift": (("max_fraction",), _mk_shift),
    "noise": (("std",), _mk_noise),
    "mix": (("alpha",), _mk_mix),
    "identity": ((), _mk_identity),
}


# ------------------------------------------------------------------ views


class View(nn.Sequential):
    """A sequence of ops; ``ops`` keeps the dict spec it was built from (for logging)."""

    def __init__(self, modules: list[nn.Module], ops: list[dict[str, Any]]) -> None:
        super().__init__(*modules)
        self.ops = [dict(o) for o in ops]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, "view")
        return super().forward(x)


def build_view(ops: list[dict[str, Any]]) -> nn.Module:
    """Build one view pipeline from a list of ``{"name": op, "p": prob, ...params}``.

    Missing params take mild defaults; ``p`` defaults to 1. An unknown op
    name or key, or a bad value, raises ``ValueError`` naming the op (and
    its index in the list) and the key.
    """
    if not isinstance(ops, (list, tuple)):
        raise ValueError(f"augment: a view must be a list of op dicts, got {type(ops).__name__}")
    modules: list[nn.Module] = []
    for i, spec in enumerate(ops):
        if not isinstance(spec, dict) or "name" not in spec:
            raise ValueError(f"augment: op #{i} must be a dict with a 'name' key, got {spec!r}")
        name = spec["name"]
        if name not in OPS:
            raise ValueError(f"augment: op #{i} has unknown name {name!r}; allowed: {', '.join(OPS)}")
        allowed, factory = OPS[name]
        label = f"{name} (#{i})"
        unknown = sorted(set(spec) - {"name", "p", *allowed})
        if unknown:
            raise ValueError(f"augment op {label!r}: unknown key(s) {unknown}; allowed: {['p', *allowed]}")
        p = _prob(label, "p", spec.get("p", 1.0))
        modules.append(factory(label, p, spec))
    return View(modules, list(ops))


class TwoViews(nn.Module):
    """Two different augmentation pipelines over the same batch: ``forward(x) -> (a, b)``."""

    def __init__(self, view_a: list[dict[str, Any]], view_b: list[dict[str, Any]]) -> None:
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


# Geometric view: mild contrast (keeps the per-sample mean, i.e. power) + resized crop.
DEFAULT_VIEW_A: list[dict[str, Any]] = [
    {"name": "contrast", "p": 0.8, "range": [0.8, 1.2]},
    {"name": "resized_crop", "p": 1.0, "scale": [0.6, 1.0], "ratio": [0.8, 1.25]},
]

# Texture/occlusion view: blur + SpecAugment masks + a mild log-gain.
DEFAULT_VIEW_B: list[dict[str, Any]] = [
    {"name": "gaussian_blur", "p": 0.5, "kernel_size": 3, "sigma": [0.1, 1.0]},
    {"name": "time_mask", "p": 0.5, "max_width": 0.15, "n_masks": 1},
    {"name": "freq_mask", "p": 0.5, "max_width": 0.15, "n_masks": 1},
    {"name": "brightness", "p": 0.5, "max_delta": 0.1},
]
