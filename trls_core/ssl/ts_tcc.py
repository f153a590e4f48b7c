"""TS-TCC: temporal and contextual contrasting on raw windows (Eldele et al. 2021).

The encoder turns each view into per-time-step features z_1..z_T'
(``TSTCCEncoder.features``, L2-normalised over channels as in the TS-TCC
trainer). Two losses:

* **Temporal contrasting.** A transformer with a learned context token reads
  one view's features up to a random step t and summarises them in a
  context c_t. Linear predictors W_1..W_K map c_t to guesses of the OTHER
  view's features at t+1..t+K, scored by InfoNCE: for prediction
  W_k(c_t) of sample i the positive is the other view's z_{t+k} of sample i
  and the negatives are z_{t+k} of the other samples of the batch. It is
  cross-view both ways: the strong view's context predicts the weak view's
  future (L_tc_s) and vice versa (L_tc_w). The softmax runs over the
  candidate futures for each prediction, as in the paper's Eq. 2 (the
  TS-TCC code normalises over predictions instead; both are InfoNCE).
* **Contextual contrasting.** The two contexts of a sample, projected by a
  small MLP, are a positive pair for NT-Xent (``nt_xent_loss`` from
  SimCLR), the other 2B - 2 contexts are the negatives.

loss = lambda_tc * (L_tc_s + L_tc_w) + lambda_cc * L_cc (paper: 1 and 0.7).

Choices for a small CPU budget, and where this differs from the TS-TCC code:
one pre-norm transformer layer with 4 heads, hidden 64 and feed-forward 64
(the code: 4 layers, hidden 100); both views go through the encoder, the
transformer and the projector as one batch of 2B (as ``BYOL`` does), so
the two directions share one random t per step (the code draws a t per
direction) and BatchNorm statistics are shared by the views; the K
predictors are one Linear(hidden, K * D), exactly K independent linear
maps computed in one matmul. Like the TS-TCC code the context transformer
has no positional encoding. ``timesteps`` is K itself (an int, TS-TCC: 6
for HAR, 10 for Epilepsy) or a fraction of T' (a float in (0, 1), which
then needs the window length to size the predictors).

The module has BYOL's interface (``online_parameters``, no-op
``update_target``, ``encoder``), so ``trls_core.train.pretrain_encoder`` runs
it with ``augment = RawTwoViews(...)`` giving (weak, strong). Only the
encoder's ``features`` enter the losses: a linear head on top of the pooled
features (``TSTCCEncoder(linear_head=True)``) gets no gradient here and is
left at its initialisation for the downstream stage.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trls_core.models.heads import ProjectionHead
from trls_core.ssl.base import NoTargetMethod
from trls_core.ssl.simclr import nt_xent_loss

__all__ = ["temporal_contrast_loss", "ContextTransformer", "TSTCC"]


def temporal_contrast_loss(pred: Tensor, future: Tensor) -> Tensor:
    """InfoNCE of predicted against true future features, mean over steps and samples.

    ``pred`` and ``future`` are (K, B, D): step k's logits are
    ``pred[k] @ future[k].T`` (plain dot products, no temperature, as in
    TS-TCC), and prediction i must pick ``future[k, i]`` among the B
    candidates ``future[k, :]``.
    """
    if pred.ndim != 3 or pred.shape != future.shape:
        raise ValueError(
            f"temporal_contrast_loss: pred and future must both be (K, B, D) with the same shape, "
            f"got {tuple(pred.shape)} and {tuple(future.shape)}"
        )
    k, b, _ = pred.shape
    if b < 2:
        raise ValueError(f"temporal_contrast_loss: need at least 2 samples (negatives), got B={b}")
    logits = pred @ future.transpose(1, 2)  # (K, B, B): [k, i, j] = pred_ki . future_kj
    targets = torch.arange(b, device=pred.device).repeat(k)
    return F.cross_entropy(logits.reshape(k * b, b), targets)


class ContextTransformer(nn.Module):
    """TS-TCC's ``Seq_Transformer``: embed steps, prepend a context token, return its output.

    (B, t, feat_dim) -> (B, hidden). Pre-norm layers, ReLU feed-forward.
    """

    def __init__(
        self,
        feat_dim: int,
        hidden: int = 64,
        heads: int = 4,
        depth: int = 1,
        mlp_dim: int = 64,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if min(feat_dim, hidden, heads, depth, mlp_dim) < 1:
            raise ValueError(
                "ContextTransformer: feat_dim, hidden, heads, depth and mlp_dim must be >= 1, "
                f"got {feat_dim}, {hidden}, {heads}, {depth}, {mlp_dim}"
            )
        if hidden % heads:
            raise ValueError(f"ContextTransformer: hidden ({hidden}) must be divisible by heads ({heads})")
        self.hidden = hidden
        self.embed = nn.Linear(feat_dim, hidden)
        self.c_token = nn.Parameter(torch.randn(1, 1, hidden))
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                hidden, heads, mlp_dim, dropout, activation="relu", batch_first=True, norm_first=True
            )
            for _ in range(depth)
        )

    def forward(self, seq: Tensor) -> Tensor:
        if seq.ndim != 3:
            raise ValueError(f"ContextTransformer expects (B, t, D) sequences, got {tuple(seq.shape)}")
        x = self.embed(seq)
        x = torch.cat([self.c_token.expand(x.shape[0], -1, -1), x], dim=1)
        for layer in self.layers:
            x = layer(x)
        return x[:, 0]


def _check_nonneg(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"TSTCC: {name} must be a finite number >= 0, got {value!r}")
    return float(value)


class TSTCC(NoTargetMethod):
    """TS-TCC pretraining module with the BYOL interface.

    Args:
        encoder: a ``TSTCCEncoder`` (anything with ``features(x) -> (B, D, T')``,
            ``feat_dim`` and ``out_dim``); exposed as ``.encoder``.
        proj_dim: output size of the context projector (contextual contrasting).
        timesteps: K future steps to predict, an int >= 1, or a float in (0, 1)
            meaning floor(timesteps * T') (at least 1); a fraction needs ``window``.
        hidden: width of the context transformer and of the projector's hidden layer.
        temperature: NT-Xent temperature of contextual contrasting.
        lambda_tc, lambda_cc: weights of the temporal and contextual losses.
        heads, depth, mlp_dim, dropout: context transformer sizes.
        window: raw window length L; only needed when ``timesteps`` is a fraction
            (and then the encoder needs ``feature_len(L) -> T'``).
    """

    def __init__(
        self,
        encoder: nn.Module,
        proj_dim: int = 64,
        timesteps: int | float = 6,
        hidden: int = 64,
        temperature: float = 0.2,
        lambda_tc: float = 1.0,
        lambda_cc: float = 0.7,
        heads: int = 4,
        depth: int = 1,
        mlp_dim: int = 64,
        dropout: float = 0.1,
        window: int | None = None,
    ) -> None:
        super().__init__()
        if not (callable(getattr(encoder, "features", None)) and hasattr(encoder, "feat_dim")):
            raise ValueError(
                f"TSTCC needs an encoder with features(x) -> (B, D, T') and feat_dim (e.g. TSTCCEncoder), "
                f"got {type(encoder).__name__}"
            )
        if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"TSTCC: temperature must be a finite number > 0, got {temperature!r}")
        if proj_dim < 1:
            raise ValueError(f"TSTCC: proj_dim must be >= 1, got {proj_dim}")
        self.lambda_tc = _check_nonneg("lambda_tc", lambda_tc)
        self.lambda_cc = _check_nonneg("lambda_cc", lambda_cc)
        self.temperature = float(temperature)
        self.timesteps = self._resolve_timesteps(encoder, timesteps, window)

        feat_dim = int(encoder.feat_dim)
        self.backbone = encoder
        self.context = ContextTransformer(feat_dim, hidden, heads, depth, mlp_dim, dropout)
        self.predictors = nn.Linear(hidden, self.timesteps * feat_dim)  # W_1..W_K stacked
        self.projector = ProjectionHead(hidden, hidden, proj_dim)

    @staticmethod
    def _resolve_timesteps(encoder: nn.Module, timesteps: int | float, window: int | None) -> int:
        if isinstance(timesteps, bool) or not isinstance(timesteps, (int, float)):
            raise ValueError(f"TSTCC: timesteps must be an int >= 1 or a float in (0, 1), got {timesteps!r}")
        if isinstance(timesteps, int):
            if timesteps < 1:
                raise ValueError(f"TSTCC: timesteps must be >= 1, got {timesteps}")
            return timesteps
        if not 0.0 < timesteps < 1.0:
            raise ValueError(f"TSTCC: a fractional timesteps must be in (0, 1), got {timesteps}")
        if window is None or not callable(getattr(encoder, "feature_len", None)):
            raise ValueError(
                "TSTCC: a fractional timesteps needs window= (the raw window length) and an encoder with feature_len(L)"
            )
        t_len = int(encoder.feature_len(int(window)))
        if t_len < 2:
            raise ValueError(f"TSTCC: window {window} gives only {t_len} feature step(s); need at least 2")
        return min(max(1, int(timesteps * t_len)), t_len - 1)

    def losses(self, weak: Tensor, strong: Tensor) -> dict[str, Tensor]:
        """The three terms: ``tc_s`` (strong context -> weak future), ``tc_w`` (weak -> strong), ``cc``."""
        if weak.shape != strong.shape:
            raise ValueError(
                f"TSTCC: the two views must have the same shape, got {tuple(weak.shape)} and {tuple(strong.shape)}"
            )
        n = weak.shape[0]
        feats = self.backbone.features(torch.cat([weak, strong], dim=0))  # (2B, D, T')
        feats = F.normalize(feats, dim=1).transpose(1, 2)  # (2B, T', D)
        t_len, k = feats.shape[1], self.timesteps
        if t_len <= k:
            raise ValueError(
                f"TSTCC: the windows give T'={t_len} feature steps, need more than timesteps={k}; "
                "use longer windows or fewer timesteps"
            )
        t = int(torch.randint(t_len - k, (1,)).item())  # context covers steps 0..t, predicts t+1..t+K
        c = self.context(feats[:, : t + 1])  # (2B, hidden)
        pred = self.predictors(c).view(2 * n, k, -1).transpose(0, 1)  # (K, 2B, D)
        future = feats[:, t + 1 : t + 1 + k].transpose(0, 1)  # (K, 2B, D)
        tc_w = temporal_contrast_loss(pred[:, :n], future[:, n:])  # weak context -> strong future
        tc_s = temporal_contrast_loss(pred[:, n:], future[:, :n])  # strong context -> weak future
        z = self.projector(c)
        cc = nt_xent_loss(z[:n], z[n:], self.temperature)
        return {"tc_s": tc_s, "tc_w": tc_w, "cc": cc}

    def forward(self, weak: Tensor, strong: Tensor) -> Tensor:
        parts = self.losses(weak, strong)
        return self.lambda_tc * (parts["tc_s"] + parts["tc_w"]) + self.lambda_cc * parts["cc"]
