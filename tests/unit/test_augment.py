"""Tests for trls_core.augment: the two view pipelines and each op."""

from __future__ import annotations

import pytest
import torch

from tests.settings import section
from trls_core.augment import BUILDERS, TwoViews, build_view
from trls_core.settings.augment import op_names

B, C, F, T = 16, 2, 17, 23
VIEW_A, VIEW_B = section("augment").as_dicts()  # the views of params.yaml
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

ALL_OPS_P1 = [
    {"name": "resized_crop", "p": 1.0, "scale": [0.5, 0.9], "ratio": [0.8, 1.25]},
    {"name": "brightness", "p": 1.0, "max_delta": 0.2},
    {"name": "contrast", "p": 1.0, "range": [0.7, 1.3]},
    {"name": "gaussian_blur", "p": 1.0, "kernel_size": 3, "sigma": [0.5, 1.0]},
    {"name": "time_mask", "p": 1.0, "max_width": 0.3, "n_masks": 2, "fill": "zero"},
    {"name": "freq_mask", "p": 1.0, "max_width": 0.3, "n_masks": 2, "fill": "mean"},
    {"name": "time_shift", "p": 1.0, "max_fraction": 0.2},
    {"name": "noise", "p": 1.0, "std": 0.1},
    {"name": "mix", "p": 1.0, "alpha": 0.4},
    {"name": "identity", "p": 1.0},
]


def _x(seed: int = 0, device: str = "cpu") -> torch.Tensor:
    x = torch.randn(B, C, F, T, generator=torch.Generator().manual_seed(seed)) * 2.0 - 1.0
    return x.to(device)


def test_every_op_name_is_covered():
    assert {o["name"] for o in ALL_OPS_P1} == set(BUILDERS) == set(op_names())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", ALL_OPS_P1, ids=lambda o: o["name"])
def test_each_op_preserves_shape_dtype_device_and_is_not_clamped(op, device):
    x = _x(device=device)
    torch.manual_seed(1)
    y = build_view([op])(x)
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    assert torch.isfinite(y).all()
    if op["name"] != "identity":
        assert not torch.equal(y, x)
    if op["name"] not in ("resized_crop", "gaussian_blur"):
        # no [0, 1] clamping of standardised log-magnitudes (kornia ColorJitter does clamp)
        assert y.min() < -1.0 and y.max() > 1.0


@pytest.mark.parametrize("op", ALL_OPS_P1, ids=lambda o: o["name"])
def test_p_zero_is_identity(op):
    x = _x()
    y = build_view([dict(op, p=0.0)])(x)
    assert torch.equal(y, x)


@pytest.mark.parametrize("device", DEVICES)
def test_default_views_differ_from_each_other_and_input(device):
    x = _x(device=device)
    torch.manual_seed(0)
    a, b = TwoViews(VIEW_A, VIEW_B)(x)
    for v in (a, b):
        assert v.shape == x.shape and v.dtype == x.dtype and v.device == x.device
        assert not torch.allclose(v, x)
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("device", DEVICES)
def test_deterministic_under_manual_seed(device):
    x = _x(device=device)
    tv = TwoViews(
        VIEW_A + [{"name": "time_shift", "p": 0.5, "max_fraction": 0.1}],
        VIEW_B + [{"name": "noise", "p": 1.0, "std": 0.05}],
    )
    torch.manual_seed(123)
    a1, b1 = tv(x)
    torch.manual_seed(123)
    a2, b2 = tv(x)
    assert torch.equal(a1, a2) and torch.equal(b1, b2)
    a3, _ = tv(x)  # RNG moved on: a different draw
    assert not torch.equal(a1, a3)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,axis", [("time_mask", -1), ("freq_mask", -2)])
def test_masks_zero_one_contiguous_band_no_wider_than_max(name, axis, device):
    x = _x(device=device) + 10.0  # no natural zeros
    max_width = 0.3
    size = x.shape[axis]
    torch.manual_seed(0)
    y = build_view([{"name": name, "p": 1.0, "max_width": max_width, "n_masks": 1, "fill": "zero"}])(x)
    masked = (y == 0).all(dim=(1, 2)) if axis == -1 else (y == 0).all(dim=(1, 3))  # (B, size)
    # untouched everywhere else; masked positions are whole rows/columns
    assert torch.equal(y[y != 0], x[y != 0])
    assert torch.equal((y == 0).any(dim=(1, 2) if axis == -1 else (1, 3)), masked)
    widths = []
    for row in masked.cpu():
        idx = torch.nonzero(row).flatten()
        if idx.numel():
            assert idx[-1] - idx[0] + 1 == idx.numel()  # contiguous
        widths.append(idx.numel())
    assert max(widths) <= int(max_width * size)
    assert max(widths) > 0  # over 16 samples at least one non-empty band
    assert len(set(widths)) > 1  # per-sample random widths


def test_mask_fill_mean_uses_sample_mean():
    x = _x() + 10.0
    torch.manual_seed(0)
    y = build_view([{"name": "time_mask", "p": 1.0, "max_width": 0.5, "n_masks": 1, "fill": "mean"}])(x)
    changed = y != x
    mean = x.mean(dim=(2, 3), keepdim=True).expand_as(x)
    assert changed.any()
    torch.testing.assert_close(y[changed], mean[changed])


