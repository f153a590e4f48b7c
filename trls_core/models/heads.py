"""Small MLP heads for the SSL methods (lightly-style).

BYOL's projector and predictor are the same shape of network,
Linear-BN-ReLU-Linear; the subclasses only carry BYOL's defaults, scaled down
for small encoders (hidden 256, out 64 instead of 4096 / 256).
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["MLPHead", "ProjectionHead", "PredictionHead"]


class MLPHead(nn.Module):
    """Linear -> (BatchNorm1d) -> ReLU -> Linear.

    The BatchNorm in the hidden layer matters for BYOL: without it (and
    without negatives) training collapses much more easily.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, batch_norm: bool = True) -> None:
        super().__init__()
        if min(in_dim, hidden_dim, out_dim) < 1:
            raise ValueError(
                f"MLPHead: in_dim, hidden_dim and out_dim must be >= 1, got {in_dim}, {hidden_dim}, {out_dim}"
            )
        self.in_dim, self.hidden_dim, self.out_dim = in_dim, hidden_dim, out_dim
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim, bias=not batch_norm),
            nn.BatchNorm1d(hidden_dim) if batch_norm else nn.Identity(),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ProjectionHead(MLPHead):
    """BYOL projector: representation (in_dim) -> projection (out_dim)."""

    def __init__(self, in_dim: int = 128, hidden_dim: int = 256, out_dim: int = 64, batch_norm: bool = True) -> None:
        super().__init__(in_dim, hidden_dim, out_dim, batch_norm)


class PredictionHead(MLPHead):
    """BYOL predictor: projection -> prediction of the target's projection (same size)."""

    def __init__(self, in_dim: int = 64, hidden_dim: int = 256, out_dim: int = 64, batch_norm: bool = True) -> None:
        super().__init__(in_dim, hidden_dim, out_dim, batch_norm)
