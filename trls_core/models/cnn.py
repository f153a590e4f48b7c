"""Convolutional encoders: the "no TFRNN" ablation and the raw-series baseline.

``CNNEncoder`` has the TFRNN interface, (B, C, F, T) -> (B, rep_dim), so the
TRLS pipeline can swap it in to measure what the RNN buys; it is also the
peer of the TFRNN in ``bench/bench_encoder.py``. ``TimeConvEncoder`` works on
raw windows (B, C, L) for the baselines that skip the spectrogram.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["CNNEncoder", "TimeConvEncoder"]


def _check(name: str, in_channels: int, width: int, depth: int, rep_dim: int) -> None:
    if min(in_channels, width, depth, rep_dim) < 1:
        raise ValueError(
            f"{name}: in_channels, width, depth and rep_dim must be >= 1, "
            f"got {in_channels}, {width}, {depth}, {rep_dim}"
        )


class CNNEncoder(nn.Module):
    """2D conv blocks (conv-BN-ReLU, 2x pool) + global mean/max pool + linear.

    Pooling uses ceil_mode and skips an axis already of size 1, so tiny
    spectrograms (e.g. 17 x 45) survive any depth. Block i has
    ``width * 2**min(i, 2)`` channels (width, 2w, 4w, 4w, ...), the usual
    widening that keeps compute per block roughly flat.
    """

    def __init__(self, in_channels: int, width: int = 32, depth: int = 3, rep_dim: int = 128) -> None:
        super().__init__()
        _check("CNNEncoder", in_channels, width, depth, rep_dim)
        self.in_channels = in_channels
        self.rep_dim = rep_dim
        chans = [width * 2 ** min(i, 2) for i in range(depth)]
        layers: list[nn.Module] = []
        prev = in_channels
        for c in chans:
            layers.append(
                nn.Sequential(
                    nn.Conv2d(prev, c, 3, padding=1, bias=False),
                    nn.BatchNorm2d(c),
                    nn.ReLU(inplace=True),
                )
            )
            prev = c
        self.blocks = nn.ModuleList(layers)
        self.head = nn.Linear(2 * prev, rep_dim)

    @property
    def out_dim(self) -> int:
        return self.rep_dim

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"CNNEncoder expects (B, {self.in_channels}, F, T) spectrograms, got shape {tuple(x.shape)}"
            )
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i < len(self.blocks) - 1:
                kf = 2 if x.shape[2] > 1 else 1
                kt = 2 if x.shape[3] > 1 else 1
                if kf > 1 or kt > 1:
                    x = nn.functional.max_pool2d(x, (kf, kt), (kf, kt), ceil_mode=True)
        return self.head(torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1))


class TimeConvEncoder(nn.Module):
    """1D conv encoder over raw windows (B, C, L) -> (B, rep_dim).

    Conv-BN-ReLU blocks with 2x max pooling (kernel 8 first, then 5), in the
    spirit of the TS-TCC encoder, sized small for CPU baselines.
    """

    def __init__(self, in_channels: int, width: int = 32, depth: int = 3, rep_dim: int = 128) -> None:
        super().__init__()
        _check("TimeConvEncoder", in_channels, width, depth, rep_dim)
        self.in_channels = in_channels
        self.rep_dim = rep_dim
        layers: list[nn.Module] = []
        prev = in_channels
        for i in range(depth):
            c = width * 2 ** min(i, 2)
            k = 8 if i == 0 else 5
            layers += [
                nn.Conv1d(prev, c, k, padding=k // 2, bias=False),
                nn.BatchNorm1d(c),
                nn.ReLU(inplace=True),
                nn.MaxPool1d(2, 2, ceil_mode=True),
            ]
            prev = c
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(2 * prev, rep_dim)

    @property
    def out_dim(self) -> int:
        return self.rep_dim

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 3 or x.shape[1] != self.in_channels:
            raise ValueError(f"TimeConvEncoder expects (B, {self.in_channels}, L) windows, got shape {tuple(x.shape)}")
        h = self.body(x)
        return self.head(torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1))
