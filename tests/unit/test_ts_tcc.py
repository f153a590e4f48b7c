"""TS-TCC: encoder shapes, temporal-contrast InfoNCE by hand, cross-view wiring, interface."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import trls_core.ssl.ts_tcc as ts_tcc_mod
from tests.unit.ssl_checks import three_steps_stay_finite
from trls_core.augment_raw import RawTwoViews
from trls_core.models import TimeConvEncoder
from trls_core.models.tstcc import TSTCCEncoder
from trls_core.ssl.ts_tcc import TSTCC, ContextTransformer, temporal_contrast_loss

# ------------------------------------------------------------------ encoder


def test_encoder_gives_the_papers_24_steps_on_178_sample_windows():
    enc = TSTCCEncoder(1)  # TS-TCC Epilepsy config: kernel 8, stride 1, 128 channels
    assert enc.features(torch.randn(2, 1, 178)).shape == (2, 128, 24)
    assert enc(torch.randn(2, 1, 178)).shape == (2, 128) and enc.out_dim == 128 == enc.feat_dim


@pytest.mark.parametrize("length, kernel, stride", [(178, 8, 1), (1, 8, 1), (37, 8, 1), (300, 25, 3), (31, 4, 2)])
def test_encoder_feature_len_matches_features(length, kernel, stride):
    enc = TSTCCEncoder(2, width=4, rep_dim=6, kernel_size=kernel, stride=stride)
    feats = enc.features(torch.randn(2, 2, length))
    assert feats.shape == (2, 6, enc.feature_len(length))
    assert enc(torch.randn(2, 2, length)).shape == (2, 6)


def test_encoder_without_linear_head_returns_the_pooled_features():
    enc = TSTCCEncoder(1, width=4, rep_dim=6, linear_head=False).eval()
    x = torch.randn(3, 1, 50)
    h = enc.features(x)
    assert enc.out_dim == 12 and not any(n.startswith("head.") for n, _ in enc.named_parameters())
    assert torch.equal(enc(x), torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1))


def test_encoder_rejects_bad_input_and_arguments():
    enc = TSTCCEncoder(2, width=4, rep_dim=6)
    with pytest.raises(ValueError, match=r"\(B, 2, L\)"):
        enc(torch.randn(2, 40))
    with pytest.raises(ValueError, match=r"\(B, 2, L\)"):
        enc.features(torch.randn(2, 1, 40))
    with pytest.raises(ValueError, match="width"):
        TSTCCEncoder(1, width=0)
    with pytest.raises(ValueError, match="dropout"):
        TSTCCEncoder(1, dropout=1.0)


# ------------------------------------------------------------------ loss


def test_temporal_contrast_loss_matches_hand_computation():
    # K = 2 steps, B = 2 samples, D = 2. logits[k, i, j] = pred[k, i] . future[k, j];
    # prediction i must pick future i among the B futures (softmax over j).
    pred = torch.tensor([[[1.0, 0.0], [0.0, 2.0]], [[0.0, 1.0], [1.0, 0.0]]])
    future = torch.tensor([[[1.0, 1.0], [0.0, 1.0]], [[0.0, 3.0], [1.0, 0.0]]])
    # step 1: logits [[1, 0], [2, 2]]; step 2: logits [[3, 0], [0, 1]]
    l_10 = -1.0 + math.log(math.exp(1.0) + math.exp(0.0))
    l_11 = -2.0 + math.log(math.exp(2.0) + math.exp(2.0))
    l_20 = -3.0 + math.log(math.exp(3.0) + math.exp(0.0))
    l_21 = -1.0 + math.log(math.exp(0.0) + math.exp(1.0))
    expected = (l_10 + l_11 + l_20 + l_21) / 4.0
    assert temporal_contrast_loss(pred, future).item() == pytest.approx(expected, rel=1e-6)


def test_temporal_contrast_loss_lower_for_right_futures_and_rejects_bad_shapes():
    torch.manual_seed(0)
    future = F.normalize(torch.randn(3, 16, 8), dim=-1)
    right = temporal_contrast_loss(4.0 * future, future)
    wrong = temporal_contrast_loss(4.0 * future[:, torch.randperm(16)], future)
    assert right.item() < wrong.item() - 1.0
    with pytest.raises(ValueError, match="same shape"):
        temporal_contrast_loss(torch.randn(2, 4, 3), torch.randn(2, 4, 2))
    with pytest.raises(ValueError, match="at least 2"):
        temporal_contrast_loss(torch.randn(2, 1, 3), torch.randn(2, 1, 3))


def test_context_transformer_summarises_any_length():
    ctx = ContextTransformer(6, hidden=8, heads=2, depth=1, mlp_dim=8)
    assert ctx(torch.randn(3, 1, 6)).shape == (3, 8)
    assert ctx(torch.randn(3, 7, 6)).shape == (3, 8)
    with pytest.raises(ValueError, match="divisible"):
        ContextTransformer(6, hidden=10, heads=4)


# ------------------------------------------------------------------ module


def _tiny_tstcc(**kw) -> TSTCC:
    torch.manual_seed(0)
    enc = TSTCCEncoder(1, width=4, rep_dim=8, dropout=0.1)
    args = dict(proj_dim=6, timesteps=3, hidden=8, heads=2, mlp_dim=8)
    args.update(kw)
    return TSTCC(enc, **args)


def test_loss_is_finite_scalar_and_gradients_reach_every_part():
    m = _tiny_tstcc()
    x = torch.randn(6, 1, 64)
    loss = m(x, x + 0.1 * torch.randn_like(x))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    for name, p in m.named_parameters():
        if name.startswith("backbone.head."):  # the downstream head: not in the TS-TCC losses
            assert p.grad is None, name
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_forward_combines_the_three_terms_with_the_lambdas():
    m = _tiny_tstcc(lambda_tc=0.5, lambda_cc=2.0).eval()
    a, b = torch.randn(5, 1, 64), torch.randn(5, 1, 64)
    torch.manual_seed(3)
    parts = m.losses(a, b)
    torch.manual_seed(3)
    total = m(a, b)
    assert set(parts) == {"tc_s", "tc_w", "cc"}
    expected = 0.5 * (parts["tc_s"] + parts["tc_w"]) + 2.0 * parts["cc"]
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    torch.manual_seed(3)
    swapped = m.losses(b, a)  # same t: the two directions trade places
    assert swapped["tc_s"].item() == pytest.approx(parts["tc_w"].item(), rel=1e-5)
    assert swapped["cc"].item() == pytest.approx(parts["cc"].item(), rel=1e-5)


def test_temporal_contrasting_is_cross_view(monkeypatch):
    m = _tiny_tstcc(timesteps=2).eval()
    weak, strong = torch.randn(4, 1, 64), torch.randn(4, 1, 64)
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    real = ts_tcc_mod.temporal_contrast_loss

    def spy(pred: torch.Tensor, future: torch.Tensor) -> torch.Tensor:
        calls.append((pred.detach(), future.detach()))
        return real(pred, future)

    monkeypatch.setattr(ts_tcc_mod, "temporal_contrast_loss", spy)
    torch.manual_seed(11)
    t = int(torch.randint(m.encoder.feature_len(64) - 2, (1,)).item())  # the t the model will draw
    torch.manual_seed(11)
    with torch.no_grad():
        m.losses(weak, strong)
        f_w = F.normalize(m.encoder.features(weak), dim=1)[:, :, t + 1 : t + 3].permute(2, 0, 1)
        f_s = F.normalize(m.encoder.features(strong), dim=1)[:, :, t + 1 : t + 3].permute(2, 0, 1)
        c_s = m.context(F.normalize(m.encoder.features(strong), dim=1).transpose(1, 2)[:, : t + 1])
    assert len(calls) == 2
    (pred_w, fut_for_w), (pred_s, fut_for_s) = calls
    assert torch.allclose(fut_for_w, f_s, atol=1e-6)  # weak context predicts the strong future
    assert torch.allclose(fut_for_s, f_w, atol=1e-6)  # strong context predicts the weak future
    assert torch.allclose(pred_s, m.predictors(c_s).view(4, 2, -1).transpose(0, 1), atol=1e-5)


def test_loss_lower_for_aligned_than_shuffled_views():
    m = _tiny_tstcc().eval()
    torch.manual_seed(1)
    x = torch.randn(16, 1, 64)
    with torch.no_grad():
        torch.manual_seed(4)
        aligned = m(x, x + 0.01 * torch.randn_like(x))
        torch.manual_seed(4)
        shuffled = m(x, x[torch.randperm(16)])
    assert aligned.item() < shuffled.item()


def test_interface_matches_byol():
    m = _tiny_tstcc()
    assert isinstance(m.encoder, TSTCCEncoder) and m.encoder.out_dim == 8
    assert m.encoder(torch.randn(3, 1, 64)).shape == (3, 8)
    assert {id(p) for p in m.online_parameters()} == {id(p) for p in m.parameters()}
    before = {k: v.clone() for k, v in m.state_dict().items()}
    assert m.update_target(0.9) is None
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_timesteps_as_a_fraction_and_the_errors():
    m = TSTCC(TSTCCEncoder(1, width=4, rep_dim=8), timesteps=0.4, hidden=8, heads=2, window=178)
    assert m.timesteps == int(0.4 * 24)
    assert m.predictors.out_features == m.timesteps * 8
    with pytest.raises(ValueError, match="window"):
        TSTCC(TSTCCEncoder(1, width=4, rep_dim=8), timesteps=0.4, hidden=8, heads=2)
    with pytest.raises(ValueError, match="timesteps"):
        TSTCC(TSTCCEncoder(1, width=4, rep_dim=8), timesteps=0, hidden=8, heads=2)
    with pytest.raises(ValueError, match="features"):
        TSTCC(TimeConvEncoder(1, width=4), hidden=8, heads=2)
    with pytest.raises(ValueError, match="lambda_cc"):
        _tiny_tstcc(lambda_cc=-1.0)
    short = _tiny_tstcc(timesteps=6)  # 16 samples -> T' = 4 steps
    with pytest.raises(ValueError, match="T'=4"):
        short(torch.randn(4, 1, 16), torch.randn(4, 1, 16))
    with pytest.raises(ValueError, match="same shape"):
        short(torch.randn(4, 1, 64), torch.randn(4, 1, 60))


def test_deterministic_under_seed():
    x = torch.randn(8, 1, 64)
    aug = RawTwoViews({"scale_sigma": 0.5}, {"max_segments": 4, "jitter_sigma": 0.2})
    losses = []
    for _ in range(2):
        m = _tiny_tstcc()  # train mode: dropout, random t and views all from the seed
        torch.manual_seed(5)
        losses.append(m(*aug(x)).item())
    assert losses[0] == losses[1]


def test_three_optimisation_steps_stay_finite():
    torch.manual_seed(2)
    three_steps_stay_finite(
        _tiny_tstcc(),
        RawTwoViews({"scale_sigma": 0.5}, {"max_segments": 4, "jitter_sigma": 0.2}),
        torch.randn(16, 1, 64),
    )
