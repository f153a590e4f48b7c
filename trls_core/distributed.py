"""Data-parallel pretraining under ``torchrun``: the process group, the shards and what ranks must agree on.

``trls pretrain`` started by ``torchrun --nproc-per-node N`` finds ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` in its environment and runs as one of N
ranks (gloo on the CPU, nccl on a GPU). The design keeps a DDP run the SAME
run as one process with the same settings, so fingerprints, checkpoints and
resume do not depend on the number of ranks:

- ``pretrain.batch_size`` is the GLOBAL batch. Every rank draws the same
  seeded permutation and keeps a contiguous slice of each global batch
  (``batch_size / world_size`` windows; it must divide).
- The two views are drawn for the whole global batch from the shared seeded
  stream on every rank, and each rank keeps its slice: the views differ
  across ranks (other windows, other draws) and equal the one-process views.
  Augmenting the whole batch costs ~2 % of a TFRNN step (measured); the
  model's own draws (dropout) come from a per-rank stream instead
  (:class:`RankStream`), so ranks never repeat each other's masks.
- Gradients are averaged with one ``all_reduce`` of the flattened gradients
  per step (:meth:`DistContext.all_reduce_grads`), not the DDP wrapper: the
  SSL modules keep their own methods (``update_target``,
  ``online_parameters``), the EMA target has no gradients to sync anyway,
  and there is nothing for DDP's bucketing to overlap on a small model.
  Identical averaged gradients give identical online weights, hence an
  identical EMA target on every rank.
- BatchNorm statistics are taken over the global batch
  (:func:`synced_batch_norm`): ``nn.SyncBatchNorm`` refuses CPU tensors,
  so its two all-reduces (sum, then centred sum of squares) are done here
  with an autograd-aware all-reduce.

Rank 0 writes files; the others wait at a barrier.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from trls_core.errors import ConfigError, TrlsError

__all__ = [
    "DistContext",
    "RankStream",
    "from_env",
    "held_by_main",
    "session",
    "settings_digest",
    "synced_batch_norm",
    "torchrun_env",
]

# A rank that never arrives (crashed before the first collective, or started with other settings on another
# node) fails the others after this long instead of torch's 30-minute default.
TIMEOUT = datetime.timedelta(minutes=10)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def torchrun_env() -> tuple[int, int, int] | None:
    """``(rank, world_size, local_rank)`` when started by torchrun with more than one rank, else None."""
    world = os.environ.get("WORLD_SIZE")
    if world is None or int(world) <= 1:
        return None
    try:
        return int(os.environ["RANK"]), int(world), int(os.environ.get("LOCAL_RANK", os.environ["RANK"]))
    except KeyError as exc:
        raise ConfigError(f"WORLD_SIZE={world} is set but {exc.args[0]} is not: start ranks with torchrun") from None


@dataclass(frozen=True)
class DistContext:
    """This process's place in the process group, and the collectives the training loop needs."""

    rank: int
    world_size: int
    local_rank: int
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def local_batch(self, batch_size: int) -> int:
        """The windows each rank trains on per step; ``batch_size`` is the global batch."""
        if batch_size % self.world_size:
            raise ConfigError(
                f"pretrain.batch_size {batch_size} (the global batch) does not split over {self.world_size} "
                f"ranks; use a multiple of {self.world_size}"
            )
        return batch_size // self.world_size

    def shard(self, t: Tensor) -> Tensor:
        """This rank's contiguous slice of a global batch (rows)."""
        b = t.shape[0] // self.world_size
        return t[self.rank * b : (self.rank + 1) * b]

    def all_reduce_grads(self, params: list[nn.Parameter]) -> None:
        """Average the gradients over ranks, flattened into one all-reduce."""
        import torch.distributed as dist

        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat.div_(self.world_size)
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def mean(self, t: Tensor) -> Tensor:
        """The mean of ``t`` over ranks (a copy)."""
        import torch.distributed as dist

        out = t.detach().clone()
        dist.all_reduce(out)
        return out / self.world_size

    def barrier(self) -> None:
        import torch.distributed as dist

        dist.barrier()

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value`` (picklable), in rank order."""
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    def agree(self, value: Any, what: str) -> None:
        """Raise :class:`ConfigError` naming the ranks when they hold different ``value``s."""
        values = self.gather(value)
        if all(v == values[0] for v in values):
            return
        groups: dict[str, list[int]] = {}
        for rank, v in enumerate(values):
            groups.setdefault(repr(v), []).append(rank)
        detail = "; ".join(f"rank{'s' if len(r) > 1 else ''} {', '.join(map(str, r))}: {v}" for v, r in groups.items())
        raise ConfigError(f"the {self.world_size} torchrun ranks disagree on {what} ({detail})")


def settings_digest(settings: dict[str, Any]) -> str:
    """A short hash of resolved settings, compared across ranks before anything is trained."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def from_env(device: str) -> DistContext | None:
    """Join the process group torchrun describes (None outside torchrun); ``device`` picks the backend."""
    env = torchrun_env()
    if env is None:
        return None
    import torch.distributed as dist

    rank, world, local_rank = env
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=TIMEOUT)
    return DistContext(rank, world, local_rank, backend)


