"""The TS-TCC base encoder on raw windows (Eldele et al. 2021).

Three Conv1d-BN-ReLU-MaxPool blocks (TS-TCC's ``base_Model``): the first
with ``kernel_size`` (8 for Epilepsy/HAR, 25 for Sleep-EDF), an optional
stride and dropout, the next two with kernel 8; channels width, 2*width and
``rep_dim`` (TS-TCC: 32, 64, 128). Convolutions pad by kernel // 2 and the
pools are MaxPool1d(2, 2, padding=1) as in TS-TCC, so a 178-sample Epilepsy
window gives the paper's 24 feature steps.

``features(x)`` -> (B, rep_dim, T') is what temporal contrasting needs (a
feature vector per time step). ``forward(x)`` -> (B, out_dim) is the
downstream representation. TS-TCC flattens the features into its linear
classifier, which ties the encoder to one window length; here, like
``TimeConvEncoder``, the features are pooled over time (mean and max,
concatenated) and mapped by a linear layer, so the representation has a
fixed size for any window length and the shared linear-probe / fine-tune
code can treat it like every other encoder.

Caveat: TS-TCC's losses only use ``features``, so that linear layer gets no
gradient in pretraining and stays at its random initialisation; a linear
probe then sees a random 2*rep_dim -> rep_dim projection of the pooled
features. ``linear_head=False`` drops it: ``forward`` returns the pooled
features themselves, (B, 2 * rep_dim), every dimension pretrained.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["TSTCCEncoder"]


class TSTCCEncoder(nn.Module):
    """TS-TCC conv encoder, (B, C, L) -> features (B, rep_dim, T') -> (B, out_dim).

    Args:
        in_channels: channels C of the raw windows.
        width: channels of the first block (the second has 2 * width).
        rep_dim: channels of the last block (= ``feat_dim``) and, with the
            linear head, size of the representation (= ``out_dim``).
        kernel_size: kernel of the first convolution.
        dropout: dropout after the first block.
        stride: stride of the first convolution (TS-TCC uses 3 on 3000-sample
            Sleep-EDF epochs to keep T' small).
        linear_head: map the pooled features (mean and max over time) to
            rep_dim with a linear layer (True, ``out_dim = rep_dim``) or
            return them as they are (False, ``out_dim = 2 * rep_dim``).
    """

    def __init__(
        self,
        in_channels: int,
        width: int = 32,
        rep_dim: int = 128,
        kernel_size: int = 8,
        dropout: float = 0.35,
        stride: int = 1,
        linear_head: bool = True,
    ) -> None:
        super().__init__()
        if min(in_channels, width, rep_dim, kernel_size, stride) < 1:
            raise ValueError(
                "TSTCCEncoder: in_channels, width, rep_dim, kernel_size and stride must be >= 1, "
                f"got {in_channels}, {width}, {rep_dim}, {kernel_size}, {stride}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"TSTCCEncoder: dropout must be in [0, 1), got {dropout}")
        self.in_channels = in_channels
        self.rep_dim = rep_dim

        def block(c_in: int, c_out: int, k: int, s: int) -> list[nn.Module]:
            return [
                nn.Conv1d(c_in, c_out, k, stride=s, padding=k // 2, bias=False),
                nn.BatchNorm1d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool1d(kernel_size=2, stride=2, padding=1),
            ]

        self.body = nn.Sequential(
            *block(in_channels, width, kernel_size, stride),
            nn.Dropout(dropout),
            *block(width, 2 * width, 8, 1),
            *block(2 * width, rep_dim, 8, 1),
        )
        self.head: nn.Module = nn.Linear(2 * rep_dim, rep_dim) if linear_head else nn.Identity()
        self.linear_head = bool(linear_head)

    @property
    def out_dim(self) -> int:
        """Size of ``forward``'s representation."""
        return self.rep_dim if self.linear_head else 2 * self.rep_dim

    @property
    def feat_dim(self) -> int:
        """Channels D of ``features``' time steps."""
        return self.rep_dim

    def feature_len(self, length: int) -> int:
        """T' that ``features`` gives for windows of ``length`` samples (no forward pass)."""
        if length < 1:
            raise ValueError(f"TSTCCEncoder.feature_len: length must be >= 1, got {length}")
        for m in self.body:
            if isinstance(m, nn.Conv1d):
                length = (length + 2 * m.padding[0] - m.kernel_size[0]) // m.stride[0] + 1
            elif isinstance(m, nn.MaxPool1d):
                length = (length + 2 * m.padding - m.kernel_size) // m.stride + 1
        return length

    def _check(self, x: Tensor) -> None:
        if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[1] != self.in_channels:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"TSTCCEncoder expects (B, {self.in_channels}, L) windows, got shape {shape}")

    def features(self, x: Tensor) -> Tensor:
        """Per-time-step features (B, rep_dim, T')."""
        self._check(x)
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        h = self.features(x)
        return self.head(torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1))
