"""BYOL: positives only, an online network chasing an EMA target (docs/design.md §1.3).

Online = encoder -> projector -> predictor; target = encoder -> projector,
an exponential moving average of the online weights with no gradient. The
loss is the symmetrised 2 - 2·cos(predictor(online(A)), target(B)). The
asymmetry (predictor + stop-gradient + slowly moving target) is what keeps
BYOL from collapsing without negative samples.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trls_core.models.heads import PredictionHead, ProjectionHead

__all__ = ["update_momentum", "cosine_tau", "byol_loss", "BYOL"]


@torch.no_grad()
def update_momentum(model: nn.Module, model_ema: nn.Module, m: float) -> None:
    """EMA update, lightly's semantics: ema = m·ema + (1 - m)·online.

    Applies to parameters; buffers (BatchNorm running stats, counters) are
    copied from the online model, since averaging an integer counter is
    meaningless and the running stats are already averages.
    """
    if not 0.0 <= m <= 1.0:
        raise ValueError(f"update_momentum: m must be in [0, 1], got {m}")
    ema_params = list(model_ema.parameters())
    params = list(model.parameters())
    if len(ema_params) != len(params):
        raise ValueError(f"update_momentum: models differ ({len(params)} vs {len(ema_params)} parameter tensors)")
    for p_ema, p in zip(ema_params, params):
        p_ema.mul_(m).add_(p.detach(), alpha=1.0 - m)
    for b_ema, b in zip(model_ema.buffers(), model.buffers()):
        b_ema.copy_(b)


def cosine_tau(step: int, total_steps: int, base: float = 0.99, final: float = 1.0) -> float:
    """Cosine schedule from ``base`` (step 0) to ``final`` (step >= total_steps).

    BYOL raises the target momentum to 1 over training so the target freezes
    as the online network converges.
    """
    if total_steps <= 0:
        return final
    progress = min(max(step, 0) / total_steps, 1.0)
    return final - (final - base) * (math.cos(math.pi * progress) + 1.0) / 2.0


def byol_loss(p: Tensor, z: Tensor) -> Tensor:
    """mean over the batch of 2 - 2·cos(p, stopgrad(z)); 0 when aligned, 4 when opposite."""
    p = F.normalize(p, dim=-1)
    z = F.normalize(z.detach(), dim=-1)
    return (2.0 - 2.0 * (p * z).sum(dim=-1)).mean()


class BYOL(nn.Module):
    """Online encoder+projector+predictor and its EMA target.

    Args:
        encoder: any module (B, ...) -> (B, rep_dim); it becomes the online
            encoder (``.encoder``) and is deep-copied for the target.
        rep_dim: the encoder's output size.
        proj_hidden, proj_dim: projector MLP sizes.
        pred_hidden: predictor hidden size (predictor maps proj_dim -> proj_dim).

    ``forward(a, b)`` returns the symmetrised loss **averaged** over the two
    directions, (L(a→b) + L(b→a)) / 2, so it stays on the [0, 4] scale of
    ``byol_loss``. Both views go through each network as ONE batch of 2B
    (fewer, larger RNN calls: faster on the CPU); BatchNorm statistics are
    therefore shared across the two views.

    The target networks stay in whatever train/eval mode the module is in
    (as in lightly); only ``update_target`` changes their weights.
    """

    def __init__(
        self,
        encoder: nn.Module,
        rep_dim: int,
        proj_hidden: int = 256,
        proj_dim: int = 64,
        pred_hidden: int = 256,
    ) -> None:
        super().__init__()
        self.online_encoder = encoder
        self.online_projector = ProjectionHead(rep_dim, proj_hidden, proj_dim)
        self.predictor = PredictionHead(proj_dim, pred_hidden, proj_dim)
        self.target_encoder = copy.deepcopy(encoder)
        self.target_projector = copy.deepcopy(self.online_projector)
        for p in list(self.target_encoder.parameters()) + list(self.target_projector.parameters()):
            p.requires_grad_(False)

    @property
    def encoder(self) -> nn.Module:
        """The online encoder: what downstream evaluation and the registry use."""
        return self.online_encoder

    def online_parameters(self) -> list[nn.Parameter]:
        """Parameters the optimizer should update (online encoder, projector, predictor)."""
        return [p for p in self.parameters() if p.requires_grad]

    @torch.no_grad()
    def update_target(self, tau: float) -> None:
        """Move the target towards the online weights: target = tau·target + (1 - tau)·online."""
        update_momentum(self.online_encoder, self.target_encoder, tau)
        update_momentum(self.online_projector, self.target_projector, tau)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        if a.shape != b.shape:
            raise ValueError(f"BYOL: the two views must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
        n = a.shape[0]
        views = torch.cat([a, b], dim=0)
        p = self.predictor(self.online_projector(self.online_encoder(views)))
        with torch.no_grad():
            z = self.target_projector(self.target_encoder(views))
        p_a, p_b = p[:n], p[n:]
        z_a, z_b = z[:n], z[n:]
        return 0.5 * (byol_loss(p_a, z_b) + byol_loss(p_b, z_a))
