"""Checks every SSL method's tests share (one training-loop shape, one place)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def three_steps_stay_finite(
    model: nn.Module, views: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], x: torch.Tensor
) -> None:
    """Three AdamW steps the way ``pretrain_encoder`` takes them: loss and every weight stay finite."""
    opt = torch.optim.AdamW(model.online_parameters(), lr=1e-3)
    torch.manual_seed(2)
    for _ in range(3):
        a, b = views(x)
        loss = model(a, b)
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.update_target(0.99)
        assert torch.isfinite(loss)
    assert all(torch.isfinite(p).all() for p in model.parameters())
