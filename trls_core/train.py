"""Pure training loops: tensors in, metrics dicts out.

No MLflow, no Prefect, no file I/O: the caller passes callbacks
(``on_checkpoint`` for saving, then ``on_epoch`` for metrics) and decides
what to do with them. The checkpoint comes first, so a logger that fails
(an MLflow store that is down or locked) never costs the epoch. Fine-tuning
and evaluation live in ``trls_core.evaluate``.

Determinism and resume: every epoch draws its shuffling from a generator
seeded with ``seed + epoch`` and runs under a forked global RNG seeded the
same way (kornia augmentations and dropout use the global RNG), and the LR
and tau schedules are functions of the global step. So a run resumed at
``start_epoch = k`` from the model and optimizer state saved after k epochs
ends with the same weights as an uninterrupted run (bit-for-bit on the CPU;
on CUDA the cuDNN RNN kernels are not deterministic, two identical runs
differed in the 6th digit of the loss on an H100), and the caller's RNG
state is left untouched.

Data parallel (``dist``, :mod:`trls_core.distributed`): ``batch_size`` is the
global batch; every rank walks the same permutation, draws the views of the
whole global batch from the same stream and trains on its slice, with
gradients, BatchNorm statistics and the reported loss taken over all ranks.
Two ranks therefore follow one process with the same batch up to float
summation order (and dropout masks, drawn per rank).

``precision: bf16`` runs the forward under ``torch.autocast`` (weights,
gradients and optimizer stay fp32); ``compile`` compiles the encoder in place
(``nn.Module.compile``: state-dict keys unchanged).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from trls_core.distributed import DistContext, RankStream, synced_batch_norm
from trls_core.ssl.byol import BYOL, cosine_tau

__all__ = ["pretrain_encoder", "lr_at", "DivergedError", "CompileFailed", "RecordPairs"]


class RecordPairs:
    """Draws, for each window, another window of the same record: the "record" positive pair.

    Why: a dataset scored per record (CinC 2017) asks the representation
    for what a whole recording shares (its rhythm), not for what one 10-s
    window shows. Pairing two windows of one record as the positive pair
    (each still through its own TRLS view) asks BYOL for exactly that
    invariance (CLOCS, Kiyasseh et al. 2021, does the same with contrastive
    learning). A record with a single window pairs it with itself, i.e.
    the plain two-view pair.
    """

    def __init__(self, record_of_window: Tensor) -> None:
        from trls_core.pooling import Groups

        rec = torch.as_tensor(record_of_window).long().reshape(-1)
        if rec.numel() == 0:
            raise ValueError("RecordPairs: no windows")
        g = Groups.of(rec.numpy())
        self.row, self.order = torch.as_tensor(g.inverse), torch.as_tensor(g.order)
        self.counts, self.starts = torch.as_tensor(g.counts), torch.as_tensor(g.starts)
        self.pos = torch.empty_like(self.row)  # each window's position among its record's windows
        self.pos[self.order] = torch.arange(rec.numel()) - self.starts[self.row[self.order]]

    def partner(self, idx: Tensor, gen: torch.Generator) -> Tensor:
        """For each window index in ``idx``, a uniformly drawn *other* window of its record (itself if alone)."""
        r = self.row[idx]
        c = self.counts[r]
        # an offset in [0, c - 2] past the window itself (unused for a record of one window)
        off = (torch.rand(idx.numel(), generator=gen) * (c - 1)).long().clamp(max=(c - 2).clamp(min=0))
        q = torch.where(c > 1, (self.pos[idx] + 1 + off) % c, self.pos[idx])
        return self.order[self.starts[r] + q]


class DivergedError(FloatingPointError):
    """The loss became NaN/inf; the message names the epoch and step."""


class CompileFailed(RuntimeError):
    """``torch.compile`` of the encoder failed at its first call (no compiler, an unsupported op)."""


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


def lr_at(step: int, total_steps: int, base_lr: float, warmup_steps: int = 0) -> float:
    """Linear warm-up to ``base_lr`` over ``warmup_steps``, then cosine decay to 0 at ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    decay = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / decay, 1.0)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def _epoch_rng_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch)) % (2**63 - 1)


