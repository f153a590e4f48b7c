"""SimCLR: contrast each view against the rest of the batch (Chen et al. 2020).

Encoder -> projector -> NT-Xent. For a batch of N pairs there are 2N
projections; for each anchor the other view of the same sample is the
positive and the remaining 2N - 2 projections are the negatives. The
similarity is the cosine divided by a temperature, and the loss is the
cross entropy of picking the positive, averaged over all 2N anchors (the
paper's loss, symmetric in the two views).

Unlike BYOL there is no target network: ``update_target`` is a no-op so
that the BYOL training loop (``trls_core.train.pretrain_encoder``) runs it
unchanged. Choices for a small CPU budget: the projector is the same small
``ProjectionHead`` BYOL uses (hidden 256, out 64 instead of the paper's
2048 / 128), the temperature defaults to 0.2 (TS-TCC's contextual
contrasting value, which suits the small batches used here better than
SimCLR's 0.5), and both views go through the encoder as one batch of 2N,
as in ``trls_core.ssl.byol.BYOL``, so BatchNorm statistics are shared by
the two views.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trls_core.models.heads import ProjectionHead
from trls_core.ssl.base import NoTargetMethod

__all__ = ["nt_xent_loss", "SimCLR"]


def nt_xent_loss(z_a: Tensor, z_b: Tensor, temperature: float) -> Tensor:
    """Normalised-temperature cross entropy of SimCLR, mean over the 2N anchors.

    ``z_a[i]`` and ``z_b[i]`` are the two views of sample i, shape (N, D).
    With s_ij = cos(z_i, z_j) / temperature over the 2N stacked vectors,
    anchor i's loss is -log(exp(s_i,pos) / sum_{j != i} exp(s_ij)).
    N must be >= 2: with one pair there is no negative and the loss is
    identically 0, which would train nothing without saying so.
    """
    if z_a.ndim != 2 or z_a.shape != z_b.shape:
        raise ValueError(
            f"nt_xent_loss: z_a and z_b must both be (N, D) with the same shape, "
            f"got {tuple(z_a.shape)} and {tuple(z_b.shape)}"
        )
    n = z_a.shape[0]
    if n < 2:
        raise ValueError(f"nt_xent_loss: need at least 2 pairs (negatives), got N={n}")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"nt_xent_loss: temperature must be a finite number > 0, got {temperature!r}")
    z = F.normalize(torch.cat([z_a, z_b], dim=0), dim=1)
    logits = z @ z.t() / temperature
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    idx = torch.arange(n, device=z.device)
    targets = torch.cat([idx + n, idx])
    return F.cross_entropy(logits, targets)


class SimCLR(NoTargetMethod):
    """Encoder + projector trained with NT-Xent; the BYOL module interface.

    Args:
        encoder: any module (B, ...) -> (B, rep_dim); exposed as ``.encoder``.
        rep_dim: the encoder's output size.
        proj_hidden, proj_dim: projector MLP sizes.
        temperature: NT-Xent temperature.

    ``forward(a, b)`` returns the scalar NT-Xent loss of the two views.
    """

    def __init__(
        self,
        encoder: nn.Module,
        rep_dim: int,
        proj_hidden: int = 256,
        proj_dim: int = 64,
        temperature: float = 0.2,
    ) -> None:
        super().__init__()
        if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"SimCLR: temperature must be a finite number > 0, got {temperature!r}")
        self.backbone = encoder
        self.projector = ProjectionHead(rep_dim, proj_hidden, proj_dim)
        self.temperature = float(temperature)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        if a.shape != b.shape:
            raise ValueError(
                f"SimCLR: the two views must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
            )
        n = a.shape[0]
        z = self.projector(self.backbone(torch.cat([a, b], dim=0)))
        return nt_xent_loss(z[:n], z[n:], self.temperature)
