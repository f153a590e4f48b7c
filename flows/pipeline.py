"""The whole pipeline as one Prefect flow: DVC data -> pretrain -> evaluate -> registry.

Steps:

1. ``dvc-repro`` (task, retried): ``dvc repro fetch@<ds> parquet@<ds>
   spectrogram@<ds>`` in the project root, so the data is exactly what
   ``dvc.lock`` describes (DVC skips what is up to date; Prefect caches
   nothing of it).
2. :func:`flows.pretrain.pretrain_flow` and :func:`flows.evaluate.evaluate_flow`
   as subflows, their MLflow runs nested under ONE parent run tagged with the
   git commit, the ``dvc.lock`` digests and the profile.
3. ``register`` (task): the first seed's encoder (with its preprocessing) goes
   to the Model Registry and becomes ``champion`` only if it beats the
   current one on the same test split (score: linear-probe macro-F1 mean;
   split: ``tracking.split_digest``, the Parquet digest + task).

The Prefect UI shows the work (:mod:`flows.artifacts`): a progress artifact
on this flow run counts pretraining seeds and evaluation units done / total;
each evaluation report and the promotion decision (reason, MLflow links) are
table / markdown artifacts. Retries: ``dvc-repro`` (the fetch talks to the
network) and the evaluation ``report`` task (it logs to MLflow; transient
failures only, :mod:`flows.retries`); never pretraining, evaluation units
(both repeat minutes to hours of compute) or ``register`` (not idempotent).

A failing step raises, so Prefect marks the flow run Failed with the cause
and the MLflow parent run ends FAILED; the stages write atomically, so what
earlier steps produced stays intact for the rerun. One pipeline per project
root at a time: the flow holds the workspace lock (:mod:`trls_core.locks`)
from before ``dvc repro`` to the registration; its subflows share it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows import (
    experiment_name,
    flow_run_tags,
    log_params_file,
    resolve_paths,
    run_logger,
    start_run,
    yield_cpu_to_training,
)
from flows.artifacts import Progress, artifact_key, promotion_artifact
from flows.evaluate import check_unit_runner, evaluate_flow
from flows.pretrain import pretrain_flow
from trls_core.errors import DataError
from trls_core.locks import workspace_lock
from trls_core.paths import report_file

DVC_STAGES = ("fetch", "parquet", "spectrogram")
STDERR_TAIL = 2000


class DvcReproError(RuntimeError):
    """``dvc repro`` exited non-zero; the message carries the tail of DVC's output."""


class DvcStageError(DvcReproError, DataError):
    """A data stage failed on its input (exit 2): the message is the stage's own error line.

    A missing mirror folder, an HTTP 404, a checksum mismatch or no network
    (after the download's own retries) fail the same way every time, so the
    ``dvc-repro`` task does not retry them (:func:`retry_unless_stage_error`).
    """


def retry_unless_stage_error(task: Any, task_run: Any, state: Any) -> bool:
    """``retry_condition_fn`` of ``dvc-repro``: retry a failure unless it is a :class:`DvcStageError`."""
    exc = getattr(state, "data", None)
    if not isinstance(exc, BaseException):
        try:
            exc = state.result(raise_on_failure=False)
        except Exception as err:  # noqa: BLE001 - an unreadable result: judge the error reading it
            exc = err
    return not isinstance(exc, DvcStageError)


def dvc_executable() -> str:
    """The venv's ``dvc`` (next to this interpreter), so the flow uses the pinned DVC, not a system one."""
    local = Path(sys.executable).with_name("dvc")
    if local.is_file():
        return str(local)
    found = shutil.which("dvc")
    if found is None:
        raise DvcReproError(f"dvc not found next to {sys.executable} nor on PATH: install the project's venv")
    return found