def test_brightness_is_a_per_sample_offset_within_max_delta():
    x = _x()
    torch.manual_seed(0)
    y = build_view([{"name": "brightness", "p": 1.0, "max_delta": 0.1}])(x)
    d = y - x
    per_sample = d.amax(dim=(1, 2, 3))
    torch.testing.assert_close(d, per_sample.view(-1, 1, 1, 1).expand_as(d), atol=1e-6, rtol=0)
    assert per_sample.abs().max() <= 0.1 + 1e-6


def test_contrast_keeps_per_sample_channel_mean():
    x = _x()
    torch.manual_seed(0)
    y = build_view([{"name": "contrast", "p": 1.0, "range": [0.5, 0.6]}])(x)
    torch.testing.assert_close(y.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=1e-5, rtol=0)
    assert (y.std(dim=(2, 3)) < 0.61 * x.std(dim=(2, 3))).all()


def test_time_shift_is_a_roll():
    x = _x()
    torch.manual_seed(0)
    y = build_view([{"name": "time_shift", "p": 1.0, "max_fraction": 0.3}])(x)
    for i in range(B):
        assert any(torch.equal(y[i], torch.roll(x[i], s, dims=-1)) for s in range(-6, 7))


def test_resized_crop_full_scale_ratio_one_is_identity_shape():
    x = _x()
    y = build_view([{"name": "resized_crop", "p": 1.0, "scale": [1.0, 1.0], "ratio": [1.0, 1.0]}])(x)
    torch.testing.assert_close(y, x, atol=1e-4, rtol=0)
    # another (F, T) through the same module: a second cached kornia op, same output size
    v = build_view([{"name": "resized_crop", "p": 1.0, "scale": [0.6, 1.0], "ratio": [0.8, 1.25]}])
    for shape in ((4, 1, 33, 45), (4, 1, 9, 60)):
        assert v(torch.randn(shape)).shape == shape


@pytest.mark.parametrize(
    "ops,match",
    [
        ([{"name": "colour"}], "unknown name 'colour'"),
        ([{"name": "brightness", "p": 1, "max_delta": 0.1, "delta": 0.1}], "brightness.*unknown key.*delta"),
        ([{"name": "brightness", "p": 1, "max_delta": -1}], "brightness.*max_delta"),
        ([{"name": "brightness", "p": True, "max_delta": 0.1}], "brightness.*'p'"),
        ([{"name": "contrast", "p": 1, "range": [1.2, 0.8]}], "contrast.*range"),
        ([{"name": "gaussian_blur", "p": 1, "kernel_size": 4, "sigma": [0.1, 1]}], "gaussian_blur.*kernel_size"),
        ([{"name": "time_mask", "p": 1, "max_width": 1.5, "n_masks": 1, "fill": "zero"}], "time_mask.*max_width"),
        ([{"name": "freq_mask", "p": 1, "max_width": 0.1, "n_masks": 0, "fill": "zero"}], "freq_mask.*n_masks"),
        ([{"name": "time_mask", "p": 1, "max_width": 0.1, "n_masks": 1, "fill": "nan"}], "time_mask.*fill"),
        ([{"name": "time_mask", "p": 1, "max_width": 0.1, "n_masks": 1}], "time_mask.*'fill' is required"),
        ([{"name": "resized_crop", "p": 1, "scale": [0.5, 1.5], "ratio": [1, 1]}], "resized_crop.*scale"),
        ([{"name": "noise", "p": 2, "std": 0.1}], "noise.*'p'"),
        ([{"p": 1.0}], "'name'"),
    ],
)
def test_bad_specs_raise_naming_op_and_key(ops, match):
    with pytest.raises(ValueError, match=match):
        build_view(ops)


def test_wrong_input_rank_raises():
    with pytest.raises(ValueError, match="B, C, F, T"):
        TwoViews(VIEW_A, VIEW_B)(torch.randn(3, 17, 23))


def test_views_move_with_to() -> None:
    """Regression: an op method once shadowed nn.Module._apply, so .to(device) crashed."""
    views = TwoViews(VIEW_A, VIEW_B).to("cpu").to(torch.float32)
    a, b = views(torch.randn(4, 1, 17, 45))
    assert a.shape == b.shape == (4, 1, 17, 45)


def test_mix_blends_with_another_sample_in_log_domain() -> None:
    torch.manual_seed(0)
    x = torch.stack([torch.full((1, 4, 5), 0.0), torch.full((1, 4, 5), 5.0)])
    y = build_view([{"name": "mix", "p": 1.0, "alpha": 0.5}])(x)
    # a log-domain blend lies between the sample and its partner, closer to the sample
    assert torch.all(y[0] >= x[0]) and torch.all(y[0] <= x[1])
    assert torch.all(y[1] <= x[1]) and torch.all(y[1] >= x[0])
    assert not torch.equal(y, x)
    assert torch.equal(build_view([{"name": "mix", "p": 0.0, "alpha": 0.5}])(x), x)
    with pytest.raises(ValueError, match="alpha"):
        build_view([{"name": "mix", "p": 1.0, "alpha": 1.5}])
