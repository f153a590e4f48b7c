"""Evaluation flow: linear probe, label-fraction fine-tuning and controls, fanned out -> ``reports/<dataset>/``.

The protocol's units (``trls_core.protocol``: ``linear_probe/seed=s``,
``finetune/<fraction>/seed=s``, ``controls/<name>/seed=s``) are submitted as
one ``evaluate-unit`` task run each, so every fraction x seed is visible and
fails on its own in the Prefect UI. Units are not retried: a failing unit
fails the same way again (a bug, bad data) or repeats minutes of training; the
rerun of the flow reruns only the failed ones. Each unit writes its result
file (``trls_core.stages.evaluate.evaluate_unit``) and, when tracking, its
own MLflow run nested under one ``evaluate/<task>`` run. A ``report`` task
then aggregates the unit files into ``metrics.json``, summary and plots, logs
them to the ``evaluate`` run (retried on transient MLflow/IO errors only, see
:mod:`flows.retries`) and shows the results as Prefect table + markdown
artifacts; a progress artifact counts the units done (the pipeline's, when
it passes ``progress_id``).

A unit's result file is written before its metrics are logged; a failed log
is a warning, its rows kept beside the unit results
(``units/<task>/pending_mlflow/<unit>.json``) and logged into the unit's run
by the next run that reaches the unit (:mod:`trls_core.tracking.pending`).
The flow holds the workspace lock (:mod:`trls_core.locks`; shared with the
pipeline flow that calls it).

Tasks pass unit tuples, paths and run ids; each task loads the data it needs
(cached per process, see :func:`_context`). A rerun reuses every unit
result whose fingerprint is current, so a failed flow run picks up where it
stopped.

Task runner, ``evaluate.runner``: ``inline`` (default),
:class:`flows.runners.InlineTaskRunner` (Prefect's public ``TaskRunner``
interface), each submitted unit runs at once in the flow's own thread, one
after another. On the 2-core CPU machines torch's intra-op threads already
use both cores; measured, the same units ran 31 % slower in a thread-pool
worker thread than in the thread that pretrained
(bench/results/orchestration.json); and units in threads of one process
would share torch's global RNG (fine-tuning seeds it). ``dask``: the units
are submitted to prefect-dask's ``DaskTaskRunner``, worker processes of a
LocalCluster the flow starts or of the scheduler at ``evaluate.dask.address``
(:mod:`flows.dask_runner`); the report still runs in the flow's process. The
runner is chosen per run from the settings, so the pipeline and compare
flows that call this flow follow it too.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed, wait

from flows import (
    experiment_name,
    flow_run_tags,
    log_params_file,
    numeric_metrics,
    resolve_paths,
    run_logger,
    start_run,
    yield_cpu_to_training,
)
from flows.artifacts import Progress, report_artifacts
from flows.retries import MLFLOW_RETRY
from flows.runners import InlineTaskRunner
from trls_core.locks import workspace_lock
from trls_core.paths import report_file

_CTX_LOCK = threading.Lock()
_CTX: dict[tuple[Any, ...], Any] = {}


def _run_params(params: Any) -> dict[str, Any]:
    from trls_core.config import flatten

    return flatten(
        {
            "profile": params.profile,
            "encoder": params.model.encoder,
            "pretrain_seeds": list(params.pretrain.seeds),
            "evaluate": params.evaluate.model_dump(),
        }
    )


def _with_task(params: Any, task_name: str | None) -> Any:
    """``params`` with ``evaluate.task`` overridden (None keeps the file's)."""
    if not task_name:
        return params
    return params.model_copy(update={"evaluate": params.evaluate.model_copy(update={"task": task_name})})


def _load(params_path: str, profile: str | None, task_name: str | None, sets: list[str] | None = None) -> Any:
    from trls_core.config import load_params

    return _with_task(load_params(params_path, profile, sets), task_name)


def _context(
    root: str, params_path: str, profile: str | None, task_name: str | None, sets: list[str] | None = None
) -> tuple[Any, Any]:
    """(params, EvalContext), loaded once per process and params file content.

    Mapped unit tasks run in the same worker process: re-reading the
    spectrogram tensors for each of ~40 units would be wasted I/O. Keyed by
    the params file's bytes (and the ``--set`` overrides) so an edited file
    is never served stale.
    """
    from trls_core.stages.evaluate import load_context

    key = (root, params_path, Path(params_path).read_bytes(), profile, task_name, tuple(sets or ()))
    with _CTX_LOCK:
        if key not in _CTX:
            _CTX.clear()
            params = _load(params_path, profile, task_name, sets)
            _CTX[key] = (params, load_context(Path(root), params))
        return _CTX[key]


def _log_unit(run: Any, name: str, result: dict[str, Any], pending: Path) -> bool:
    """One protocol unit's MLflow metrics: test metrics at step 0, per-epoch curves for fine-tuning.

    All in one batch (one sqlite transaction per unit, not one per epoch).
    A failure is a warning; the rows are kept in ``pending`` for the next run.
    """
    from trls_core.tracking.pending import log_or_keep

    rows = [(numeric_metrics({k: v for k, v in result.items() if k != "history"}), 0)]
    for row in result.get("history") or []:
        if isinstance(row, dict) and "epoch" in row:
            rows.append((numeric_metrics(row, drop=("epoch",)), int(row["epoch"])))
    return log_or_keep(run, rows, pending, name)


def _pending_file(root: Path, params: Any, unit: Any) -> Path:
    """Where a unit's unlogged metrics wait: ``units/<task>/pending_mlflow/<unit>.json`` (not a unit result)."""
    from trls_core.stages.evaluate import units_dir

    return units_dir(root, params) / "pending_mlflow" / f"{unit.slug}.json"


def _unit_params(unit: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"unit": unit.name, "method": unit.method, "seed": unit.seed}
    if unit.fraction is not None:
        out["fraction"] = unit.fraction
    return out


@task(name="evaluate-unit", task_run_name="{unit_name}", cache_policy=NO_CACHE, persist_result=False)
def evaluate_unit_task(
    root: str,
    params_path: str,
    profile: str | None,
    task_name: str | None,
    unit_name: str,
    unit: tuple[str, int, float | None],
    track: bool = True,
    parent_run_id: str | None = None,
    sets: list[str] | None = None,
    force: bool = False,
) -> str:
    """Run (or reuse) one protocol unit; returns its result file. ``unit_name`` names the task run.

    ``force`` reruns the unit even when its stored result is current.
    """
    from trls_core.protocol import Unit
    from trls_core.stages.evaluate import evaluate_unit

    logger = run_logger()
    u = Unit(*unit)
    params, ctx = _context(root, params_path, profile, task_name, sets)
    pending = _pending_file(Path(root), params, u)
    if track:  # metrics an earlier run could not log: into that run now
        from trls_core.tracking.pending import flush_pending

        flush_pending(Path(root), pending)
    if track and (force or not _is_current(Path(root), params, u, ctx)):
        # the unit's MLflow run is open while the unit runs: its duration is the unit's, and a
        # failing unit leaves a FAILED run; a reused result opens no run
        tags = {"stage": "evaluate-unit", "task": params.evaluate.task, **flow_run_tags()}
        with start_run(
            True,
            Path(root),
            experiment_name(params.evaluate.dataset),
            u.name,
            params=_unit_params(u),
            tags=tags,
            parent_run_id=parent_run_id,
        ) as run:
            path, result, ran = evaluate_unit(Path(root), params, u, ctx, force=force)  # saved, then logged
            _log_unit(run, u.name, result, pending)
            try:
                run.log_splits(params.evaluate.dataset)
            except Exception as exc:  # noqa: BLE001 - context only; the unit is saved and its metrics kept
                logger.warning("%s: MLflow dataset inputs not logged (%s: %s)", u.name, type(exc).__name__, exc)
    else:
        path, result, ran = evaluate_unit(Path(root), params, u, ctx, force=force)
    f1 = result.get("macro_f1")
    f1s = f"{f1:.4f}" if isinstance(f1, float) else str(f1)
    if not ran:
        logger.info("%s: stored result is current (macro-F1 %s), reused", u.name, f1s)
        return str(path)
    logger.info("%s: macro-F1 %s (%.1f s)", u.name, f1s, result.get("unit_seconds", float("nan")))
    return str(path)


def _is_current(root: Path, params: Any, unit: Any, ctx: Any) -> bool:
    """Whether the unit's stored result has the current fingerprint (``evaluate_unit`` will reuse it)."""
    from trls_core.stages.evaluate import read_unit, unit_file

    path = unit_file(root, params, unit)
    return path.is_file() and read_unit(path)["fingerprint"] == ctx.fingerprint(unit)


@task(name="report", cache_policy=NO_CACHE, persist_result=False, **MLFLOW_RETRY)
def report_task(
    root: str,
    params_path: str,
    profile: str | None,
    task_name: str | None,
    wall_seconds: float,
    track: bool = True,
    run_id: str | None = None,
    sets: list[str] | None = None,
) -> str:
    """Aggregate the unit results into the report files, log them to the evaluate run, show them in Prefect.

    Retried on transient failures only (a locked MLflow store, a dropped
    connection: :mod:`flows.retries`); rewriting the report is cheap and
    idempotent. The Prefect artifacts: a table (probe, fractions, controls:
    mean ± std) and the summary as markdown with the MLflow run link.
    """
    from trls_core.stages.evaluate import write_reports

    logger = run_logger()
    params, ctx = _context(root, params_path, profile, task_name, sets)
    rdir = write_reports(Path(root), params, ctx, wall_seconds=wall_seconds)
    metrics = report_file(rdir, "metrics.json", params.evaluate.task)
    run = None
    if track and run_id:
        from trls_core.tracking import log_evaluation, resume_run

        run = resume_run(Path(root), run_id)  # not finished here: the flow's `with` ends it
        log_evaluation(run, rdir, metrics_file=metrics.name)
    report_artifacts(metrics, report_file(rdir, "summary.md", params.evaluate.task), run)
    logger.info("reports written to %s", rdir)
    return str(rdir)


def check_unit_runner(ev: Any) -> None:
    """Fail now if the units cannot run where ``ev.runner`` says: a Dask scheduler address that does not answer.

    Bounded by ``evaluate.dask.connect_timeout_s``; raises
    :class:`flows.dask_runner.SchedulerUnreachable` (a ``ConfigError``: exit 2)
    naming the address. Nothing to check inline or for a LocalCluster.
    """
    if ev.runner == "dask" and ev.dask.address:
        from flows.dask_runner import check_scheduler

        check_scheduler(ev.dask.address, ev.dask.connect_timeout_s)


def _units_on_dask(
    ev: Any, each: list[dict[str, Any]], force: bool, progress: Progress, part: str, logger: Any
) -> list[Any]:
    """Every unit submitted to Dask workers (:mod:`flows.dask_runner`); returns their finished futures.

    The progress advances here, in the flow's thread, as each unit finishes
    (a Dask done-callback runs in a thread without the flow's Prefect
    settings). The cluster (a LocalCluster the flow started) is closed when
    this returns or raises.
    """
    from flows.dask_runner import flush_workers, units_on_dask

    with units_on_dask(ev.dask) as runner:
        futures = [runner.submit(evaluate_unit_task, {**kwargs, "force": force}) for kwargs in each]
        logger.info("%d units submitted to Dask (%s)", len(futures), runner.client.scheduler.address)
        for fut in as_completed(futures):
            fut.wait()
            progress.advance(part, failed=not fut.state.is_completed())
        flush_workers(runner.client)  # the units' last task-run states, before the workers go
    return futures


class UnitsFailed(RuntimeError):
    """One or more evaluation units failed; the message names them and their causes."""


@flow(name="trls-evaluate", validate_parameters=True, task_runner=InlineTaskRunner())
def evaluate_flow(
    root: str = ".",
    params_path: str = "params.yaml",
    profile: str | None = None,
    task: str | None = None,
    track: bool = True,
    parent_run_id: str | None = None,
    sets: list[str] | None = None,
    force: bool = False,
    progress_id: str | None = None,
) -> str:
    """Evaluate the pretrained encoders (``task`` overrides ``evaluate.task``); returns the report folder.

    ``params_path`` is relative to ``root`` unless absolute; ``sets`` are
    ``--set`` overrides (``dotted.key=value``) applied after the profile.
    Every unit runs even if another fails; the flow then fails naming each
    failed unit, and the units that succeeded keep their result files for
    the rerun. ``force`` reruns every unit even when its stored result is
    current. ``progress_id``: the pipeline's progress artifact to advance
    (same process); without one the flow shows its own.
    """
    from trls_core.stages.evaluate import units_for

    logger = run_logger()
    logger.debug("orchestration reniced: %s", yield_cpu_to_training())
    t0 = time.perf_counter()
    root_p, params_p = resolve_paths(root, params_path)
    params = _load(str(params_p), profile, task, sets)  # fail fast on bad params
    ev = params.evaluate
    check_unit_runner(ev)  # and on a Dask scheduler that does not answer
    units = units_for(params)
    logger.info(
        "evaluating %s on %s (task %s, seeds %s, fractions %s, profile %s): %d units",
        params.model.encoder,
        ev.dataset,
        ev.task,
        ev.seeds,
        ev.fractions,
        params.profile,
        len(units),
    )
    tags = {"stage": "evaluate", "task": ev.task, "profile": params.profile, **flow_run_tags()}
    with (
        workspace_lock(root_p, "evaluate flow"),  # re-entrant: the pipeline flow already holds it
        start_run(
            track,
            root_p,
            experiment_name(ev.dataset),
            f"evaluate/{ev.task}",
            params=_run_params(params),
            tags=tags,
            parent_run_id=parent_run_id,
        ) as run,
    ):
        if parent_run_id is None:
            log_params_file(run, params_p, params)
        run.log_splits(ev.dataset)  # the splits probed, fine-tuned and scored (MLflow dataset inputs)
        common = {
            "root": str(root_p),
            "params_path": str(params_p),
            "profile": profile,
            "task_name": task,
            "sets": sets,
        }
        part = f"evaluate {ev.task}"
        progress = Progress.find(progress_id) or Progress({part: len(units)}, title="evaluation units done")
        each = [
            {**common, "unit_name": u.name, "unit": tuple(u), "track": track, "parent_run_id": run.run_id}
            for u in units
        ]
        if ev.runner == "dask":
            futures = _units_on_dask(ev, each, force, progress, part, logger)
        else:
            futures = []
            for kwargs in each:  # one task run per unit, run at once; the progress advances as each finishes
                fut = evaluate_unit_task.submit(**kwargs, force=force)
                fut.add_done_callback(progress.future_done(part))
                futures.append(fut)
        wait(futures)
        failed = [(u, f.state) for u, f in zip(units, futures) if not f.state.is_completed()]
        if failed:
            causes = "; ".join(f"{u.name}: {s.message or s.name}" for u, s in failed)
            raise UnitsFailed(f"{len(failed)} of {len(units)} evaluation units failed: {causes}")
        rdir = report_task(**common, wall_seconds=time.perf_counter() - t0, track=track, run_id=run.run_id)
    return rdir