@contextlib.contextmanager
def session(device: str) -> Iterator[DistContext | None]:
    """The process group for a block when started by torchrun (destroyed after it), else None."""
    ctx = from_env(device)
    try:
        yield ctx
    finally:
        if ctx is not None:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


@contextlib.contextmanager
def held_by_main(
    ctx: DistContext | None, enter: Callable[[], contextlib.AbstractContextManager[Any]]
) -> Iterator[None]:
    """Hold ``enter()`` (a lock) in rank 0 for every rank; when rank 0 is refused, every rank stops.

    Without ranks, simply holds it. The other ranks would otherwise wait for
    rank 0 at their first collective until :data:`TIMEOUT`.
    """
    if ctx is None:
        with enter():
            yield
        return
    with contextlib.ExitStack() as stack:
        refused: TrlsError | None = None
        if ctx.is_main:
            try:
                stack.enter_context(enter())
            except TrlsError as exc:
                refused = exc
        first = ctx.gather(None if refused is None else str(refused))[0]
        if refused is not None:
            raise refused
        if first is not None:
            raise ConfigError(f"rank 0 could not start: {first}")
        yield


def _capture(devices: list[int]) -> tuple[Tensor, list[Tensor]]:
    return torch.get_rng_state(), [torch.cuda.get_rng_state(d) for d in devices]


def _restore(state: tuple[Tensor, list[Tensor]], devices: list[int]) -> None:
    torch.set_rng_state(state[0])
    for d, s in zip(devices, state[1]):
        torch.cuda.set_rng_state(s, d)


class RankStream:
    """A per-rank global-RNG stream, swapped in around what each rank draws for itself (dropout masks).

    The shared stream (the same on every rank) draws the views; this one,
    seeded with ``seed`` (the caller mixes in the rank and epoch), keeps ranks
    from repeating each other's draws while staying reproducible.
    """

    def __init__(self, seed: int, devices: list[int]) -> None:
        self.devices = devices
        shared = _capture(devices)
        torch.manual_seed(seed)
        self.state = _capture(devices)
        _restore(shared, devices)

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        shared = _capture(self.devices)
        _restore(self.state, self.devices)
        try:
            yield
        finally:
            self.state = _capture(self.devices)
            _restore(shared, self.devices)


class _SumOverRanks(torch.autograd.Function):
    """Sum of a tensor over ranks; its gradient is the sum of the ranks' gradients (each rank's loss reads it)."""

    @staticmethod
    def forward(ctx: Any, t: Tensor) -> Tensor:
        import torch.distributed as dist

        out = t.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        import torch.distributed as dist

        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def _global_batch_norm(bn: Any, x: Tensor) -> Tensor:
    """``bn``'s training-mode forward with mean/variance over every rank's batch (differentiable)."""
    if not bn.training:
        return type(bn).forward(bn, x)
    all_reduce = _SumOverRanks.apply
    dims = [d for d in range(x.dim()) if d != 1]
    shape = [1, x.shape[1]] + [1] * (x.dim() - 2)
    xf = x.float()
    count = xf.new_tensor([x.numel() // x.shape[1]])
    sums = all_reduce(torch.cat([xf.sum(dims), count]))
    n = sums[-1]
    mean = sums[:-1] / n
    centred = xf - mean.view(shape)
    var = all_reduce((centred * centred).sum(dims)) / n  # two passes: as stable as the one-process batch norm
    y = centred * torch.rsqrt(var + bn.eps).view(shape)
    if bn.affine:
        y = y * bn.weight.view(shape) + bn.bias.view(shape)
    if bn.track_running_stats and bn.running_mean is not None:
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)
            m = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
            bn.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            bn.running_var.mul_(1 - m).add_(var.detach() * (n / (n - 1).clamp(min=1)), alpha=m)
    return y.to(x.dtype)


@contextlib.contextmanager
def synced_batch_norm(model: nn.Module, ctx: DistContext | None) -> Iterator[nn.Module]:
    """Every BatchNorm of ``model`` normalises over the global batch for the block (no-op without ranks).

    The modules keep their class, parameters and state-dict keys (the
    forward is swapped per instance and restored after), so checkpoints and
    the saved encoder are the same files as in one process.
    """
    patched = [m for m in model.modules() if isinstance(m, _BATCH_NORMS)] if ctx is not None else []
    for m in patched:
        m.forward = functools.partial(_global_batch_norm, m)  # type: ignore[method-assign]
    try:
        yield model
    finally:
        for m in patched:
            del m.forward
