"""TFRNN: the multi-scale Time-Frequency RNN encoder (docs/design.md §1.4).

The TRLS paper names the encoder but gives no layer-level detail; this is
the project's definition. A spectrogram (B, C, F, T) goes through a small
conv stem to D channels, then ``depth`` blocks. Each block runs

1. a (bi)GRU along **frequency** for every time frame -- all frames of the
   batch as ONE batched call of shape (B·T, F, D) -- residual + LayerNorm,
2. a (bi)GRU along **time** for every frequency bin -- one call of shape
   (B·F, T, D) -- residual + LayerNorm,
3. a 2x pooling over (F, T), so the next block sees a coarser scale (done
   on entry to the next block: the last block's output is not pooled, as
   nothing would read it).

Each scale's output is summarised by its mean and max over (F, T) (a 2D
vector); the representation is a linear projection of the concatenated
scale vectors (multi-scale) or of the last one only (``multiscale=False``,
the ablation).

Why batched calls: a Python loop over frames would be orders of magnitude
slower on the CPU (docs/stack.md). Why channels-last inside the blocks: the
time pass then needs no copy (B·F rows of a (B, F, T, D) tensor are
contiguous); only the frequency pass transposes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["TFRNN", "AxisRNN", "TFRNNBlock"]


def _pair(v: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """Accept an int or a 2-sequence (params.yaml gives lists) for a conv stride."""
    if isinstance(v, int):
        return (v, v)
    t = tuple(int(i) for i in v)
    if len(t) != 2:
        raise ValueError(f"TFRNN: stem_stride must be an int or (F, T) pair, got {v!r}")
    return t  # type: ignore[return-value]


class AxisRNN(nn.Module):
    """A GRU/LSTM over the rows of a (N, L, D) batch, residual + LayerNorm.

    A bidirectional RNN of hidden size H returns 2H features; a linear layer
    projects them back to D (when 2H != D) so the residual and the next block
    see the same width whatever the direction setting. ``hidden=D // 2`` with
    ``bidirectional`` needs no projection and is ~2-4x cheaper on the CPU,
    where a GRU's cost is dominated by per-step element-wise gate work.
    """

    def __init__(
        self,
        dim: int,
        rnn: str = "gru",
        bidirectional: bool = True,
        dropout: float = 0.0,
        hidden: int | None = None,
    ) -> None:
        super().__init__()
        rnn_cls = {"gru": nn.GRU, "lstm": nn.LSTM}.get(rnn.lower())
        if rnn_cls is None:
            raise ValueError(f"TFRNN: rnn must be 'gru' or 'lstm', got {rnn!r}")
        hidden = dim if hidden is None else hidden
        self.rnn = rnn_cls(dim, hidden, num_layers=1, batch_first=True, bidirectional=bidirectional)
        out = 2 * hidden if bidirectional else hidden
        self.proj: nn.Module = nn.Linear(out, dim) if out != dim else nn.Identity()
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:  # x: (N, L, D)
        y, _ = self.rnn(x)
        return self.norm(x + self.drop(self.proj(y)))


class TFRNNBlock(nn.Module):
    """One scale: RNN along frequency, then along time; (B, F, T, D) in and out."""

    def __init__(
        self,
        dim: int,
        rnn: str = "gru",
        bidirectional: bool = True,
        dropout: float = 0.0,
        hidden: int | None = None,
    ) -> None:
        super().__init__()
        self.freq = AxisRNN(dim, rnn, bidirectional, dropout, hidden)
        self.time = AxisRNN(dim, rnn, bidirectional, dropout, hidden)

    def forward(self, x: Tensor) -> Tensor:
        b, f, t, d = x.shape
        # frequency pass: one sequence of length F per (batch, time frame)
        xf = x.transpose(1, 2).reshape(b * t, f, d)
        xf = self.freq(xf).reshape(b, t, f, d).transpose(1, 2)
        # time pass: one sequence of length T per (batch, frequency bin)
        xt = self.time(xf.reshape(b * f, t, d))
        return xt.reshape(b, f, t, d)


def _pool2x(x: Tensor) -> Tensor:
    """Average-pool (B, F, T, D) by 2 over F and T; an axis of size 1 is left alone.

    ceil_mode keeps the last row/column of an odd-sized axis (17 -> 9), so
    small spectrograms survive several blocks.
    """
    _, f, t, _ = x.shape
    kf = 2 if f > 1 else 1
    kt = 2 if t > 1 else 1
    if kf == 1 and kt == 1:
        return x
    y = F.avg_pool2d(x.permute(0, 3, 1, 2), kernel_size=(kf, kt), stride=(kf, kt), ceil_mode=True)
    return y.permute(0, 2, 3, 1)


class TFRNN(nn.Module):
    """Multi-scale Time-Frequency RNN encoder: (B, C, F, T) -> (B, rep_dim).

    Args:
        in_channels: spectrogram channels C (signal leads).
        dim: feature width D of the stem and every block.
        depth: number of TFRNN blocks (= number of scales).
        rep_dim: size R of the representation.
        rnn: "gru" or "lstm".
        bidirectional: run each axis RNN in both directions.
        multiscale: project the concatenation of all scale vectors (True) or
            only the last scale's vector (False, ablation).
        stem_kernel: odd kernel size of the conv stem.
        dropout: dropout on the RNN branch before the residual sum.
        rnn_hidden: hidden size per RNN direction; None = ``dim`` (a
            bidirectional output of 2D is projected back to D). ``dim // 2``
            with ``bidirectional`` skips the projection: the fast CPU choice.
        stem_stride: stride (F, T) of the stem conv; (1, 2) halves the time
            frames (spectrograms with a small hop are oversampled in time)
            and with it the cost of every block.
    """

    def __init__(
        self,
        in_channels: int,
        dim: int = 32,
        depth: int = 3,
        rep_dim: int = 128,
        rnn: str = "gru",
        bidirectional: bool = True,
        multiscale: bool = True,
        stem_kernel: int = 3,
        dropout: float = 0.0,
        rnn_hidden: int | None = None,
        stem_stride: int | tuple[int, int] = 1,
        freq_bands: int = 1,
    ) -> None:
        super().__init__()
        if in_channels < 1 or dim < 1 or depth < 1 or rep_dim < 1:
            raise ValueError(
                f"TFRNN: in_channels, dim, depth and rep_dim must be >= 1, got {in_channels}, {dim}, {depth}, {rep_dim}"
            )
        if rnn_hidden is not None and rnn_hidden < 1:
            raise ValueError(f"TFRNN: rnn_hidden must be >= 1 or None, got {rnn_hidden}")
        if freq_bands < 1:
            raise ValueError(f"TFRNN: freq_bands must be >= 1, got {freq_bands}")
        if stem_kernel < 1 or stem_kernel % 2 == 0:
            raise ValueError(f"TFRNN: stem_kernel must be a positive odd int, got {stem_kernel}")
        self.in_channels = in_channels
        self.dim = dim
        self.depth = depth
        self.rep_dim = rep_dim
        self.multiscale = multiscale
        self.freq_bands = freq_bands
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, dim, stem_kernel, stride=_pair(stem_stride), padding=stem_kernel // 2, bias=False),
            nn.BatchNorm2d(dim),
            nn.ReLU(inplace=True),
        )
        self.blocks = nn.ModuleList(TFRNNBlock(dim, rnn, bidirectional, dropout, rnn_hidden) for _ in range(depth))
        n_scales = depth if multiscale else 1
        self.head = nn.Linear(2 * dim * freq_bands * n_scales, rep_dim)

    @property
    def out_dim(self) -> int:
        """Representation size, so heads can be sized without a dry run."""
        return self.rep_dim

    def forward_scales(self, x: Tensor) -> list[Tensor]:
        """Return one (B, 2·D·bands) vector (mean ‖ max over T and F-bands) per scale, finest first.

        ``freq_bands == 1`` pools over all of (F, T) as the first definition did;
        ``freq_bands > 1`` pools time fully but frequency into that many
        contiguous bands (adaptive pooling), so the vector still says *where*
        in the spectrum a feature fired (EEG rhythms live in fixed bands).
        """
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"TFRNN expects (B, {self.in_channels}, F, T) spectrograms, got shape {tuple(x.shape)}")
        h = self.stem(x).permute(0, 2, 3, 1).contiguous()  # (B, F, T, D)
        scales: list[Tensor] = []
        for i, block in enumerate(self.blocks):
            if i > 0:
                h = _pool2x(h).contiguous()
            h = block(h)
            # mean/max over T, then over F-bands; one band = the global (F, T) pooling
            hm = F.adaptive_avg_pool1d(h.mean(dim=2).transpose(1, 2), self.freq_bands)  # (B, D, bands)
            hx = F.adaptive_max_pool1d(h.amax(dim=2).transpose(1, 2), self.freq_bands)
            scales.append(torch.cat([hm.flatten(1), hx.flatten(1)], dim=1))
        return scales

    def forward(self, x: Tensor) -> Tensor:
        scales = self.forward_scales(x)
        z = torch.cat(scales, dim=1) if self.multiscale else scales[-1]
        return self.head(z)
