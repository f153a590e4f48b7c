"""TS-TCC's weak and strong views of raw windows (Eldele et al. 2021).

TS-TCC contrasts a *weak* view (scaling) with a *strong* view (permutation
then jitter) of the same raw window (B, C, L): the strong view has its
time order broken, so predicting one view's future from the other's past
(temporal contrasting) cannot be solved by copying local shape. The same
``RawTwoViews`` also serves SimCLR on raw windows.

Every op works batched on (B, C, L) float tensors on their own device, draws
its random parameters from torch's global RNG (``torch.manual_seed`` makes a
view deterministic) and has no Python loop over samples.

Choices, and where they differ from the TS-TCC code:

* ``scaling`` multiplies each (sample, channel) by one factor drawn from
  N(mean, sigma), constant over time (the "scaling" of Um et al. 2017 that
  TS-TCC cites). The TS-TCC code draws N(2, sigma) per (sample, time step),
  shared by the channels; ``mean`` (key ``scale_mean``) can be set to 2 to
  get its level, but not its per-time-step factors.
* ``permutation`` uses 1..max_segments segments (inclusive; the TS-TCC code's
  ``randint(1, max_segments)`` never reaches max_segments), cut points
  distinct in 1..L-1 so no segment is empty, and the same reordering for
  every channel of a sample (the TS-TCC code reorders channel 0 only and
  writes it into every channel).
* ``jitter`` adds N(0, sigma) noise, as in TS-TCC.

Parameters come as plain dicts (params.yaml friendly); a missing key takes
TS-TCC's default, an unknown key or a bad value raises ValueError::

    RawTwoViews(weak={"scale_sigma": 1.1}, strong={"max_segments": 5, "jitter_sigma": 0.8})
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "WEAK_DEFAULTS",
    "STRONG_DEFAULTS",
    "scaling",
    "jitter",
    "permutation",
    "RawTwoViews",
]

WEAK_DEFAULTS: dict[str, float] = {"scale_sigma": 1.1, "scale_mean": 1.0}
STRONG_DEFAULTS: dict[str, float | int] = {"max_segments": 5, "jitter_sigma": 0.8}


def _check_input(x: Tensor, who: str) -> None:
    if not isinstance(x, Tensor) or x.ndim != 3:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{who}: expected a (B, C, L) tensor of raw windows, got {shape}")
    if not x.is_floating_point():
        raise ValueError(f"{who}: expected a floating-point tensor, got {x.dtype}")


def _check_real(who: str, key: str, value: Any, minimum: float | None = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{who}: {key} must be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{who}: {key} must be >= {minimum}, got {value!r}")
    return float(value)


def _check_int(who: str, key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{who}: {key} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def scaling(x: Tensor, sigma: float, mean: float = 1.0) -> Tensor:
    """Multiply each (sample, channel) of (B, C, L) by a factor ~ N(mean, sigma)."""
    _check_input(x, "scaling")
    sigma = _check_real("scaling", "sigma", sigma)
    mean = _check_real("scaling", "mean", mean, minimum=None)
    factor = mean + sigma * torch.randn(x.shape[0], x.shape[1], 1, dtype=x.dtype, device=x.device)
    return x * factor


def jitter(x: Tensor, sigma: float) -> Tensor:
    """Add i.i.d. N(0, sigma) noise to every value of (B, C, L)."""
    _check_input(x, "jitter")
    sigma = _check_real("jitter", "sigma", sigma)
    return x + sigma * torch.randn_like(x)


def permutation(x: Tensor, max_segments: int) -> Tensor:
    """Cut each sample's time axis into 1..max_segments pieces and shuffle them.

    Per sample: n ~ U{1..max_segments} (capped at L), n - 1 distinct cut
    points in 1..L-1, the n contiguous segments put in a random order; all
    channels of a sample move together. Vectorised: every time step gets
    the sort key (random rank of its segment) * L + position, and one
    argsort + gather reorders the whole batch.
    """
    _check_input(x, "permutation")
    max_segments = _check_int("permutation", "max_segments", max_segments, 1)
    b, c, length = x.shape
    if max_segments == 1 or length < 2 or b == 0:
        return x.clone()
    dev = x.device
    n_seg = torch.randint(1, max_segments + 1, (b, 1), device=dev).clamp_(max=length)
    # choose n_seg - 1 distinct cut points among positions 1..L-1: the smallest ranks of random scores
    scores = torch.rand(b, length - 1, device=dev)
    ranks = scores.argsort(dim=1).argsort(dim=1)
    is_cut = ranks < (n_seg - 1)
    seg_id = torch.cat([torch.zeros(b, 1, dtype=torch.long, device=dev), is_cut.long().cumsum(dim=1)], dim=1)
    # a random permutation of the segment labels 0..max_segments-1 for each sample
    seg_rank = torch.rand(b, max_segments, device=dev).argsort(dim=1)
    key = seg_rank.gather(1, seg_id) * length + torch.arange(length, device=dev)
    order = key.argsort(dim=1)
    return x.gather(2, order.unsqueeze(1).expand(b, c, length))


def _parse(who: str, given: Mapping[str, Any] | None, defaults: Mapping[str, Any]) -> dict[str, Any]:
    if given is None:
        given = {}
    if not isinstance(given, Mapping):
        raise ValueError(f"{who}: parameters must be a dict, got {type(given).__name__}")
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"{who}: unknown key(s) {unknown}; expected some of {sorted(defaults)}")
    return {**defaults, **given}


class RawTwoViews(nn.Module):
    """TS-TCC's two views of a raw batch: ``forward(x) -> (weak, strong)``.

    weak = ``scaling(x, scale_sigma, scale_mean)``;
    strong = ``jitter(permutation(x, max_segments), jitter_sigma)``.
    """

    def __init__(
        self,
        weak: Mapping[str, Any] | None = None,
        strong: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        w = _parse("RawTwoViews weak", weak, WEAK_DEFAULTS)
        s = _parse("RawTwoViews strong", strong, STRONG_DEFAULTS)
        self.scale_sigma = _check_real("RawTwoViews weak", "scale_sigma", w["scale_sigma"])
        self.scale_mean = _check_real("RawTwoViews weak", "scale_mean", w["scale_mean"], minimum=None)
        self.max_segments = _check_int("RawTwoViews strong", "max_segments", s["max_segments"], 1)
        self.jitter_sigma = _check_real("RawTwoViews strong", "jitter_sigma", s["jitter_sigma"])

    def extra_repr(self) -> str:
        return (
            f"weak=scaling(sigma={self.scale_sigma}, mean={self.scale_mean}), "
            f"strong=permutation(max_segments={self.max_segments}) + jitter(sigma={self.jitter_sigma})"
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        _check_input(x, "RawTwoViews")
        weak = scaling(x, self.scale_sigma, self.scale_mean)
        strong = jitter(permutation(x, self.max_segments), self.jitter_sigma)
        return weak, strong
