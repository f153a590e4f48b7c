"""TS2Vec: losses against hand-computed values, encoder shapes and masking, crops, interface."""

from __future__ import annotations

import math

import pytest
import torch

from trls_core.models.ts2vec import TS2VecEncoder
from trls_core.ssl.ts2vec import (
    TS2Vec,
    hierarchical_contrastive_loss,
    instance_contrastive_loss,
    sample_crop,
    take_per_row,
    temporal_contrastive_loss,
)

# --------------------------------------------------------------------------
# Reference by hand: plain Python lists and math, no torch.
# --------------------------------------------------------------------------


def _dot(u: list[float], v: list[float]) -> float:
    return sum(a * b for a, b in zip(u, v))


def _contrast_ref(rows: list[list[float]], n: int) -> float:
    """rows 0..n-1 (view 1) have their positives at i + n (view 2) and vice versa.

    Per anchor: -sim(pos) + log(sum over all OTHER rows of exp(sim)); mean over the 2n anchors.
    """
    sim = [[_dot(u, v) for v in rows] for u in rows]
    losses = []
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        denom = sum(math.exp(sim[i][j]) for j in range(2 * n) if j != i)
        losses.append(-sim[i][pos] + math.log(denom))
    return sum(losses) / len(losses)


def _instance_ref(z1: list, z2: list) -> float:
    b, t = len(z1), len(z1[0])
    if b == 1:
        return 0.0
    per_t = [_contrast_ref([z1[i][s] for i in range(b)] + [z2[i][s] for i in range(b)], b) for s in range(t)]
    return sum(per_t) / t


def _temporal_ref(z1: list, z2: list) -> float:
    b, t = len(z1), len(z1[0])
    if t == 1:
        return 0.0
    per_b = [_contrast_ref(list(z1[i]) + list(z2[i]), t) for i in range(b)]
    return sum(per_b) / b


