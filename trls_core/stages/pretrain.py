"""Pretraining step: the train split -> a self-supervised encoder (TRLS: BYOL on spectrograms).

Reads params `model`, `augment`, `pretrain` (and the dataset's spectrogram
outputs; raw-input baselines also read the windows Parquet, see
``trls_core.data.raw``). ``pretrain.method`` picks the method
(``trls_core.ssl.factory``); all of them run through the same loop. Writes,
per seed, ``models/<dataset>/<encoder>_seed<S>/``:
``checkpoint.safetensors`` (every epoch, atomically, before the epoch is
reported to ``on_epoch``: a killed run, or one whose logger failed, resumes
from it when rerun with the same parameters), ``encoder.safetensors`` then
``encoder.json`` (what evaluation and the registry load; the JSON, written
last, records the weights' sha256), ``loss_curve.png``.

Integrity: a finished seed is reused only when its ``encoder.json`` has the
current fingerprint AND the weights match the sha256 it records; a mismatch
(weights from another write) is logged and the seed is rebuilt (from its
final checkpoint when that is current, else retrained). An encoder saved
before the digest was recorded is accepted once: its digest is computed and
added to ``encoder.json`` (logged), and checked from then on.

:func:`pretrain_all` (``trls pretrain``) holds the workspace lock
(:mod:`trls_core.locks`) while it writes ``models/``.

Under ``torchrun --nproc-per-node N`` (:mod:`trls_core.distributed`) every
rank trains its share of each global batch; the ranks first compare a hash of
their resolved settings (a mismatch names the ranks and nothing starts), then
agree on what to reuse or resume from (all read the same checkpoint); rank 0
holds the lock and writes every file while the others wait at a barrier. The
fingerprint does not include the number of ranks: the run is the same run.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from trls_core.checkpoint import (
    load_checkpoint,
    optimizer_state_to_tensors,
    save_checkpoint,
    tensors_to_optimizer_state,
)
from trls_core.config import Params
from trls_core.data.tensors import load_meta, load_split
from trls_core.distributed import DistContext
from trls_core.errors import ConfigError, DataError
from trls_core.io import atomic_path, sha256_file, write_json
from trls_core.jsonfile import read_json_object
from trls_core.locks import workspace_lock
from trls_core.models.loading import (
    WEIGHTS_SHA_KEY,
    build_encoder_from_params,
    encoder_config,
    verified_weights_sha256,
)
from trls_core.paths import model_dir, spectrogram_dir
from trls_core.runtime import resolve_device

logger = logging.getLogger(__name__)


def fingerprint(params: Params, seed: int, data_meta: dict[str, Any]) -> str:
    """Hash of everything that determines the trained weights (not device/threads).

    A checkpoint is resumed only when its fingerprint matches, so changing
    a hyper-parameter never silently continues an unrelated run. Only what
    the method reads is hashed (the chosen encoder's section, the views it
    trains on), so e.g. editing the ``cnn`` sizes never retrains a TFRNN.
    """
    from trls_core.ssl.factory import views_fingerprint

    method = params.pretrain.method
    pre = (
        {"method": method, "dataset": params.pretrain.dataset}
        if method == "none"
        else params.pretrain.model_dump(
            exclude={"seeds", "device", "threads", "max_train_length", "positives", "precision", "compile"}
        )
    )
    if method == "ts2vec" and params.pretrain.max_train_length is not None:
        # only the method that reads it, and only when set: stored runs of every method stay current
        pre["max_train_length"] = params.pretrain.max_train_length
    if params.pretrain.positives != "views":  # only when set, for the same reason
        pre["positives"] = params.pretrain.positives
    if method != "none" and params.pretrain.precision != "fp32":  # bf16 changes the weights; compile does not
        pre["precision"] = params.pretrain.precision
    blob = {
        "encoder": {"name": params.model.encoder, "kwargs": params.model.encoder_kwargs()},
        "heads": params.model.heads.model_dump() if method in ("byol", "simclr", "ts_tcc") else None,
        "views": views_fingerprint(params),
        "pretrain": pre,
        "seed": seed,
        "data": {"parquet_sha256": data_meta.get("parquet_sha256"), "stft": data_meta.get("stft")},
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


def train_inputs(root: Path, params: Params, split: str = "train") -> torch.Tensor:
    """The windows the encoder reads: spectrograms, or standardised raw windows for raw encoders."""
    from trls_core.ssl.factory import input_kind

    ds = params.pretrain.dataset
    if input_kind(params) == "raw":
        from trls_core.data.raw import load_raw_splits

        return load_raw_splits(root, ds, splits=(split,))[split].x
    return load_split(spectrogram_dir(root, ds), split).x


def training_subset(n: int, fraction: float, seed: int) -> torch.Tensor:
    """Seeded random subset of the train windows (robustness protocol: K subsets)."""
    if fraction >= 1.0:
        return torch.arange(n)
    g = torch.Generator().manual_seed(10_000 + seed)
    k = max(2, int(round(fraction * n)))
    return torch.randperm(n, generator=g)[:k].sort().values


def pretrain_seed(
    root: Path,
    params: Params,
    seed: int,
    progress: bool = True,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    force: bool = False,
    dist: DistContext | None = None,
) -> Path:
    """Pretrain (or resume, or skip if done) one seed; returns the model folder.

    ``force`` trains from scratch: neither a finished model nor a checkpoint
    with the same parameters is reused (a forced retrain of the pipeline).

    ``pretrain.method: none`` trains nothing: the seeded random init is
    saved as the "pretrained" encoder, so the supervised-from-scratch
    baseline goes through the same evaluation steps.

    ``dist``: this process is one torchrun rank (module docstring); only
    rank 0 writes and calls ``on_epoch``.
    """
    from trls_core.ssl.factory import build_ssl, build_views
    from trls_core.train import CompileFailed, DivergedError, pretrain_encoder

    pp = params.pretrain
    sdir = spectrogram_dir(root, pp.dataset)
    meta = load_meta(sdir)
    train_x = train_inputs(root, params)
    subset = training_subset(len(train_x), pp.subset_fraction, seed)
    x = train_x[subset]
    pairs = None
    if pp.positives == "record":
        from trls_core.data.tensors import load_records
        from trls_core.train import RecordPairs

        if not meta.get("records"):
            raise DataError(
                f"{sdir / 'meta.json'}: pretrain.positives is 'record' but dataset {pp.dataset!r} "
                "has no record ids; use pretrain.positives: views"
            )
        if pp.method not in ("byol", "simclr") or x.dim() != 4:
            raise DataError(f"pretrain.positives 'record' applies to byol/simclr on spectrograms, not {pp.method!r}")
        pairs = RecordPairs(load_records(sdir, "train")[0][subset])
    out = model_dir(root, pp.dataset, params.model.encoder, seed)
    out.mkdir(parents=True, exist_ok=True)
    fp = fingerprint(params, seed, meta)
    ckpt_path = out / "checkpoint.safetensors"
    info_path = out / "encoder.json"
    main = dist is None or dist.is_main
    done_already = False
    if not force and info_path.is_file() and (out / "encoder.safetensors").is_file():
        try:
            done = read_json_object(info_path, "retraining")
        except DataError as exc:  # cut short by a crash: it is rewritten below
            logger.warning("seed %d: %s", seed, exc)
            done = {}
        done_already = done.get("fingerprint") == fp and _weights_match(out, done, seed, write=main)
    if dist is not None:
        dist.agree(done_already, f"whether seed {seed} is already pretrained in {out}")
    if done_already:
        logger.info("seed %d: already pretrained with these parameters (%s), skipping", seed, out)
        return out
    if pp.threads:
        torch.set_num_threads(pp.threads)
    device = resolve_device(pp.device)
    if dist is not None and device == "cuda":
        device = f"cuda:{dist.local_rank}"

    torch.manual_seed(seed)
    in_channels = int(x.shape[1])
    encoder = build_encoder_from_params(params, in_channels)
    rep_dim = getattr(encoder, "out_dim", None) or params.model.encoder_kwargs()["rep_dim"]
    model = build_ssl(params, encoder, rep_dim)
    augment = build_views(params)

    start_epoch, opt_state, history = 0, None, []
    resumed_from = None
    if model is not None and ckpt_path.is_file() and not force:
        try:
            groups, cmeta = load_checkpoint(ckpt_path)
        except DataError as exc:
            logger.warning("ignoring unreadable checkpoint: %s", exc)
            groups, cmeta = {}, {}
        if cmeta.get("fingerprint") == fp and 0 < cmeta.get("epochs_done", 0) <= pp.epochs:
            model.load_state_dict(groups["model"])
            opt_state = tensors_to_optimizer_state(groups["optimizer"])
            start_epoch = int(cmeta["epochs_done"])
            history = list(cmeta.get("history", []))
            resumed_from = start_epoch
            logger.info("seed %d: resuming from checkpoint at epoch %d/%d", seed, start_epoch, pp.epochs)
        elif cmeta:
            logger.info("seed %d: checkpoint has other parameters; starting afresh", seed)
    if dist is not None:  # every rank resumes from the same epoch of the same checkpoint, or none does
        dist.agree(start_epoch, f"the epoch to resume seed {seed} from ({ckpt_path})")

    def _on_epoch(rec: dict[str, Any]) -> None:  # after the checkpoint (pretrain_encoder); rec is in history
        if not main:
            return
        logger.info(
            "seed %d epoch %d/%d loss %.4f lr %.2e tau %.4f (%.1fs)",
            seed,
            rec["epoch"] + 1,
            pp.epochs,
            rec["loss"],
            rec["lr"],
            rec["tau"],
            rec["seconds"],
        )
        if on_epoch is not None:
            on_epoch({**rec, "seed": seed})

    def _on_checkpoint(epochs_done: int, m: nn.Module, opt: torch.optim.Optimizer) -> None:
        if main:
            save_checkpoint(
                ckpt_path,
                {"model": m.state_dict(), "optimizer": optimizer_state_to_tensors(opt.state_dict())},
                {"fingerprint": fp, "epochs_done": epochs_done, "epochs": pp.epochs, "seed": seed, "history": history},
            )
        if dist is not None:
            dist.barrier()

    if model is not None and start_epoch < pp.epochs:
        try:
            pretrain_encoder(
                model,
                x,
                augment,
                epochs=pp.epochs,
                batch_size=min(pp.batch_size, len(x)),
                lr=pp.lr,
                weight_decay=pp.weight_decay,
                tau_base=pp.tau_base,
                device=device,
                seed=seed,
                warmup_epochs=pp.warmup_epochs,
                start_epoch=start_epoch,
                optimizer_state=opt_state,
                on_epoch=_on_epoch,
                on_checkpoint=_on_checkpoint,
                progress=progress and main,
                pairs=pairs,
                curve=history,
                dist=dist,
                precision=pp.precision,
                compile=pp.compile,
            )
        except CompileFailed as exc:
            raise ConfigError(
                f"pretrain.compile: torch.compile of the {params.model.encoder} encoder failed on this machine "
                f"({exc}); set pretrain.compile: false"
            ) from None
        except DivergedError as exc:  # the last good epoch is in the checkpoint; a lower lr retrains afresh
            raise ConfigError(
                f"{out}: pretraining diverged ({exc}); lower pretrain.lr or raise pretrain.warmup_epochs, "
                "and check the input windows for outliers"
            ) from None
    if not main:
        dist.barrier()  # type: ignore[union-attr]  # rank 0 writes the encoder files
        return out
    trained = model.encoder if model is not None else encoder
    _write_encoder(out, trained, params, meta, fp, seed, device, x, history, resumed_from)
    if dist is not None:
        dist.barrier()
    return out


def _write_encoder(
    out: Path,
    trained: nn.Module,
    params: Params,
    meta: dict[str, Any],
    fp: str,
    seed: int,
    device: str,
    x: torch.Tensor,
    history: list[dict[str, Any]],
    resumed_from: int | None,
) -> None:
    """``encoder.safetensors``, then ``encoder.json`` with its digest, then the loss curve plot."""
    pp = params.pretrain
    in_channels = int(x.shape[1])
    enc_state = {k: v.detach().cpu().contiguous().clone() for k, v in trained.state_dict().items()}
    with atomic_path(out / "encoder.safetensors") as tmp:
        save_file(enc_state, str(tmp))
        weights_sha = sha256_file(tmp)
    write_json(  # after the weights, atomically: a crash between the two leaves a stale digest, never a match
        out / "encoder.json",
        {
            "fingerprint": fp,
            "seed": seed,
            "profile": params.profile,
            "device": device,
            "n_train_windows": int(len(x)),
            "resumed_from_epoch": resumed_from,
            "config": encoder_config(params, in_channels, meta),
            "pretrain": params.pretrain.model_dump(),
            "method": pp.method,
            "input": "raw" if x.dim() == 3 else "spectrogram",
            "augment": params.augment.model_dump(),
            "history": history,
            WEIGHTS_SHA_KEY: weights_sha,
        },
    )
    try:
        from trls_core.plots import plot_loss_curve

        if history:
            plot_loss_curve(history, out / "loss_curve.png")
    except Exception as exc:  # a plot must never lose a trained model
        logger.warning("loss curve not plotted: %s", exc)


def _weights_match(out: Path, done: dict[str, Any], seed: int, write: bool = True) -> bool:
    """Whether ``out``'s weights are the ones its ``encoder.json`` (``done``) was written for.

    A mismatch is logged (the seed is rebuilt). An ``encoder.json`` without
    the digest (saved before it was recorded) is accepted once: the digest is
    added to it (by the writing rank: ``write``), logged, and checked from then on.
    """
    try:
        sha = verified_weights_sha256(out, done)
    except DataError as exc:
        logger.warning("seed %d: %s; rebuilding it", seed, exc)
        return False
    if WEIGHTS_SHA_KEY not in done and write:
        write_json(out / "encoder.json", {**done, WEIGHTS_SHA_KEY: sha})
        logger.info(
            "seed %d: recorded %s %s in %s (accepted once, checked from now on)",
            seed,
            WEIGHTS_SHA_KEY,
            sha,
            out / "encoder.json",
        )
    return True


def pretrain_all(root: Path, params: Params, progress: bool = True) -> list[Path]:
    """Pretrain every seed in ``pretrain.seeds``, holding the workspace lock (``trls pretrain``).

    Under torchrun: joins the process group, refuses to start when the ranks'
    resolved settings differ, and rank 0 holds the lock for all of them.
    """
    from trls_core import distributed

    with distributed.session(resolve_device(params.pretrain.device)) as dist:
        if dist is not None:
            dist.agree(distributed.settings_digest(params.model_dump()), "the resolved settings (params hash)")
        what = "trls pretrain" if dist is None else f"trls pretrain (torchrun, {dist.world_size} ranks)"
        with distributed.held_by_main(dist, lambda: workspace_lock(root, what)):
            return [pretrain_seed(root, params, s, progress=progress, dist=dist) for s in params.pretrain.seeds]
