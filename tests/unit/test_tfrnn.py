"""TFRNN: shapes, the batched-call contract, gradients, ablation variants."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trls_core.models import TFRNN, build_encoder


def _n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("shape", [(2, 1, 17, 45), (3, 1, 33, 23), (2, 2, 5, 7), (2, 1, 1, 9), (2, 1, 9, 1)])
def test_output_shape_for_various_inputs(shape):
    m = TFRNN(shape[1], dim=8, depth=3, rep_dim=12)
    out = m(torch.randn(*shape))
    assert out.shape == (shape[0], 12)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rnn": "lstm"},
        {"bidirectional": False},
        {"rnn": "lstm", "bidirectional": False},
        {"depth": 1},
        {"depth": 4},
        {"multiscale": False},
        {"rnn_hidden": 4},
        {"stem_stride": (1, 2)},
        {"stem_kernel": 5, "dropout": 0.1},
    ],
)
def test_variants(kwargs):
    m = TFRNN(1, **{"dim": 8, "depth": 2, "rep_dim": 6, **kwargs})
    assert m(torch.randn(2, 1, 17, 45)).shape == (2, 6)


def test_scales_are_coarser_and_one_per_block():
    m = TFRNN(1, dim=8, depth=3, rep_dim=6)
    shapes = []
    for blk in m.blocks:
        blk.register_forward_hook(lambda mod, inp, out: shapes.append(tuple(out.shape)))
    scales = m.forward_scales(torch.randn(2, 1, 17, 45))
    assert len(scales) == 3 and all(s.shape == (2, 16) for s in scales)
    # (B, F, T, D): 17x45 -> 9x23 -> 5x12 (ceil_mode pooling)
    assert shapes == [(2, 17, 45, 8), (2, 9, 23, 8), (2, 5, 12, 8)]


def test_rnns_are_one_batched_call_over_frames_and_bins():
    b, f, t, d = 3, 17, 45, 8
    m = TFRNN(1, dim=d, depth=1, rep_dim=4)
    seen: dict[str, list[tuple[int, ...]]] = {"freq": [], "time": []}
    m.blocks[0].freq.rnn.register_forward_hook(lambda mod, inp, out: seen["freq"].append(tuple(inp[0].shape)))
    m.blocks[0].time.rnn.register_forward_hook(lambda mod, inp, out: seen["time"].append(tuple(inp[0].shape)))
    m(torch.randn(b, 1, f, t))
    assert seen["freq"] == [(b * t, f, d)]  # one call, every time frame a sequence over frequency
    assert seen["time"] == [(b * f, t, d)]  # one call, every frequency bin a sequence over time


def test_frequency_pass_runs_along_frequency():
    """Changing one (f, t) cell must reach other frequencies of the same frame after the freq RNN."""
    torch.manual_seed(0)
    m = TFRNN(1, dim=4, depth=1, rep_dim=4).eval()
    captured = []
    m.blocks[0].freq.register_forward_hook(lambda mod, inp, out: captured.append(out.detach()))
    x = torch.randn(1, 1, 9, 6)
    m(x)
    x2 = x.clone()
    x2[0, 0, 0, 2] += 5.0
    m(x2)
    a, b = captured  # (B*T, F, D): row = time frame
    diff = (a - b).abs().sum(dim=-1)  # (T, F)
    assert diff[2, 8] > 0  # far frequency of the same frame changed (stem reaches only +-1)
    assert diff[5, 8] == 0  # other frames untouched before the time pass


def test_gradient_reaches_the_stem():
    m = TFRNN(1, dim=8, depth=2, rep_dim=6)
    m(torch.randn(4, 1, 17, 45)).pow(2).sum().backward()
    g = m.stem[0].weight.grad
    assert g is not None and g.abs().sum() > 0


def test_multiscale_changes_head_size():
    multi = TFRNN(1, dim=8, depth=3, rep_dim=6, multiscale=True)
    single = TFRNN(1, dim=8, depth=3, rep_dim=6, multiscale=False)
    assert _n_params(multi) - _n_params(single) == 2 * 8 * 2 * 6  # two extra 2D scale vectors into the head


def test_bad_arguments_and_input_are_rejected():
    with pytest.raises(ValueError, match="rnn"):
        TFRNN(1, rnn="transformer")
    with pytest.raises(ValueError, match="stem_kernel"):
        TFRNN(1, stem_kernel=4)
    with pytest.raises(ValueError, match=r"\(B, 1, F, T\)"):
        TFRNN(1, dim=4, depth=1)(torch.randn(2, 3, 8, 8))


def test_build_encoder_factory():
    enc = build_encoder("tfrnn", in_channels=1, dim=4, depth=1, rep_dim=5)
    assert isinstance(enc, TFRNN) and enc.out_dim == 5
    with pytest.raises(ValueError, match="unknown encoder"):
        build_encoder("resnet", in_channels=1)
    with pytest.raises(ValueError, match="bad arguments"):
        build_encoder("tfrnn", in_channels=1, nonsense=3)


def test_freq_bands_keep_frequency_location() -> None:
    """freq_bands > 1 pools F into bands: a feature's frequency position changes the vector."""
    torch.manual_seed(0)
    m = TFRNN(1, dim=8, depth=2, rep_dim=16, rnn_hidden=4, freq_bands=4).eval()
    assert [s.shape[1] for s in m.forward_scales(torch.randn(2, 1, 17, 9))] == [2 * 8 * 4] * 2
    low, high = torch.zeros(1, 1, 16, 9), torch.zeros(1, 1, 16, 9)
    low[:, :, 1], high[:, :, 14] = 3.0, 3.0
    with torch.no_grad():
        a = m.forward_scales(low)[0].view(2, 8, 4)[0]
        b = m.forward_scales(high)[0].view(2, 8, 4)[0]
    # the low-band and high-band inputs peak in different bands
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="freq_bands"):
        TFRNN(1, freq_bands=0)