def _fork_devices(device: torch.device) -> list[int]:
    if device.type == "cuda":
        return [device.index if device.index is not None else torch.cuda.current_device()]
    return []


def pretrain_encoder(
    model: BYOL,
    x: Tensor,
    augment: nn.Module | Callable[[Tensor], tuple[Tensor, Tensor]] | None,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    tau_base: float,
    device: str = "cpu",
    seed: int = 0,
    warmup_epochs: int = 0,
    start_epoch: int = 0,
    optimizer_state: dict[str, Any] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    on_checkpoint: Callable[[int, BYOL, torch.optim.Optimizer], None] | None = None,
    progress: bool = True,
    pairs: RecordPairs | None = None,
    curve: list[dict[str, Any]] | None = None,
    dist: DistContext | None = None,
    precision: str = "fp32",
    compile: bool = False,
) -> list[dict[str, Any]]:
    """BYOL pretraining of ``model`` on spectrograms ``x`` (N, C, F, T), kept on the CPU.

    AdamW over the online parameters; LR: linear warm-up for
    ``warmup_epochs`` then cosine to 0; target momentum tau: cosine from
    ``tau_base`` to 1 over all steps. Batches are shuffled, the last
    incomplete batch is dropped (BatchNorm dislikes tiny batches), moved to
    ``device`` (float16 storage is upcast) and augmented there as a whole.
    ``augment(batch) -> (view_a, view_b)``; None uses the batch itself for
    both views (the "no augmentation" ablation).

    ``epochs`` is the TOTAL number of epochs; a resumed run passes
    ``start_epoch`` = epochs already done and the ``optimizer_state`` saved
    with the model. Returns one dict per epoch run here: ``{"epoch"`` (0-based),
    ``"loss"`` (mean over the epoch's steps), ``"lr"``, ``"tau"`` (last used),
    ``"seconds"}``. After each epoch: the record is appended to ``curve``
    (the caller's list, e.g. the history restored from a checkpoint, so the
    checkpoint can carry the whole curve), then
    ``on_checkpoint(epochs_done, model, optimizer)``, then ``on_epoch(record)``:
    saving first, so an exception from ``on_epoch`` (a failing logger) leaves
    the epoch saved and a rerun resumes after it.

    ``pairs`` (:class:`RecordPairs`) makes the positive pair two windows of
    one record: view A of the batch window, view B of its drawn partner
    (``augment.pair(x1, x2)``). The partners are drawn from the epoch's
    generator, so resume stays exact.

    ``dist`` trains this rank's share of each global batch (module
    docstring); ``on_checkpoint`` / ``on_epoch`` run on every rank (the
    caller decides which rank writes). ``precision`` (``fp32`` | ``bf16``)
    and ``compile``: module docstring; a compile that fails raises
    :class:`CompileFailed`.
    """
    if x.dim() < 2:
        raise ValueError(f"pretrain_encoder: x must be (N, ...) with N windows, got shape {tuple(x.shape)}")
    n = x.shape[0]
    if batch_size < 1 or n < batch_size:
        raise ValueError(
            f"pretrain_encoder: batch_size must be in [1, N={n}] (last incomplete batch is dropped), got {batch_size}"
        )
    if not 0 <= start_epoch <= epochs:
        raise ValueError(f"pretrain_encoder: start_epoch must be in [0, epochs={epochs}], got {start_epoch}")
    if precision not in PRECISIONS:
        raise ValueError(f"pretrain_encoder: precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    if dist is not None:
        dist.local_batch(batch_size)  # refuses a global batch that does not split over the ranks
    dev = torch.device(device)
    model.to(dev)
    if compile:
        model.encoder.compile()
    model.train()
    if augment is not None and isinstance(augment, nn.Module):
        augment.to(dev)
    if pairs is not None:
        if augment is None or not hasattr(augment, "pair"):
            raise ValueError("pretrain_encoder: record pairs need two views with a pair(x1, x2) method")
        if pairs.row.numel() != n:
            raise ValueError(f"pretrain_encoder: record pairs for {pairs.row.numel()} windows, x has {n}")

    steps_per_epoch = n // batch_size
    total_steps = epochs * steps_per_epoch
    warmup_steps = warmup_epochs * steps_per_epoch
    optimizer = torch.optim.AdamW(model.online_parameters(), lr=lr, weight_decay=weight_decay)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)

    history: list[dict[str, Any]] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=(epochs - start_epoch) * steps_per_epoch, desc="byol", unit="step", leave=False)
    try:
        for epoch in range(start_epoch, epochs):
            t0 = time.perf_counter()
            gen = torch.Generator().manual_seed(_epoch_rng_seed(seed, epoch))
            perm = torch.randperm(n, generator=gen)
            loss_sum = torch.zeros((), device=dev)
            cur_lr = cur_tau = float("nan")
            with torch.random.fork_rng(devices=_fork_devices(dev)), synced_batch_norm(model, dist):
                torch.manual_seed(_epoch_rng_seed(seed, epoch))
                own = contextlib.nullcontext
                if dist is not None:  # the rank's own draws (dropout); views come from the shared stream
                    own = RankStream(_epoch_rng_seed(seed * 7919 + dist.rank + 1, epoch), _fork_devices(dev)).active
                for i in range(steps_per_epoch):
                    step = epoch * steps_per_epoch + i
                    cur_lr = lr_at(step, total_steps, lr, warmup_steps)
                    cur_tau = cosine_tau(step, total_steps, tau_base, 1.0)
                    for group in optimizer.param_groups:
                        group["lr"] = cur_lr
                    idx = perm[i * batch_size : (i + 1) * batch_size]
                    xb = x[idx].to(dev, non_blocking=True).float()
                    if pairs is not None:
                        xp = x[pairs.partner(idx, gen)].to(dev, non_blocking=True).float()
                        a, b = augment.pair(xb, xp)  # type: ignore[union-attr]
                    else:
                        a, b = (xb, xb) if augment is None else augment(xb)
                    if dist is not None:  # views drawn for the global batch; this rank trains on its slice
                        a, b = dist.shard(a), dist.shard(b)
                    with own():
                        loss = _forward(model, a, b, dev, precision, compile and step == start_epoch * steps_per_epoch)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if dist is not None:
                        dist.all_reduce_grads(model.online_parameters())
                    optimizer.step()
                    model.update_target(cur_tau)
                    loss_sum += loss.detach()
                    if bar is not None:
                        bar.update(1)
                        if i % 10 == 0 or i == steps_per_epoch - 1:
                            bar.set_postfix(epoch=epoch, loss=f"{loss.item():.4f}")
            if dist is not None:  # each rank's loss is the mean over its slice: the global batch's is their mean
                loss_sum = dist.mean(loss_sum)
            mean_loss = float(loss_sum.item()) / steps_per_epoch
            if not math.isfinite(mean_loss):
                raise DivergedError(
                    f"pretrain_encoder: loss is {mean_loss} in epoch {epoch}; lower lr ({lr}) or check the input"
                )
            record = {
                "epoch": epoch,
                "loss": mean_loss,
                "lr": cur_lr,
                "tau": cur_tau,
                "seconds": time.perf_counter() - t0,
            }
            history.append(record)
            if curve is not None:
                curve.append(record)
            if on_checkpoint is not None:  # first: a failing on_epoch must not cost the epoch
                on_checkpoint(epoch + 1, model, optimizer)
            if on_epoch is not None:
                on_epoch(record)
    finally:
        if bar is not None:
            bar.close()
    return history


def _forward(model: nn.Module, a: Tensor, b: Tensor, dev: torch.device, precision: str, first_compiled: bool) -> Tensor:
    """The loss under the chosen autocast; a compiled encoder's first call is where compilation fails."""
    dtype = PRECISIONS[precision]
    with torch.autocast(dev.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        if not first_compiled:
            return model(a, b)
        try:
            return model(a, b)
        except Exception as exc:  # inductor/dynamo raise many types; the user's fix is the same
            raise CompileFailed(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}") from exc
