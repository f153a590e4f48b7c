"""SimCLR: NT-Xent against a hand computation, gradients, the shared module interface."""

from __future__ import annotations

import math

import pytest
import torch

from tests.unit.ssl_checks import three_steps_stay_finite
from trls_core.augment_raw import RawTwoViews
from trls_core.models import TimeConvEncoder
from trls_core.ssl.simclr import SimCLR, nt_xent_loss


def test_nt_xent_matches_hand_computation():
    # z_a normalises to e1, e2; z_b to u = (1, 1)/sqrt2, v = (-1, 1)/sqrt2.
    # Stacked z = [e1, e2, u, v]; positives 0<->2, 1<->3. Cosines:
    # (e1,e2)=0, (e1,u)=c, (e1,v)=-c, (e2,u)=c, (e2,v)=c, (u,v)=0, with c = 1/sqrt2.
    z_a = torch.tensor([[3.0, 0.0], [0.0, 2.0]])
    z_b = torch.tensor([[1.0, 1.0], [-1.0, 1.0]])
    temperature = 0.5
    s = (1.0 / math.sqrt(2.0)) / temperature
    # anchor: -logit(positive) + log(sum over the 3 other samples of exp(logit))
    l0 = -s + math.log(math.exp(0.0) + math.exp(s) + math.exp(-s))  # e1: e2=0, u=s (pos), v=-s
    l1 = -s + math.log(math.exp(0.0) + math.exp(s) + math.exp(s))  # e2: e1=0, u=s, v=s (pos)
    l2 = -s + math.log(math.exp(s) + math.exp(s) + math.exp(0.0))  # u: e1=s (pos), e2=s, v=0
    l3 = -s + math.log(math.exp(-s) + math.exp(s) + math.exp(0.0))  # v: e1=-s, e2=s (pos), u=0
    expected = (l0 + l1 + l2 + l3) / 4.0
    assert nt_xent_loss(z_a, z_b, temperature).item() == pytest.approx(expected, rel=1e-6)


def test_nt_xent_orthogonal_pairs_by_hand():
    e = torch.eye(2)
    # z = [e1, e2, e1, e2]: each anchor sees its positive at 1/T and two negatives at 0
    t = 0.25
    expected = -1.0 / t + math.log(math.exp(1.0 / t) + 2.0)
    assert nt_xent_loss(e, e.clone(), t).item() == pytest.approx(expected, rel=1e-6)


def test_nt_xent_symmetric_scale_free_and_lower_when_aligned():
    torch.manual_seed(0)
    z = torch.randn(16, 8)
    aligned = z + 0.05 * torch.randn_like(z)
    shuffled = z[torch.randperm(16)]
    la = nt_xent_loss(z, aligned, 0.2)
    assert la.item() == pytest.approx(nt_xent_loss(aligned, z, 0.2).item(), rel=1e-6)
    assert la.item() == pytest.approx(nt_xent_loss(3.0 * z, 0.5 * aligned, 0.2).item(), rel=1e-5)
    assert la.item() < nt_xent_loss(z, shuffled, 0.2).item() - 1.0


def test_nt_xent_gradient_reaches_both_views():
    z_a = torch.randn(4, 3, requires_grad=True)
    z_b = torch.randn(4, 3, requires_grad=True)
    nt_xent_loss(z_a, z_b, 0.5).backward()
    assert z_a.grad.abs().sum() > 0 and z_b.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "z_a, z_b, t, match",
    [
        (torch.randn(4, 3), torch.randn(4, 2), 0.5, "same shape"),
        (torch.randn(4), torch.randn(4), 0.5, "same shape"),
        (torch.randn(1, 3), torch.randn(1, 3), 0.5, "at least 2"),
        (torch.randn(4, 3), torch.randn(4, 3), 0.0, "temperature"),
        (torch.randn(4, 3), torch.randn(4, 3), float("nan"), "temperature"),
    ],
)
def test_nt_xent_rejects_bad_input(z_a, z_b, t, match):
    with pytest.raises(ValueError, match=match):
        nt_xent_loss(z_a, z_b, t)


def _tiny_simclr() -> SimCLR:
    torch.manual_seed(0)
    return SimCLR(TimeConvEncoder(1, width=4, depth=2, rep_dim=8), rep_dim=8, proj_hidden=16, proj_dim=6)


def test_simclr_loss_shape_and_gradients_reach_encoder():
    m = _tiny_simclr()
    x = torch.randn(6, 1, 40)
    loss = m(x + 0.1 * torch.randn_like(x), x)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert m.encoder.body[0].weight.grad.abs().sum() > 0
    assert m.projector.net[0].weight.grad.abs().sum() > 0


def test_simclr_interface():
    m = _tiny_simclr()
    assert m.encoder is m.backbone and m.encoder.out_dim == 8
    assert m.encoder(torch.randn(3, 1, 40)).shape == (3, 8)
    assert {id(p) for p in m.online_parameters()} == {id(p) for p in m.parameters()}
    before = {k: v.clone() for k, v in m.state_dict().items()}
    assert m.update_target(0.5) is None
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    with pytest.raises(ValueError, match="same shape"):
        m(torch.randn(4, 1, 40), torch.randn(4, 1, 41))
    with pytest.raises(ValueError, match="temperature"):
        SimCLR(TimeConvEncoder(1, width=4), rep_dim=128, temperature=-1.0)


def test_simclr_lower_for_aligned_than_shuffled_views():
    m = _tiny_simclr().eval()
    torch.manual_seed(1)
    x = torch.randn(16, 1, 40)
    with torch.no_grad():
        aligned = m(x, x + 0.01 * torch.randn_like(x))
        shuffled = m(x, x[torch.randperm(16)])
    assert aligned.item() < shuffled.item()


def test_simclr_deterministic_under_seed():
    x = torch.randn(8, 1, 40)
    aug = RawTwoViews({"scale_sigma": 0.5}, {"max_segments": 3, "jitter_sigma": 0.1})
    losses = []
    for _ in range(2):
        m = _tiny_simclr()
        torch.manual_seed(5)
        losses.append(m(*aug(x)).item())
    assert losses[0] == losses[1]


def test_simclr_three_optimisation_steps_stay_finite():
    torch.manual_seed(2)
    three_steps_stay_finite(
        _tiny_simclr(),
        RawTwoViews({"scale_sigma": 0.5}, {"max_segments": 3, "jitter_sigma": 0.1}),
        torch.randn(16, 1, 40),
    )
