"""TS2Vec (Yue et al., AAAI 2022): hierarchical contrast of overlapping crops.

TS2Vec needs no hand-made augmentations. From each series it takes two
random sub-series that overlap (contextual consistency): the same timestamp
seen in two different contexts, with a random binomial timestamp mask in
the encoder's input projection, must get the same representation. The loss
contrasts the per-timestamp representations of the overlap:

* instance-wise: at each time step, the 2B representations of the batch;
  the positive of sample i in view 1 is sample i in view 2, the other
  2B - 2 are negatives;
* temporal: within each sample, the 2T time steps of both views; the
  positive of step t in view 1 is step t in view 2;

and repeats both after max-pooling the time axis by 2, level after level,
until one time step is left (where only the instance loss applies), then
averages over the levels: ``hierarchical_contrastive_loss``. The similarity
is the plain dot product (no normalisation, no temperature), exactly as in
the official code, which these functions follow line by line.

Interface: ``TS2Vec`` looks like ``trls_core.ssl.byol.BYOL`` so the same
loop (``trls_core.train.pretrain_encoder``) trains it: ``forward(a, b)`` gives
the scalar loss, ``online_parameters()`` are the encoder's parameters,
``update_target`` is a no-op (no target network), ``encoder`` is what the
downstream evaluation uses. The loop is meant to pass the SAME raw batch
twice (``augment=None``); TS2Vec makes its own views inside ``forward``. If
the two arguments differ, only ``a`` is used and ``b`` is ignored: the two
views of TS2Vec must come from the same series, so there is no sensible use
for a second, differently augmented copy.

Choices and deviations: the crop logic is the official ``TS2Vec.fit`` one
(one crop length and overlap per batch, one random shift per sample),
vectorised with index tensors and drawn from the global torch RNG, so the
loop's ``torch.manual_seed`` makes it reproducible. The official code
encodes with a stochastic-weight-averaged copy of the encoder
(``AveragedModel``); here the trained encoder itself is evaluated, which
keeps ``update_target`` a no-op and saves a copy of the weights.
``max_train_length`` takes one random window of that length per batch, as
``fit`` does (it does not split the data set into sections beforehand);
it bounds the cost of long windows on a small CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from trls_core.models.ts2vec import TS2VecEncoder
from trls_core.ssl.base import NoTargetMethod

__all__ = [
    "instance_contrastive_loss",
    "temporal_contrastive_loss",
    "hierarchical_contrastive_loss",
    "TS2VecCrop",
    "sample_crop",
    "take_per_row",
    "TS2Vec",
]


def _check_pair(name: str, z1: Tensor, z2: Tensor) -> None:
    if z1.dim() != 3 or z1.shape != z2.shape or z1.shape[0] < 1 or z1.shape[1] < 1:
        raise ValueError(
            f"{name}: z1 and z2 must both be (B, T, D) with B, T >= 1 and equal shapes, "
            f"got {tuple(z1.shape)} and {tuple(z2.shape)}"
        )


def _contrast(z: Tensor, n: int) -> Tensor:
    """z: (G, 2n, D), rows 0..n-1 from view 1 and n..2n-1 their positives from view 2.

    For every row, -log softmax of its dot products with the 2n - 1 OTHER
    rows (the diagonal is cut out with the official tril/triu shift), taken
    at the positive; mean over the groups and rows of each view, then over
    the two views.
    """
    sim = torch.matmul(z, z.transpose(1, 2))  # G x 2n x 2n
    logits = torch.tril(sim, diagonal=-1)[:, :, :-1]  # G x 2n x (2n-1)
    logits = logits + torch.triu(sim, diagonal=1)[:, :, 1:]
    logits = -F.log_softmax(logits, dim=-1)
    i = torch.arange(n, device=z.device)
    return (logits[:, i, n + i - 1].mean() + logits[:, n + i, i].mean()) / 2


def instance_contrastive_loss(z1: Tensor, z2: Tensor) -> Tensor:
    """Contrast the 2B samples at each time step; 0 for B = 1 (no negatives)."""
    _check_pair("instance_contrastive_loss", z1, z2)
    b = z1.shape[0]
    if b == 1:
        return z1.new_tensor(0.0)
    z = torch.cat([z1, z2], dim=0).transpose(0, 1)  # T x 2B x D
    return _contrast(z, b)


def temporal_contrastive_loss(z1: Tensor, z2: Tensor) -> Tensor:
    """Contrast the 2T time steps within each sample; 0 for T = 1."""
    _check_pair("temporal_contrastive_loss", z1, z2)
    t = z1.shape[1]
    if t == 1:
        return z1.new_tensor(0.0)
    z = torch.cat([z1, z2], dim=1)  # B x 2T x D
    return _contrast(z, t)


def hierarchical_contrastive_loss(z1: Tensor, z2: Tensor, alpha: float = 0.5, temporal_unit: int = 0) -> Tensor:
    """Mean over levels of alpha·instance + (1 - alpha)·temporal, max-pooling time by 2 between levels.

    Level d (0-based) has T // 2**d steps; the temporal term is skipped on
    levels d < ``temporal_unit``; the last level (one time step) has only
    the instance term. As in the official code, the divisor is the number
    of levels, whichever terms they had.
    """
    _check_pair("hierarchical_contrastive_loss", z1, z2)
    loss = z1.new_zeros(())
    d = 0
    while z1.size(1) > 1:
        if alpha != 0:
            loss = loss + alpha * instance_contrastive_loss(z1, z2)
        if d >= temporal_unit and 1 - alpha != 0:
            loss = loss + (1 - alpha) * temporal_contrastive_loss(z1, z2)
        d += 1
        z1 = F.max_pool1d(z1.transpose(1, 2), kernel_size=2).transpose(1, 2)
        z2 = F.max_pool1d(z2.transpose(1, 2), kernel_size=2).transpose(1, 2)
    if z1.size(1) == 1:
        if alpha != 0:
            loss = loss + alpha * instance_contrastive_loss(z1, z2)
        d += 1
    return loss / d


@dataclass(frozen=True)
class TS2VecCrop:
    """One batch's crops, in the official names (positions within a window of length ts_l).

    The overlap is ``[crop_left, crop_right)`` (length ``crop_l``); view 1
    covers ``[crop_eleft, crop_right)``, view 2 ``[crop_left, crop_eright)``;
    sample i is shifted by ``crop_offset[i]``, so its view 1 starts at
    ``crop_offset[i] + crop_eleft``. Every index stays inside the window.
    """

    crop_l: int
    crop_left: int
    crop_right: int
    crop_eleft: int
    crop_eright: int
    crop_offset: Tensor  # (B,) int64

    @property
    def len1(self) -> int:
        return self.crop_right - self.crop_eleft

    @property
    def len2(self) -> int:
        return self.crop_eright - self.crop_left


def _randint(low: int, high: int) -> int:
    """numpy.random.randint semantics (high exclusive) on the global torch RNG."""
    return int(torch.randint(low, high, ()).item())


def sample_crop(ts_l: int, batch: int, temporal_unit: int = 0, device: torch.device | str | None = None) -> TS2VecCrop:
    """Draw the official ``TS2Vec.fit`` crops for ``batch`` series of length ``ts_l``.

    The integers are drawn on the CPU generator (so the same seed gives the
    same crops on any device); ``crop_offset`` is then moved to ``device``.
    """
    min_l = 2 ** (temporal_unit + 1)
    if ts_l < min_l:
        raise ValueError(f"sample_crop: windows need at least 2**(temporal_unit + 1) = {min_l} time steps, got {ts_l}")
    if batch < 1:
        raise ValueError(f"sample_crop: batch must be >= 1, got {batch}")
    crop_l = _randint(min_l, ts_l + 1)
    crop_left = _randint(0, ts_l - crop_l + 1)
    crop_right = crop_left + crop_l
    crop_eleft = _randint(0, crop_left + 1)
    crop_eright = _randint(crop_right, ts_l + 1)
    crop_offset = torch.randint(-crop_eleft, ts_l - crop_eright + 1, (batch,))
    return TS2VecCrop(crop_l, crop_left, crop_right, crop_eleft, crop_eright, crop_offset.to(device))


def take_per_row(x: Tensor, start: Tensor, length: int) -> Tensor:
    """x (B, C, L) -> (B, C, length), row i taken from ``start[i]`` on; one gather, no loop."""
    idx = start.to(x.device).view(-1, 1) + torch.arange(length, device=x.device)  # (B, length)
    return x.gather(2, idx.unsqueeze(1).expand(-1, x.shape[1], -1))


class TS2Vec(NoTargetMethod):
    """TS2Vec pretraining around a ``TS2VecEncoder``, with BYOL's interface.

    Args:
        encoder: the ``TS2VecEncoder`` (anything with
            ``forward_timestamps(x, mask) -> (B, T, D)`` works); it is the
            only trained module and the downstream representation.
        alpha: weight of the instance term (1 - alpha for the temporal one).
        temporal_unit: lowest hierarchy level with a temporal term; also
            sets the minimum crop length 2**(temporal_unit + 1).
        max_train_length: if set and windows are longer, each batch first
            takes one random sub-window of this length.
    """

    def __init__(
        self,
        encoder: TS2VecEncoder,
        alpha: float = 0.5,
        temporal_unit: int = 0,
        max_train_length: int | None = None,
    ) -> None:
        super().__init__()
        if not callable(getattr(encoder, "forward_timestamps", None)):
            raise TypeError(f"TS2Vec: encoder must have forward_timestamps(x, mask), got {type(encoder).__name__}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"TS2Vec: alpha must be in [0, 1], got {alpha}")
        if temporal_unit < 0:
            raise ValueError(f"TS2Vec: temporal_unit must be >= 0, got {temporal_unit}")
        if max_train_length is not None and max_train_length < 2 ** (temporal_unit + 1):
            raise ValueError(
                f"TS2Vec: max_train_length must be >= 2**(temporal_unit + 1) = {2 ** (temporal_unit + 1)}, "
                f"got {max_train_length}"
            )
        self.backbone = encoder
        self.alpha = alpha
        self.temporal_unit = temporal_unit
        self.max_train_length = max_train_length

    def crop_views(self, x: Tensor) -> tuple[Tensor, Tensor, TS2VecCrop]:
        """The two overlapping raw views (B, C, len1) and (B, C, len2) of x (B, C, L), and their crop.

        Applies ``max_train_length`` first. The last ``crop_l`` steps of view
        1 and the first ``crop_l`` steps of view 2 are the same samples.
        """
        if x.dim() != 3:
            raise ValueError(f"TS2Vec expects raw windows (B, C, L), got shape {tuple(x.shape)}")
        if self.max_train_length is not None and x.shape[2] > self.max_train_length:
            w = _randint(0, x.shape[2] - self.max_train_length + 1)
            x = x[:, :, w : w + self.max_train_length]
        crop = sample_crop(x.shape[2], x.shape[0], self.temporal_unit, device=x.device)
        v1 = take_per_row(x, crop.crop_offset + crop.crop_eleft, crop.len1)
        v2 = take_per_row(x, crop.crop_offset + crop.crop_left, crop.len2)
        return v1, v2, crop

    def forward(self, a: Tensor, b: Tensor | None = None) -> Tensor:
        """Scalar hierarchical contrastive loss of two random overlapping crops of ``a``; ``b`` is ignored."""
        v1, v2, crop = self.crop_views(a)
        out1 = self.backbone.forward_timestamps(v1, mask=True)[:, -crop.crop_l :]
        out2 = self.backbone.forward_timestamps(v2, mask=True)[:, : crop.crop_l]
        return hierarchical_contrastive_loss(out1, out2, self.alpha, self.temporal_unit)
