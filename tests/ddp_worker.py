"""One rank of the DDP tests (tests/integration/test_pretrain_ddp.py), started by torchrun or run alone.

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/ddp_worker.py loop OUT [PROJECT] PARAMS
    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/ddp_worker.py cli TRLS-ARGS...

``loop``: when a tiny project is given, first ``pretrain_all`` with settings
that differ on rank 1 (it must refuse; the message is saved); then BYOL on
fixed synthetic spectrograms through ``pretrain_encoder`` (one process when
started without torchrun), saving per rank the loss curve, digests of the
online and target weights, and the first step's view A and gradients. ``cli``: ``trls`` as
typed, except that rank 1 adds ``--set $DDP_TEST_RANK1_SET`` when that is set.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# global batch 16 over 48 windows: 3 steps an epoch; tiny TFRNN, the project's views
N, BATCH, EPOCHS, SHAPE = 48, 16, 3, (1, 9, 9)


def state_digest(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def synthetic(params_path: Path) -> tuple[torch.nn.Module, torch.nn.Module, torch.Tensor]:
    from trls_core.config import load_params
    from trls_core.models.loading import build_encoder_from_params
    from trls_core.ssl.factory import build_ssl, build_views

    params = load_params(params_path)
    g = torch.Generator().manual_seed(123)
    x = torch.randn(N, *SHAPE, generator=g).abs()
    torch.manual_seed(0)
    enc = build_encoder_from_params(params, SHAPE[0])
    model = build_ssl(params, enc, params.model.encoder_kwargs()["rep_dim"])
    return model, build_views(params), x


def loop(out: Path, project: Path | None, params_path: Path) -> None:
    from trls_core import distributed
    from trls_core.config import load_params
    from trls_core.errors import ConfigError
    from trls_core.train import pretrain_encoder

    torch.set_num_threads(1)
    rank = int(os.environ.get("RANK", 0))
    result: dict = {"rank": rank}
    if project is not None:
        sets = ["pretrain.lr=0.5"] if rank == 1 else []
        from trls_core.stages.pretrain import pretrain_all

        try:
            pretrain_all(project, load_params(params_path, None, sets), progress=False)
            result["refused"] = None
        except ConfigError as exc:
            result["refused"] = str(exc)
    model, views, x = synthetic(params_path)
    first: list[torch.Tensor] = []  # the first step's view A (this rank's slice) and averaged gradients
    model.register_forward_pre_hook(lambda m, args: first.append(args[0].clone()) if not first else None)

    def grads(opt: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        if len(first) == 1:
            first.append(torch.cat([p.grad.reshape(-1) for g in opt.param_groups for p in g["params"]]))

    register_optimizer_step_pre_hook(grads)
    with distributed.session("cpu") as dist:
        hist = pretrain_encoder(
            model, x, views, epochs=EPOCHS, batch_size=BATCH, lr=3e-3, weight_decay=1e-4, tau_base=0.9,
            seed=7, warmup_epochs=1, progress=False, dist=dist,
        )  # fmt: skip
    result.update(
        losses=[h["loss"] for h in hist],
        online=state_digest(model.online_encoder),
        target=state_digest(model.target_encoder) + state_digest(model.target_projector),
    )
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"views": first[0], "grads": first[1]}, out / f"first_step_rank{rank}.pt")
    (out / f"rank{rank}.json").write_text(json.dumps(result))


def cli(args: list[str]) -> None:
    from trls_core.cli import app

    extra = os.environ.get("DDP_TEST_RANK1_SET")
    if extra and os.environ.get("RANK") == "1":
        args = [*args, "--set", extra]
    app(args, prog_name="trls")


if __name__ == "__main__":
    mode, rest = sys.argv[1], sys.argv[2:]
    if mode == "loop":
        loop(Path(rest[0]), Path(rest[1]) if len(rest) > 2 else None, Path(rest[-1]))
    else:
        cli(rest)
