"""Raw-window augmentations (TS-TCC): statistics, permutation invariants, the two views, errors."""

from __future__ import annotations

import pytest
import torch

from trls_core.augment_raw import RawTwoViews, jitter, permutation, scaling


def _breaks(out: torch.Tensor) -> torch.Tensor:
    """Per row of a permuted arange: places where the next value is not the next integer."""
    return (out.diff(dim=-1) != 1).sum(dim=-1)


def test_scaling_one_factor_per_sample_and_channel_with_requested_stats():
    torch.manual_seed(0)
    out = scaling(torch.ones(2000, 2, 5), sigma=0.5)
    assert torch.equal(out, out[..., :1].expand_as(out))  # constant over time
    factors = out[..., 0]
    assert factors.mean().item() == pytest.approx(1.0, abs=0.05)
    assert factors.std().item() == pytest.approx(0.5, abs=0.05)
    assert not torch.equal(factors[:, 0], factors[:, 1])  # channels draw their own factor
    shifted = scaling(torch.ones(2000, 1, 3), sigma=0.1, mean=2.0)
    assert shifted.mean().item() == pytest.approx(2.0, abs=0.02)


def test_jitter_adds_noise_with_requested_std():
    torch.manual_seed(0)
    x = torch.full((64, 2, 500), 3.0)
    noise = jitter(x, 0.8) - x
    assert noise.mean().item() == pytest.approx(0.0, abs=0.02)
    assert noise.std().item() == pytest.approx(0.8, rel=0.03)
    assert torch.equal(jitter(x, 0.0), x)


def test_permutation_keeps_values_per_sample_and_channel():
    torch.manual_seed(0)
    x = torch.randn(16, 3, 50, dtype=torch.float64)
    out = permutation(x, 5)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(out.sort(dim=-1).values, x.sort(dim=-1).values)
    assert not torch.equal(out, x)


def test_permutation_moves_channels_together():
    x = torch.arange(30.0).expand(8, 30).unsqueeze(1).repeat(1, 2, 1)
    x[:, 1] += 100.0
    torch.manual_seed(1)
    out = permutation(x, 4)
    assert torch.equal(out[:, 1], out[:, 0] + 100.0)


def test_permutation_uses_contiguous_segments_up_to_max_segments():
    torch.manual_seed(0)
    x = torch.arange(30.0).expand(500, 1, 30).clone()
    breaks = _breaks(permutation(x, 3)[:, 0])
    # at most 3 segments -> at most 2 visible breaks; 3 segments (inclusive bound) do occur
    assert breaks.max().item() == 2
    assert (breaks == 0).any() and (breaks == 1).any()
    assert torch.equal(permutation(x, 1), x)


def test_permutation_handles_short_windows():
    x = torch.randn(4, 2, 2)
    out = permutation(x, 5)
    assert torch.equal(out.sort(dim=-1).values, x.sort(dim=-1).values)
    single = torch.randn(3, 1, 1)
    assert torch.equal(permutation(single, 5), single)


def test_permutation_deterministic_under_seed():
    x = torch.randn(8, 2, 40)
    torch.manual_seed(3)
    a = permutation(x, 5)
    torch.manual_seed(3)
    assert torch.equal(a, permutation(x, 5))


def test_two_views_compose_weak_and_strong_in_order():
    x = torch.randn(6, 2, 32)
    aug = RawTwoViews({"scale_sigma": 0.3}, {"max_segments": 4, "jitter_sigma": 0.2})
    torch.manual_seed(7)
    weak, strong = aug(x)
    torch.manual_seed(7)
    assert torch.equal(weak, scaling(x, 0.3))
    assert torch.equal(strong, jitter(permutation(x, 4), 0.2))
    torch.manual_seed(8)
    w2, s2 = aug(x)
    assert not torch.equal(w2, weak) and not torch.equal(s2, strong)


def test_two_views_defaults_are_ts_tcc_values():
    aug = RawTwoViews()
    assert (aug.scale_sigma, aug.scale_mean, aug.max_segments, aug.jitter_sigma) == (1.1, 1.0, 5, 0.8)
    weak, strong = RawTwoViews({"scale_sigma": 0.0}, {"jitter_sigma": 0.0})(torch.randn(4, 1, 20))
    assert weak.shape == strong.shape == (4, 1, 20)


def test_two_views_strong_without_jitter_is_a_reordering():
    x = torch.randn(5, 2, 25)
    weak, strong = RawTwoViews({"scale_sigma": 0.0, "scale_mean": 2.0}, {"jitter_sigma": 0.0})(x)
    assert torch.equal(weak, 2.0 * x)
    assert torch.equal(strong.sort(dim=-1).values, x.sort(dim=-1).values)


@pytest.mark.parametrize(
    "weak, strong, key",
    [
        ({"scale_sigmaa": 1.0}, {}, "scale_sigmaa"),
        ({}, {"max_seg": 5}, "max_seg"),
        ({"scale_sigma": -0.1}, {}, "scale_sigma"),
        ({"scale_sigma": "big"}, {}, "scale_sigma"),
        ({"scale_mean": float("inf")}, {}, "scale_mean"),
        ({}, {"max_segments": 0}, "max_segments"),
        ({}, {"max_segments": 2.5}, "max_segments"),
        ({}, {"max_segments": True}, "max_segments"),
        ({}, {"jitter_sigma": float("nan")}, "jitter_sigma"),
    ],
)
def test_two_views_reject_unknown_keys_and_bad_values(weak, strong, key):
    with pytest.raises(ValueError, match=key):
        RawTwoViews(weak, strong)


@pytest.mark.parametrize("fn", [lambda x: scaling(x, 1.0), lambda x: jitter(x, 1.0), lambda x: permutation(x, 3)])
def test_ops_reject_non_3d_or_integer_input(fn):
    with pytest.raises(ValueError, match=r"\(B, C, L\)"):
        fn(torch.randn(4, 20))
    with pytest.raises(ValueError, match="floating"):
        fn(torch.ones(2, 1, 10, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(B, C, L\)"):
        RawTwoViews()(torch.randn(2, 1, 8, 8))
