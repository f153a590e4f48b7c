"""What the SSL methods without a target network share (SimCLR, TS-TCC, TS2Vec).

The shared training loop (``trls_core.train.pretrain_encoder``) speaks BYOL's
interface: ``encoder``, ``online_parameters()`` and ``update_target(tau)``.
Contrastive methods have no EMA target, so they all answer it the same way;
this base says it once instead of in every method.
"""

from __future__ import annotations

from torch import nn

__all__ = ["NoTargetMethod"]


class NoTargetMethod(nn.Module):
    """Base for methods that train one network; subclasses set ``self.backbone`` (the encoder)."""

    backbone: nn.Module

    @property
    def encoder(self) -> nn.Module:
        """The encoder: what downstream evaluation and the registry use."""
        return self.backbone

    def online_parameters(self) -> list[nn.Parameter]:
        """Parameters the optimizer should update (everything trainable: there is no target)."""
        return [p for p in self.parameters() if p.requires_grad]

    def update_target(self, tau: float) -> None:
        """No target network: nothing to do (kept for the shared training loop)."""
        return None