def _pool2_ref(z: list) -> list:
    """max over pairs of time steps (floor: an odd last step is dropped)."""
    return [[[max(a, c) for a, c in zip(zi[2 * s], zi[2 * s + 1])] for s in range(len(zi) // 2)] for zi in z]


Z1 = [[[1.0, 0.0], [0.5, -1.0]], [[0.0, 1.0], [2.0, 0.5]]]  # B=2, T=2, D=2
Z2 = [[[1.0, 1.0], [0.0, -0.5]], [[0.0, 2.0], [1.5, 1.0]]]


def _t(z: list) -> torch.Tensor:
    return torch.tensor(z, dtype=torch.float64)


# --------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------


def test_instance_loss_literal_similarity_matrix():
    # B=2, T=1: rows r0=(1,0), r1=(0,1) from view 1; r2=(1,1), r3=(0,2) from view 2.
    z1 = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    z2 = torch.tensor([[[1.0, 1.0]], [[0.0, 2.0]]])
    # dot-product similarity matrix (rows r0..r3):
    #   r0: [1, 0, 1, 0]
    #   r1: [0, 1, 1, 2]
    #   r2: [1, 1, 2, 2]
    #   r3: [0, 2, 2, 4]
    # -log softmax over the 3 other rows, at the positive (r0<->r2, r1<->r3):
    e = math.e
    l0 = -1 + math.log(math.exp(0) + math.exp(1) + math.exp(0))  # others 0, 1, 0; pos r2 = 1
    l1 = -2 + math.log(math.exp(0) + math.exp(1) + math.exp(2))  # others 0, 1, 2; pos r3 = 2
    l2 = -1 + math.log(math.exp(1) + math.exp(1) + math.exp(2))  # others 1, 1, 2; pos r0 = 1
    l3 = -2 + math.log(math.exp(0) + math.exp(2) + math.exp(2))  # others 0, 2, 2; pos r1 = 2
    expected = ((l0 + l1) / 2 + (l2 + l3) / 2) / 2
    assert l0 == pytest.approx(-1 + math.log(2 + e))
    assert instance_contrastive_loss(z1, z2).item() == pytest.approx(expected, rel=1e-6)
    # Temporal loss on B=1, T=2 with the same four rows in the same order (view 1
    # steps, then view 2 steps) has the same matrix, hence the same value.
    assert temporal_contrastive_loss(z1.transpose(0, 1), z2.transpose(0, 1)).item() == pytest.approx(expected, rel=1e-6)


def test_instance_loss_b2_t2_by_hand():
    got = instance_contrastive_loss(_t(Z1), _t(Z2)).item()
    assert got == pytest.approx(_instance_ref(Z1, Z2), rel=1e-10)


def test_temporal_loss_b2_t2_by_hand():
    got = temporal_contrastive_loss(_t(Z1), _t(Z2)).item()
    assert got == pytest.approx(_temporal_ref(Z1, Z2), rel=1e-10)


def test_losses_degenerate_cases_are_zero():
    z = torch.randn(1, 4, 3)
    assert instance_contrastive_loss(z, z + 1).item() == 0.0  # B = 1: no negatives
    z = torch.randn(3, 1, 3)
    assert temporal_contrastive_loss(z, z + 1).item() == 0.0  # T = 1
    with pytest.raises(ValueError, match="B, T, D"):
        instance_contrastive_loss(torch.randn(2, 3, 4), torch.randn(2, 2, 4))


@pytest.mark.parametrize("alpha", [0.5, 0.3])
def test_hierarchical_loss_is_mean_over_levels_t2(alpha):
    # T=2: level 0 has both terms; max-pool to T=1; level 1 has the instance term only; 2 levels.
    p1, p2 = _pool2_ref(Z1), _pool2_ref(Z2)
    assert p1 == [[[1.0, 0.0]], [[2.0, 1.0]]]  # max over the two time steps, per coordinate
    level0 = alpha * _instance_ref(Z1, Z2) + (1 - alpha) * _temporal_ref(Z1, Z2)
    level1 = alpha * _instance_ref(p1, p2)
    got = hierarchical_contrastive_loss(_t(Z1), _t(Z2), alpha=alpha).item()
    assert got == pytest.approx((level0 + level1) / 2, rel=1e-10)
    # temporal_unit=1 drops the temporal term of level 0, still 2 levels
    got = hierarchical_contrastive_loss(_t(Z1), _t(Z2), alpha=alpha, temporal_unit=1).item()
    assert got == pytest.approx((alpha * _instance_ref(Z1, Z2) + level1) / 2, rel=1e-10)


def test_hierarchical_loss_odd_length_and_alpha_extremes():
    z1 = [[[0.1 * (i + j + k) for k in range(2)] for j in range(3)] for i in range(2)]
    z2 = [[[0.2 * (i - j) + 0.1 * k for k in range(2)] for j in range(3)] for i in range(2)]
    p1, p2 = _pool2_ref(z1), _pool2_ref(z2)  # T=3 -> T=1 (last step dropped)
    expected = (0.5 * _instance_ref(z1, z2) + 0.5 * _temporal_ref(z1, z2) + 0.5 * _instance_ref(p1, p2)) / 2
    assert hierarchical_contrastive_loss(_t(z1), _t(z2)).item() == pytest.approx(expected, rel=1e-10)
    # alpha = 0: temporal only, still divided by the number of levels (2)
    got = hierarchical_contrastive_loss(_t(z1), _t(z2), alpha=0.0).item()
    assert got == pytest.approx(_temporal_ref(z1, z2) / 2, rel=1e-10)
    # T = 1: one level, instance only
    z = _t(z1)[:, :1]
    assert hierarchical_contrastive_loss(z, z * 2, alpha=1.0).item() == pytest.approx(
        instance_contrastive_loss(z, z * 2).item()
    )


# --------------------------------------------------------------------------
# Encoder
# --------------------------------------------------------------------------


def _enc(**kw) -> TS2VecEncoder:
    torch.manual_seed(0)
    args = dict(hidden=8, rep_dim=6, depth=2)
    args.update(kw)
    return TS2VecEncoder(3, **args)


def test_encoder_shapes_and_pooling():
    enc = _enc().eval()
    x = torch.randn(4, 3, 20)
    ts = enc.forward_timestamps(x)
    assert ts.shape == (4, 20, 6)
    z = enc(x)
    assert z.shape == (4, 6) and enc.out_dim == 6
    assert torch.allclose(z, ts.amax(dim=1))
    # even kernel: same-length output too
    assert _enc(kernel_size=2).forward_timestamps(x).shape == (4, 20, 6)
    assert TS2VecEncoder(2).out_dim == 128


def test_encoder_rejects_bad_shape():
    enc = _enc()
    with pytest.raises(ValueError, match=r"\(B, 3, L\)"):
        enc(torch.randn(4, 20))
    with pytest.raises(ValueError, match=r"\(B, 3, L\)"):
        enc(torch.randn(4, 2, 20))
    with pytest.raises(ValueError):
        TS2VecEncoder(0)


def test_masking_only_in_training_with_mask_true():
    enc = _enc(dropout=0.0)
    x = torch.randn(4, 3, 16)
    enc.eval()
    ref = enc.forward_timestamps(x)
    assert torch.equal(enc.forward_timestamps(x, mask=True), ref)  # eval: never masked
    enc.train()
    assert torch.equal(enc.forward_timestamps(x, mask=False), ref)
    assert torch.equal(enc(x), ref.amax(dim=1))  # forward never masks
    torch.manual_seed(1)
    masked = enc.forward_timestamps(x, mask=True)
    assert not torch.allclose(masked, ref)
    # mask_p = 1 zeroes every projected timestamp: the output no longer depends on x
    full = _enc(dropout=0.0, mask_p=1.0).train()
    assert torch.equal(full.forward_timestamps(x, mask=True), full.forward_timestamps(x * 3 + 1, mask=True))


def test_nan_timestamps_give_finite_output_and_input_untouched():
    enc = _enc().eval()
    x = torch.randn(2, 3, 12)
    x[0, 1, 5] = float("nan")
    x_copy = x.clone()
    out = enc.forward_timestamps(x)
    assert torch.isfinite(out).all()
    assert torch.equal(torch.isnan(x), torch.isnan(x_copy))


# --------------------------------------------------------------------------
# Crops
# --------------------------------------------------------------------------


def _positions(b: int, c: int, length: int) -> torch.Tensor:
    """x[i, ch, t] = 1000 i + 100 ch + t: every value names its position."""
    i = torch.arange(b).view(-1, 1, 1) * 1000
    ch = torch.arange(c).view(1, -1, 1) * 100
    t = torch.arange(length).view(1, 1, -1)
    return (i + ch + t).float()


@pytest.mark.parametrize("temporal_unit", [0, 2])
def test_crops_overlap_with_right_lengths(temporal_unit):
    b, c, length = 16, 2, 24
    x = _positions(b, c, length)
    model = TS2Vec(_enc(), temporal_unit=temporal_unit)
    torch.manual_seed(3)
    shifted = False
    for _ in range(40):
        v1, v2, crop = model.crop_views(x)
        cl = crop.crop_l
        assert 2 ** (temporal_unit + 1) <= cl <= length
        assert crop.crop_eleft <= crop.crop_left < crop.crop_right == crop.crop_left + cl <= crop.crop_eright <= length
        assert v1.shape == (b, c, crop.crop_right - crop.crop_eleft)
        assert v2.shape == (b, c, crop.crop_eright - crop.crop_left)
        assert torch.equal(v1[:, :, -cl:], v2[:, :, :cl])  # the overlap: same samples in both views
        start1 = crop.crop_offset + crop.crop_eleft
        assert (start1 >= 0).all() and (crop.crop_offset + crop.crop_eright <= length).all()
        t1 = v1 - _positions(b, c, 1)  # time index of each sample of view 1
        expected = start1.view(-1, 1, 1) + torch.arange(v1.shape[2]).view(1, 1, -1)
        assert torch.equal(t1, expected.float().expand_as(t1))  # contiguous, per-sample start
        shifted |= bool((crop.crop_offset != crop.crop_offset[0]).any())
    assert shifted  # per-sample offsets


def test_sample_crop_and_take_per_row():
    with pytest.raises(ValueError, match="at least"):
        sample_crop(3, 2, temporal_unit=1)
    x = _positions(2, 1, 10)
    got = take_per_row(x, torch.tensor([1, 4]), 3)
    assert torch.equal(got, torch.tensor([[[1.0, 2.0, 3.0]], [[1004.0, 1005.0, 1006.0]]]))


def test_max_train_length_crops_a_window():
    x = _positions(4, 1, 64)
    model = TS2Vec(_enc(), max_train_length=16)
    torch.manual_seed(0)
    for _ in range(10):
        v1, v2, _crop = model.crop_views(x)
        assert v1.shape[2] <= 16 and v2.shape[2] <= 16
        both = torch.cat([v1, v2], dim=2) - _positions(4, 1, 1)
        assert (both.amax(dim=2) - both.amin(dim=2) < 16).all()


# --------------------------------------------------------------------------
# Module: interface, gradients, determinism, optimisation
# --------------------------------------------------------------------------


def _model(**kw) -> TS2Vec:
    return TS2Vec(_enc(), **kw)


def test_interface_like_byol():
    m = _model()
    assert m.encoder is m.backbone and m.encoder.out_dim == 6
    assert {id(p) for p in m.online_parameters()} == {id(p) for p in m.encoder.parameters()}
    before = [p.clone() for p in m.parameters()]
    m.update_target(0.99)
    assert all(torch.equal(a, p) for a, p in zip(before, m.parameters()))
    with pytest.raises(ValueError):
        TS2Vec(_enc(), alpha=1.5)
    with pytest.raises(TypeError):
        TS2Vec(torch.nn.Linear(2, 2))


def test_gradients_reach_encoder():
    m = _model().train()
    torch.manual_seed(0)
    loss = m(torch.randn(6, 3, 24), None)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in m.encoder.parameters())
    assert m.encoder.input_fc.weight.grad.abs().sum() > 0
    assert m.encoder.blocks[0].conv1.conv.weight.grad.abs().sum() > 0


def test_deterministic_and_b_is_ignored():
    x = torch.randn(5, 3, 20)
    losses = []
    for other in (x, torch.randn_like(x)):
        m = _model().train()
        torch.manual_seed(7)
        losses.append(m(x, other).item())
    assert losses[0] == losses[1]
    m = _model().train()
    torch.manual_seed(7)
    assert m(x, x).item() == losses[0]  # same seed, same crops, masks and dropout
    enc = _enc().eval()
    assert torch.equal(enc(x), enc(x))


def test_few_optimisation_steps_stay_finite():
    m = _model().train()
    opt = torch.optim.AdamW(m.online_parameters(), lr=1e-3)
    torch.manual_seed(0)
    x = torch.randn(8, 3, 32)
    for _ in range(5):
        loss = m(x, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        m.update_target(0.99)
        assert torch.isfinite(loss)


def test_runs_in_the_shared_training_loop():
    from trls_core.train import pretrain_encoder

    m = _model()
    x = torch.randn(8, 3, 24)
    hist = pretrain_encoder(
        m, x, None, epochs=2, batch_size=4, lr=1e-3, weight_decay=0.0, tau_base=0.99, progress=False
    )
    assert len(hist) == 2 and all(math.isfinite(h["loss"]) for h in hist)
