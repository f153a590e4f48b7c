"""BYOL: EMA formula, gradient flow, loss values, tau schedule."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trls_core.models import TFRNN
from trls_core.ssl.byol import BYOL, byol_loss, cosine_tau, update_momentum


def test_update_momentum_matches_formula_exactly():
    online, ema = nn.Linear(2, 1), nn.Linear(2, 1)
    with torch.no_grad():
        online.weight.copy_(torch.tensor([[1.0, 2.0]]))
        online.bias.fill_(4.0)
        ema.weight.copy_(torch.tensor([[0.0, -2.0]]))
        ema.bias.fill_(0.0)
    update_momentum(online, ema, 0.75)
    # ema = 0.75*ema + 0.25*online, by hand
    assert torch.equal(ema.weight, torch.tensor([[0.25, -1.0]]))
    assert torch.equal(ema.bias, torch.tensor([1.0]))
    assert torch.equal(online.weight, torch.tensor([[1.0, 2.0]]))  # online untouched


def test_update_momentum_copies_buffers():
    online, ema = nn.BatchNorm1d(3), nn.BatchNorm1d(3)
    online.train()
    online(torch.randn(8, 3) * 5 + 2)
    update_momentum(online, ema, 0.9)
    assert torch.equal(ema.running_mean, online.running_mean)
    assert torch.equal(ema.num_batches_tracked, online.num_batches_tracked)


def test_update_momentum_rejects_bad_m():
    with pytest.raises(ValueError):
        update_momentum(nn.Linear(1, 1), nn.Linear(1, 1), 1.5)


def test_byol_loss_values():
    v = torch.randn(5, 8)
    assert byol_loss(v, v).item() == pytest.approx(0.0, abs=1e-6)
    assert byol_loss(v, 3 * v).item() == pytest.approx(0.0, abs=1e-6)  # scale-free
    assert byol_loss(v, -v).item() == pytest.approx(4.0, abs=1e-6)
    e0, e1 = torch.eye(2)[:1], torch.eye(2)[1:]
    assert byol_loss(e0, e1).item() == pytest.approx(2.0, abs=1e-6)  # orthogonal


def test_byol_loss_stops_gradient_into_target():
    p = torch.randn(4, 3, requires_grad=True)
    z = torch.randn(4, 3, requires_grad=True)
    byol_loss(p, z).backward()
    assert p.grad is not None and z.grad is None


def test_cosine_tau_endpoints_and_monotonic():
    assert cosine_tau(0, 100, 0.99, 1.0) == pytest.approx(0.99)
    assert cosine_tau(100, 100, 0.99, 1.0) == pytest.approx(1.0)
    assert cosine_tau(50, 100, 0.99, 1.0) == pytest.approx(0.995)
    assert cosine_tau(500, 100, 0.99, 1.0) == pytest.approx(1.0)
    vals = [cosine_tau(s, 100, 0.9, 1.0) for s in range(101)]
    assert all(b >= a for a, b in zip(vals, vals[1:])) and vals[1] > vals[0]


def _tiny_byol() -> BYOL:
    torch.manual_seed(0)
    return BYOL(TFRNN(1, dim=4, depth=1, rep_dim=8), rep_dim=8, proj_hidden=16, proj_dim=6, pred_hidden=16)


def test_target_gets_no_grad_online_does():
    m = _tiny_byol()
    x = torch.randn(4, 1, 9, 11)
    loss = m(x + 0.1 * torch.randn_like(x), x)
    assert loss.ndim == 0 and 0.0 <= loss.item() <= 4.0
    loss.backward()
    assert all(p.grad is None for p in m.target_encoder.parameters())
    assert all(p.grad is None for p in m.target_projector.parameters())
    assert m.online_encoder.stem[0].weight.grad.abs().sum() > 0
    assert m.predictor.net[0].weight.grad.abs().sum() > 0
    trainable = {id(p) for p in m.online_parameters()}
    assert not trainable & {id(p) for p in m.target_encoder.parameters()}
    assert m.encoder is m.online_encoder


def test_loss_is_symmetric_in_the_views():
    m = _tiny_byol().eval()
    a, b = torch.randn(3, 1, 9, 11), torch.randn(3, 1, 9, 11)
    assert m(a, b).item() == pytest.approx(m(b, a).item(), rel=1e-5)


def test_update_target_moves_target_towards_online():
    m = _tiny_byol()
    with torch.no_grad():
        for p in m.online_encoder.parameters():
            p.add_(1.0)
    before = [p.clone() for p in m.target_encoder.parameters()]
    m.update_target(0.5)
    for b0, t, o in zip(before, m.target_encoder.parameters(), m.online_encoder.parameters()):
        assert torch.allclose(t, 0.5 * b0 + 0.5 * o)
    m.update_target(1.0)  # tau = 1 freezes the target
    after = [p.clone() for p in m.target_encoder.parameters()]
    assert all(torch.equal(a, t) for a, t in zip(after, m.target_encoder.parameters()))


def test_update_momentum_accepts_the_bounds_and_rejects_outside():
    online, ema = nn.Linear(2, 1), nn.Linear(2, 1)
    update_momentum(online, ema, 0.0)  # m = 0: the target becomes the online network
    assert torch.equal(ema.weight, online.weight) and torch.equal(ema.bias, online.bias)
    frozen = [p.clone() for p in ema.parameters()]
    with torch.no_grad():
        online.weight.add_(1.0)
    update_momentum(online, ema, 1.0)  # m = 1: the target does not move
    assert all(torch.equal(a, b) for a, b in zip(frozen, ema.parameters()))
    with pytest.raises(ValueError):
        update_momentum(online, ema, -0.01)


def test_cosine_tau_without_steps_and_with_one_step():
    assert cosine_tau(0, 0, 0.9, 1.0) == 1.0  # no steps: already at the final value
    assert cosine_tau(3, -1, 0.9, 1.0) == 1.0
    assert cosine_tau(0, 1, 0.9, 1.0) == pytest.approx(0.9)  # one step: starts at base
    assert cosine_tau(1, 1, 0.9, 1.0) == pytest.approx(1.0)
    assert cosine_tau(-5, 100, 0.9, 1.0) == pytest.approx(0.9)  # clamped below


def test_update_target_moves_the_projector_too():
    m = _tiny_byol()
    with torch.no_grad():
        for p in m.online_projector.parameters():
            p.add_(1.0)
    before = [p.clone() for p in m.target_projector.parameters()]
    m.update_target(0.5)
    for b0, t, o in zip(before, m.target_projector.parameters(), m.online_projector.parameters()):
        assert torch.allclose(t, 0.5 * b0 + 0.5 * o)


def test_forward_is_the_mean_of_the_two_directions():
    m = _tiny_byol().eval()
    a, b = torch.randn(3, 1, 9, 11), torch.randn(3, 1, 9, 11)
    with torch.no_grad():
        p = m.predictor(m.online_projector(m.online_encoder(torch.cat([a, b]))))
        z = m.target_projector(m.target_encoder(torch.cat([a, b])))
        expected = 0.5 * (byol_loss(p[:3], z[3:]) + byol_loss(p[3:], z[:3]))
        assert m(a, b).item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ValueError):
        m(a, b[:2])