@task(
    name="dvc-repro",
    task_run_name="dvc-repro-{dataset}",
    retries=2,
    retry_delay_seconds=[10, 30],
    retry_condition_fn=retry_unless_stage_error,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def dvc_repro(root: str, dataset: str) -> str:
    """Reproduce the dataset's data stages; returns DVC's last output lines.

    A stage's own error (exit 2: bad params, a missing mirror, a broken raw
    file, no network after the download's retries) raises
    :class:`DvcStageError` with the stage's message, not retried; any other
    failure (DVC itself, a crash) is retried and the raised message keeps
    DVC's own error text.
    """
    logger = run_logger()
    cmd = [dvc_executable(), "repro", *(f"{stage}@{dataset}" for stage in DVC_STAGES)]
    logger.info("running %s in %s", " ".join(cmd[1:]), root)
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    out = (proc.stdout or "").strip()
    if proc.returncode != 0:
        said = f"{proc.stdout or ''}\n{proc.stderr or ''}"
        stage_errors = [line.removeprefix("error: ") for line in said.splitlines() if line.startswith("error: stage ")]
        if stage_errors and re.search(r"exited with 2\b", said):  # trls_core.stages._common: a user error
            raise DvcStageError("\n".join(stage_errors))
        tail = ((proc.stderr or "").strip() or out)[-STDERR_TAIL:]
        raise DvcReproError(f"`dvc {' '.join(cmd[1:])}` failed (exit {proc.returncode}) in {root}:\n{tail}")
    last = "\n".join(out.splitlines()[-5:])
    logger.info("dvc repro done:\n%s", last)
    return last


def promotion_score(report_dir: Path, task_name: str) -> float:
    """The promotion score: linear-probe macro-F1 mean over the evaluation seeds (test split)."""
    mpath = report_file(report_dir, "metrics.json", task_name)
    if not mpath.is_file():
        raise DataError(f"{mpath} not found: cannot score the model for promotion")
    metrics = json.loads(mpath.read_text())
    try:
        return float(metrics["linear_probe"]["macro_f1"]["mean"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{mpath}: no linear_probe.macro_f1.mean ({exc!r})") from None


@task(name="register", cache_policy=NO_CACHE, persist_result=False)
def register_task(
    root: str,
    parent_run_id: str,
    model_dir: str,
    spectrogram_dir: str,
    report_dir: str,
    task_name: str,
    model_name: str,
    force: bool = False,
) -> dict[str, Any]:
    """Register the encoder from the parent run and promote it if it beats the champion.

    Comparable only on the same test split of the same task: the split
    digest is ``tracking.split_digest`` (meta.json ``parquet_sha256`` + task).
    Weights equal to the latest version's are not registered again unless
    ``force`` (the outcome says ``skipped``, the version is the existing one);
    weights other than those the evaluation units scored are refused.
    Not retried: registering is not idempotent (a retry after the version
    was created would skip it as a duplicate and lose its promotion
    decision); rerun the pipeline instead, everything before is reused. The
    decision is shown as a Prefect markdown artifact with the reason and
    the MLflow links.
    """
    from trls_core.models.loading import read_encoder_info
    from trls_core.paths import parquet_file
    from trls_core.stages.evaluate import evaluated_weights_sha256
    from trls_core.tracking import promote_if_better, register_encoder, resume_run, split_digest

    logger = run_logger()
    score = promotion_score(Path(report_dir), task_name)
    seed = read_encoder_info(Path(model_dir)).get("seed")  # the weights must be the ones the units scored:
    evaluated = evaluated_weights_sha256(Path(report_dir), task_name, seed)
    digest = split_digest(Path(spectrogram_dir), task_name)
    run = resume_run(Path(root), parent_run_id)  # not a `with`: the flow's parent run ends it
    dataset = Path(spectrogram_dir).name
    reg = register_encoder(
        run,
        Path(model_dir),
        Path(spectrogram_dir),
        model_name,
        task=task_name,
        test_macro_f1=score,
        force=force,
        windows=parquet_file(Path(root), dataset),
        evaluated_sha256=evaluated,
    )
    # a skipped (same-weights) version is decided too: a run killed before its promotion left it undecided
    promoted, reason = promote_if_better(model_name, reg.version, score, digest, root=Path(root))
    reason = f"{reg.reason}; {reason}" if reg.skipped else reason
    run.set_tags({"promoted": str(promoted), "promotion_reason": reason})
    logger.info("%s v%s (linear-probe macro-F1 %.4f): %s", model_name, reg.version, score, reason)
    outcome = {
        "model_name": model_name,
        "version": reg.version,
        "skipped": reg.skipped,
        "score": score,
        "split_digest": digest,
        "promoted": bool(promoted),
        "reason": reason,
    }
    promotion_artifact(outcome, Path(spectrogram_dir).name, run)
    return outcome


def pipeline_params(
    params_path: str | Path,
    profile: str | None = None,
    dataset: str | None = None,
    sets: list[str] | None = None,
    built_by_dvc: bool = True,
) -> tuple[Any, str]:
    """The settings a pipeline run trains with and its dataset; what cannot run fails here, saying why.

    Checked before anything runs (``trls pipeline`` and ``trls schedule``
    call it before Prefect starts): the profile exists (else the profiles are
    named), the dataset has a section (else the known ones are named), DVC
    builds it (``datasets:`` in params.yaml) unless ``built_by_dvc`` is off,
    the params train and evaluate on it (else the profiles that do are
    named), no ``--set`` touches the data settings (DVC reads params.yaml) and
    a Dask scheduler at ``evaluate.dask.address`` answers (else it is named).
    """
    from trls_core.config import load_params, parse_overrides, read_raw_params, resolve_params
    from trls_core.errors import ConfigError

    params = load_params(params_path, profile, sets)
    data_keys = sorted(k for k in parse_overrides(sets) if k in params.sections or k == "datasets")
    if data_keys:
        raise ConfigError(
            f"--set {', '.join(data_keys)}: data settings are DVC's (its stages read params.yaml); "
            "edit params.yaml instead, and the pipeline's `dvc repro` rebuilds the data"
        )
    ds = dataset or params.pretrain.dataset
    params.dataset(ds)  # an unknown dataset fails naming the known ones
    if built_by_dvc and ds not in params.datasets:
        raise ConfigError(
            f"dataset {ds!r} is not built by DVC: params.yaml `datasets:` lists {sorted(params.datasets)}; "
            f"add it there (docs/datasets/adding.md)"
        )
    if ds != params.pretrain.dataset or ds != params.evaluate.dataset:
        raw = read_raw_params(params_path)
        fits = []
        for name in sorted(raw.get("profiles") or {}):
            other = resolve_params(raw, profile=name, source=str(params_path))
            if other.pretrain.dataset == ds and other.evaluate.dataset == ds:
                fits.append(name)
        hint = f"use --profile {' or '.join(fits)}" if fits else f"set pretrain.dataset and evaluate.dataset to {ds!r}"
        raise ConfigError(
            f"dataset {ds!r}: profile {params.profile!r} trains on pretrain.dataset={params.pretrain.dataset!r}, "
            f"evaluate.dataset={params.evaluate.dataset!r}; {hint}"
        )
    check_unit_runner(params.evaluate)  # before hours of pretraining, not at the evaluation
    return params, ds


def n_units(params: Any, task_name: str) -> int:
    """How many evaluation units the task has (for the progress total)."""
    from trls_core.stages.evaluate import units_for

    return len(
        units_for(params.model_copy(update={"evaluate": params.evaluate.model_copy(update={"task": task_name})}))
    )


def _parent_tags(root: Path, params: Any, dataset: str) -> dict[str, str]:
    """Provenance of the whole run: code (git commit) and settings (profile).

    ``Tracker.start`` adds the ``dvc.lock`` output digests (``dvc.<stage>:<path>``)
    and ``mlflow.source.git.commit`` to every top-level run itself.
    """
    from trls_core.tracking import git_commit

    return {
        "stage": "pipeline",
        "dataset": dataset,
        "profile": params.profile,
        "git_commit": str(git_commit(root) or "unknown"),
        **flow_run_tags(),
    }


@flow(name="trls-pipeline", validate_parameters=True)
def pipeline_flow(
    root: str = ".",
    params_path: str = "params.yaml",
    profile: str | None = None,
    dataset: str | None = None,
    track: bool = True,
    register_model: bool = True,
    model_name: str | None = None,
    skip_data: bool = False,
    force: bool = False,
    sets: list[str] | None = None,
) -> dict[str, Any]:
    """Data (DVC) -> pretraining -> evaluation -> registration, as one observable run.

    ``dataset`` defaults to ``pretrain.dataset`` and must match it (the
    trained data is what params say). ``skip_data`` skips ``dvc repro`` (the
    data is already built, e.g. in tests). DVC reads ``<root>/params.yaml``;
    ``params_path`` (relative to ``root`` unless absolute) is what the
    training steps read. Registration needs tracking; with ``track=False``
    it is skipped. ``model_name`` defaults to ``trls-<dataset>-encoder``;
    an encoder whose weights equal that model's latest version is not
    registered again unless ``force``. Returns the model folders, report
    folder, MLflow parent run id and the registration outcome; the parent
    run carries the headline (``tracking.log_headline``). ``force`` is a
    real retrain: every seed trains from scratch, every evaluation unit
    reruns, and the encoder is registered even when its weights equal the
    latest version's. ``sets`` are ``--set`` overrides of the training
    settings (data settings are DVC's: edit params.yaml).
    """
    from trls_core.paths import model_dir, spectrogram_dir

    logger = run_logger()
    logger.debug("orchestration reniced: %s", yield_cpu_to_training())
    root_p, params_p = resolve_paths(root, params_path)
    with workspace_lock(root_p, "pipeline flow"):  # one pipeline per root; the subflows below share this hold
        params, ds = pipeline_params(params_p, profile, dataset, sets, built_by_dvc=not skip_data)

        if skip_data:
            logger.info("skip_data: using the data already in %s", spectrogram_dir(root_p, ds))
        else:
            dvc_repro(str(root_p), ds)

        sub = {"root": str(root_p), "params_path": str(params_p), "profile": profile, "track": track, "sets": sets}
        result: dict[str, Any] = {"dataset": ds, "profile": params.profile}
        tasks = [params.evaluate.task, *(t for t in params.evaluate.also_tasks if t != params.evaluate.task)]
        progress = Progress(
            {"pretraining": len(params.pretrain.seeds), **{f"evaluate {t}": n_units(params, t) for t in tasks}},
            key=artifact_key(ds, "pipeline-progress"),
            title="units done",
        )
        sub["progress_id"] = progress.id
        tags = _parent_tags(root_p, params, ds) if track else {}
        with start_run(
            track,
            root_p,
            experiment_name(ds),
            f"pipeline/{params.profile}",
            params={
                "profile": params.profile,
                "dataset": ds,
                "encoder": params.model.encoder,
                "task": params.evaluate.task,
                "params_path": str(params_p),
                "force": force,
                **({"sets": " ".join(sets)} if sets else {}),
            },
            tags=tags,
        ) as parent:
            result["run_id"] = parent.run_id
            log_params_file(parent, params_p, params)
            parent.log_splits(ds)  # the Parquet's train/val/test as MLflow dataset inputs
            result["model_dirs"] = pretrain_flow(**sub, parent_run_id=parent.run_id, force=force)
            result["report_dir"] = evaluate_flow(**sub, parent_run_id=parent.run_id, force=force)
            result["also_report_dirs"] = {
                t: evaluate_flow(**sub, parent_run_id=parent.run_id, task=t, force=force) for t in tasks[1:]
            }
            if register_model and track:
                from trls_core.tracking import registered_model_name

                mdir = model_dir(root_p, ds, params.model.encoder, params.pretrain.seeds[0])
                result["registration"] = register_task(
                    str(root_p),
                    parent.run_id,
                    str(mdir),
                    str(spectrogram_dir(root_p, ds)),
                    result["report_dir"],
                    params.evaluate.task,
                    model_name or registered_model_name(ds),
                    force,
                )
            elif register_model:
                logger.warning("register_model=True needs track=True (the registry is MLflow's): not registering")
            if track:
                from trls_core.tracking import log_headline

                dirs = {params.evaluate.task: result["report_dir"], **result["also_report_dirs"]}
                reports = {t: report_file(Path(d), "metrics.json", t) for t, d in dirs.items()}
                log_headline(parent, reports, result.get("registration"), title=f"{ds}, profile {params.profile}")
        progress.close()
    logger.info("pipeline done: %s", result)
    return result


if __name__ == "__main__":  # `python -m flows.pipeline`: one run on an ephemeral Prefect API
    from trls_core.runtime import exit_on_sigterm, tune_malloc

    tune_malloc()
    exit_on_sigterm()
    pipeline_flow()
