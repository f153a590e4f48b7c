"""Pretraining flow: one Prefect task per seed around ``trls_core.stages.pretrain.pretrain_seed``.

Each seed is its own task run (observed and failed separately; never retried:
a retry would repeat the training, and the rerun of the flow resumes the seed
from its last checkpoint instead) and,
when tracking, its own MLflow run nested under a ``pretrain`` run, which in
turn nests under the pipeline's parent run when one is given. Per-epoch
loss / lr / tau go to the seed's run as they are produced (after the
epoch's checkpoint is saved), with the machine's system metrics
(``system/*``) and the train split as its dataset input. An epoch whose
logging fails is a warning, not a failure: its metrics are kept beside the
checkpoint and logged into the seed's run at its end or, if the store is
still failing, by the next run (:mod:`trls_core.tracking.pending`).

The flow holds the workspace lock (:mod:`trls_core.locks`; shared with the
pipeline flow that calls it): a second process writing the same
``models/`` fails at once, naming the holder.

Seeds run one after another: on the 2-core CPU machines parallel seeds only
fight over the same cores; past one machine the scale-out is torch DDP or a
Dask task runner (docs/design.md §4), not threads here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows import (
    NullTracker,
    experiment_name,
    flow_run_tags,
    log_params_file,
    resolve_paths,
    run_logger,
    start_run,
    yield_cpu_to_training,
)
from flows.artifacts import Progress
from trls_core.locks import workspace_lock

EPOCH_KEYS = {"loss": "loss", "lr": "lr", "tau": "tau", "seconds": "epoch_seconds"}


def _epoch_metrics(rec: dict[str, Any]) -> dict[str, float]:
    return {name: float(rec[k]) for k, name in EPOCH_KEYS.items() if isinstance(rec.get(k), (int, float))}


def _log_epochs(run: Any, records: list[dict[str, Any]], pending: Path, what: str) -> bool:
    """Epoch records as one batch of metrics into ``run``; a failure is kept in ``pending`` (True: logged)."""
    if isinstance(run, NullTracker):
        return True
    from trls_core.tracking.pending import log_or_keep

    return log_or_keep(run, [(_epoch_metrics(r), int(r["epoch"])) for r in records], pending, what)


def _load(params_path: str, profile: str | None, subset_fraction: float | None, sets: list[str] | None = None) -> Any:
    """Params from the file (``sets``: ``--set`` overrides), ``pretrain.subset_fraction`` overridden when given."""
    from trls_core.config import load_params

    params = load_params(params_path, profile, sets)
    if subset_fraction is None:
        return params
    pre = params.pretrain.model_validate({**params.pretrain.model_dump(), "subset_fraction": subset_fraction})
    return params.model_copy(update={"pretrain": pre})


def _run_params(params: Any) -> dict[str, Any]:
    """What determines the weights, flattened for MLflow run parameters."""
    from trls_core.config import flatten

    return flatten(
        {
            "profile": params.profile,
            "model": params.model.model_dump(),
            "augment": params.augment.model_dump(),
            "pretrain": params.pretrain.model_dump(),
        }
    )


@task(
    name="pretrain-seed",
    task_run_name="pretrain-seed{seed}",
    cache_policy=NO_CACHE,
    persist_result=False,
)
def pretrain_seed_task(
    root: str,
    params_path: str,
    profile: str | None,
    seed: int,
    track: bool = True,
    parent_run_id: str | None = None,
    subset_fraction: float | None = None,
    sets: list[str] | None = None,
    force: bool = False,
) -> str:
    """Pretrain (resume, or skip when done) one seed; returns its model folder.

    Params are re-read from the file rather than passed in, so the task's
    inputs stay plain paths. ``force`` trains from scratch even when a
    finished model or a checkpoint with these parameters exists.
    """
    from trls_core.paths import model_dir
    from trls_core.stages.pretrain import pretrain_seed

    logger = run_logger()
    params = _load(params_path, profile, subset_fraction, sets)
    ds = params.pretrain.dataset
    pending = model_dir(Path(root), ds, params.model.encoder, seed) / "pending_mlflow.json"
    if track:  # epochs an earlier run trained but could not log: into that run now
        from trls_core.tracking.pending import flush_pending

        flush_pending(Path(root), pending)
    tags = {"stage": "pretrain", "seed": str(seed), "profile": params.profile, **flow_run_tags()}
    with start_run(
        track,
        Path(root),
        experiment_name(ds),
        f"pretrain/seed={seed}",
        params={"seed": seed},
        tags=tags,
        parent_run_id=parent_run_id,
    ) as run:
        trained: set[int] = set()  # epochs trained now
        logged: set[int] = set()  # ... and logged to this run

        def on_epoch(rec: dict[str, Any]) -> None:  # called after the epoch's checkpoint is saved
            logger.info(
                "seed %d epoch %d/%d: loss %.4f lr %.2e tau %.4f",
                seed,
                rec["epoch"] + 1,
                params.pretrain.epochs,
                rec["loss"],
                rec["lr"],
                rec["tau"],
            )
            trained.add(int(rec["epoch"]))
            if _log_epochs(run, [rec], pending, f"seed {seed} epoch {rec['epoch'] + 1}"):
                logged.add(int(rec["epoch"]))

        run.log_splits(ds, splits=("train",))  # what the encoder saw (MLflow dataset input, context train)
        with run.system_metrics():  # CPU / memory / disk / network (GPU where present) as system/* metrics
            out = pretrain_seed(Path(root), params, seed, progress=False, on_epoch=on_epoch, force=force)
        info = json.loads((out / "encoder.json").read_text())
        # a resumed or already-finished seed ran fewer epochs now than its history holds, and
        # an epoch's log may have failed: log the rest from encoder.json so every seed run has
        # its full curve (what still fails stays pending for the next run)
        rest = [rec for rec in info.get("history", []) if int(rec["epoch"]) not in logged]
        if rest and track:
            from trls_core.tracking.pending import discard_pending

            discard_pending(pending, str(run.run_id))  # this run's failed epochs are in `rest`
            _log_epochs(run, rest, pending, f"seed {seed}: {len(rest)} epoch(s) of encoder.json")
        # resumed: this run continued a killed one from its checkpoint; reused: the model with
        # these parameters was already complete, nothing was trained now
        resumed = info.get("resumed_from_epoch") if trained else None
        run.set_tags(
            {
                "model_dir": str(out),
                "fingerprint": str(info.get("fingerprint")),
                "resumed": str(resumed is not None).lower(),
                "resumed_from_epoch": str(resumed) if resumed is not None else "none",
                "reused_finished_model": str(not trained).lower(),
            }
        )
        if resumed is not None:
            logger.info("seed %d resumed from its checkpoint after %d completed epoch(s)", seed, int(resumed))
        for name in ("encoder.json", "loss_curve.png"):
            if (out / name).is_file():
                run.log_artifact(out / name)
        if not trained:
            logger.info("seed %d: already pretrained with these parameters: %s", seed, out)
    logger.info("seed %d: encoder in %s", seed, out)
    return str(out)


@flow(name="trls-pretrain", validate_parameters=True)
def pretrain_flow(
    root: str = ".",
    params_path: str = "params.yaml",
    profile: str | None = None,
    seeds: list[int] | None = None,
    track: bool = True,
    parent_run_id: str | None = None,
    subset_fraction: float | None = None,
    sets: list[str] | None = None,
    force: bool = False,
    progress_id: str | None = None,
) -> list[str]:
    """BYOL pretraining of every seed (``seeds`` overrides ``pretrain.seeds``); returns the model folders.

    ``subset_fraction`` overrides ``pretrain.subset_fraction``: pretrain on a
    seeded random subset of the train split (robustness over training
    subsets); it is part of the weights' fingerprint, so a model trained on
    another subset is retrained, never resumed.

    ``params_path`` is relative to ``root`` unless absolute; ``sets`` are
    ``--set`` overrides applied after the profile. With ``track`` the seed
    runs nest under one ``pretrain`` MLflow run (itself under
    ``parent_run_id`` when the pipeline passes one). ``force`` retrains every
    seed from scratch. ``progress_id``: the pipeline's progress artifact,
    advanced by one per finished seed.
    """
    logger = run_logger()
    logger.debug("orchestration reniced: %s", yield_cpu_to_training())
    root_p, params_p = resolve_paths(root, params_path)
    params = _load(str(params_p), profile, subset_fraction, sets)  # fail fast on bad params, before any run is opened
    seed_list = list(seeds) if seeds else list(params.pretrain.seeds)
    logger.info(
        "pretraining %s on %s, profile %s, seeds %s (root %s)",
        params.model.encoder,
        params.pretrain.dataset,
        params.profile,
        seed_list,
        root_p,
    )
    tags = {"stage": "pretrain", "profile": params.profile, **flow_run_tags()}
    run_params = {**_run_params(params), "pretrain.seeds": seed_list}
    with (
        workspace_lock(root_p, "pretrain flow"),  # re-entrant: the pipeline flow already holds it
        start_run(
            track,
            root_p,
            experiment_name(params.pretrain.dataset),
            "pretrain",
            params=run_params,
            tags=tags,
            parent_run_id=parent_run_id,
        ) as run,
    ):
        if parent_run_id is None:
            log_params_file(run, params_p, params)
        progress = Progress.find(progress_id)
        dirs = []
        for s in seed_list:
            dirs.append(
                pretrain_seed_task(
                    str(root_p), str(params_p), profile, s, track, run.run_id, subset_fraction, sets, force
                )
            )
            if progress is not None:
                progress.advance("pretraining")
    return dirs
