"""TS2Vec encoder (Yue et al., AAAI 2022) over raw windows (B, C, L).

TS2Vec learns one representation per time step: a linear input projection
per timestamp, a stack of residual blocks of dilated 1D convolutions
(dilation 2**i, so the receptive field doubles per block without pooling and
the time axis keeps its length) and a last block that maps to the
representation size. During pretraining, timestamps of the *projected* input
are masked (zeroed) at random, binomial p = 0.5, which is one half of
TS2Vec's augmentation (the other, random overlapping crops, lives in
``trls_core.ssl.ts2vec``). The instance-level representation used for
classification is the max over all time steps of the per-timestamp
representations (the official ``encode(..., encoding_window='full_series')``).

Layout follows the official ``TSEncoder`` / ``DilatedConvEncoder``:
``depth`` blocks of ``hidden`` channels with dilations 1, 2, ..., 2**(depth-1)
and one final block (dilation 2**depth, with a 1x1 conv on its residual path)
to ``rep_dim``; each block is GELU-conv-GELU-conv plus the residual; dropout
0.1 on the output. Choices for a small CPU budget: ``rep_dim`` 128 and depth
6 by default instead of the paper's 320 and 10 (the receptive field of depth
6 with kernel 3, 509 samples, still covers a few seconds of EEG/ECG at
100-250 Hz). Timestamps where any channel is NaN are zeroed and never seen
by the convolutions, as in the official code, so missing samples give
finite outputs; the caller's tensor is never modified in place.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["TS2VecEncoder"]


class _SamePadConv(nn.Module):
    """Dilated Conv1d whose output has the input's length (one trailing sample cut for even receptive fields)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        receptive_field = (kernel_size - 1) * dilation + 1
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=receptive_field // 2, dilation=dilation)
        self.remove = 1 if receptive_field % 2 == 0 else 0

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        return out[:, :, : -self.remove] if self.remove else out


class _ConvBlock(nn.Module):
    """Residual block GELU -> conv -> GELU -> conv, + x (or a 1x1 projection of x)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, dilation: int, final: bool = False
    ) -> None:
        super().__init__()
        self.conv1 = _SamePadConv(in_channels, out_channels, kernel_size, dilation)
        self.conv2 = _SamePadConv(out_channels, out_channels, kernel_size, dilation)
        self.projector = nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels or final else None

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.projector is None else self.projector(x)
        x = self.conv2(F.gelu(self.conv1(F.gelu(x))))
        return x + residual


class TS2VecEncoder(nn.Module):
    """TS2Vec's dilated-conv encoder: (B, C, L) -> (B, L, rep_dim) per step, (B, rep_dim) pooled.

    Args:
        in_channels: C, channels of the raw window.
        hidden: width of the input projection and of the hidden blocks.
        rep_dim: size of the representation (``out_dim``).
        depth: number of hidden residual blocks (dilations 1 .. 2**(depth-1));
            one more, final block maps to ``rep_dim``.
        kernel_size: conv kernel size.
        dropout: dropout on the per-timestamp representations (official: 0.1).
        mask_p: probability that a timestamp is masked when masking is on
            (official: binomial mask with p = 0.5).

    ``forward_timestamps(x, mask=True)`` masks only while the module is in
    training mode, so evaluation is never masked. ``forward(x)`` never masks:
    it is the downstream representation, the max over time steps.
    """

    def __init__(
        self,
        in_channels: int,
        hidden: int = 64,
        rep_dim: int = 128,
        depth: int = 6,
        kernel_size: int = 3,
        *,
        dropout: float = 0.1,
        mask_p: float = 0.5,
    ) -> None:
        super().__init__()
        if min(in_channels, hidden, rep_dim, kernel_size) < 1 or depth < 0:
            raise ValueError(
                "TS2VecEncoder: in_channels, hidden, rep_dim and kernel_size must be >= 1 and depth >= 0, "
                f"got {in_channels}, {hidden}, {rep_dim}, {kernel_size}, {depth}"
            )
        if not 0.0 <= dropout < 1.0 or not 0.0 <= mask_p <= 1.0:
            raise ValueError(f"TS2VecEncoder: need 0 <= dropout < 1 and 0 <= mask_p <= 1, got {dropout}, {mask_p}")
        self.in_channels = in_channels
        self.hidden = hidden
        self.rep_dim = rep_dim
        self.depth = depth
        self.kernel_size = kernel_size
        self.mask_p = mask_p
        self.input_fc = nn.Linear(in_channels, hidden)
        channels = [hidden] * depth + [rep_dim]
        self.blocks = nn.Sequential(
            *[
                _ConvBlock(
                    channels[i - 1] if i > 0 else hidden,
                    channels[i],
                    kernel_size,
                    dilation=2**i,
                    final=i == len(channels) - 1,
                )
                for i in range(len(channels))
            ]
        )
        self.repr_dropout = nn.Dropout(p=dropout)

    @property
    def out_dim(self) -> int:
        return self.rep_dim

    def _check(self, x: Tensor) -> None:
        if x.dim() != 3 or x.shape[1] != self.in_channels or x.shape[2] < 1:
            raise ValueError(
                f"TS2VecEncoder expects raw windows of shape (B, {self.in_channels}, L) "
                f"(batch, channels, time, L >= 1), got shape {tuple(x.shape)}"
            )

    def forward_timestamps(self, x: Tensor, mask: bool = False) -> Tensor:
        """Per-timestamp representations (B, L, rep_dim).

        With ``mask=True`` and the module in training mode, each timestamp of
        the projected input is zeroed with probability ``mask_p`` (drawn from
        the global torch RNG on x's device); timestamps with a NaN in any
        channel are always zeroed.
        """
        self._check(x)
        isnan = torch.isnan(x)
        valid = ~isnan.any(dim=1)  # (B, L): timestamps without missing values
        x = x.masked_fill(isnan.any(dim=1, keepdim=True), 0.0)
        h = self.input_fc(x.transpose(1, 2))  # (B, L, hidden)
        keep = valid
        if mask and self.training and self.mask_p > 0.0:
            keep = keep & (torch.rand(valid.shape, device=x.device) >= self.mask_p)
        h = h.masked_fill(~keep.unsqueeze(-1), 0.0)
        h = self.repr_dropout(self.blocks(h.transpose(1, 2)))  # (B, rep_dim, L)
        return h.transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        """Instance-level representation (B, rep_dim): max over all time steps, no masking."""
        return self.forward_timestamps(x, mask=False).amax(dim=1)
