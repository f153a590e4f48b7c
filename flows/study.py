"""Study flow: the variants of an overlay (``experiments/<name>.yaml``) through the project's own steps.

Per variant (``trls_core.study``):

1. ``study-spectrograms``: the variant's spectrograms; the project's when its
   STFT settings are params.yaml's, else built once into a study store by the
   spectrogram stage;
2. ``pretrain-seed`` (the pretraining flow's own task) per seed, in the
   variant's pretraining store: a store is keyed by the pretraining
   fingerprint, so variants that share pretraining train it once, and the
   task skips a seed whose stored encoder is current;
3. ``study-unit`` per protocol unit and task (the evaluation units of
   ``stages.evaluate``, reused when their fingerprint is current), scored on
   validation held out from model selection (``trls_core.study.holdout``);
4. ``study-score``: the units' aggregate and the study metric.

MLflow: one ``study/<name>`` parent run (the overlay and the table as
artifacts) and one ``variant/<name>`` child per variant (params: its
overrides; metrics: its validation scores). Then ``reports/studies/<name>.{csv,md}``.
A failed variant fails its child run; the others still run and the flow
fails at the end naming it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait

from flows import experiment_name, flow_run_tags, resolve_paths, run_logger, start_run, yield_cpu_to_training
from flows.pretrain import pretrain_seed_task
from flows.runners import InlineTaskRunner

_CTX_LOCK = threading.Lock()
_CTX: dict[tuple[Any, ...], Any] = {}


class VariantsFailed(RuntimeError):
    """One or more variants of a study failed; the message names them and their causes."""


def _context(workspace: str, profile: str, task_name: str, select_fraction: float) -> tuple[Any, Any]:
    """(params for the task, held-out context), loaded once per process and params file content."""
    from trls_core.config import load_params
    from trls_core.study.holdout import held_out_context
    from trls_core.study.table import with_task

    path = Path(workspace) / "params.yaml"
    key = (workspace, path.read_bytes(), profile, task_name, select_fraction)
    with _CTX_LOCK:
        if key not in _CTX:
            _CTX.clear()
            params = with_task(load_params(path, profile), task_name)
            _CTX[key] = (params, held_out_context(Path(workspace), params, select_fraction))
        return _CTX[key]


@task(name="study-spectrograms", task_run_name="spectrograms-{dataset}", cache_policy=NO_CACHE, persist_result=False)
def spectrograms_task(root: str, workspace_params: str, profile: str, dataset: str) -> str:
    """The variant's spectrograms of ``dataset`` (built into a study store when its STFT settings are its own)."""
    from trls_core.config import load_params
    from trls_core.study.workspace import ensure_spectrograms

    return str(ensure_spectrograms(Path(root), load_params(workspace_params, profile), dataset))


@task(name="study-unit", task_run_name="{variant}/{task_name}/{unit_name}", cache_policy=NO_CACHE, persist_result=False)
def unit_task(
    workspace: str,
    profile: str,
    task_name: str,
    select_fraction: float,
    variant: str,
    unit_name: str,
    unit: tuple[str, int, float | None],
) -> str:
    """Run (or reuse) one protocol unit on held-out validation; returns its result file."""
    from trls_core.protocol import Unit
    from trls_core.stages.evaluate import evaluate_unit

    params, ctx = _context(workspace, profile, task_name, select_fraction)
    path, result, ran = evaluate_unit(Path(workspace), params, Unit(*unit), ctx)
    f1 = result.get("macro_f1")
    run_logger().info(
        "%s %s: held-out validation macro-F1 %s%s",
        variant,
        unit_name,
        f"{f1:.4f}" if isinstance(f1, float) else f1,
        "" if ran else " (stored result reused)",
    )
    return str(path)


@task(name="study-score", task_run_name="{variant}/{task_name}", cache_policy=NO_CACHE, persist_result=False)
def score_task(
    workspace: str, profile: str, task_name: str, select_fraction: float, variant: str, metric: str
) -> dict[str, Any]:
    """The variant's validation aggregate for one task and its study metric (``summary``)."""
    from trls_core.study.table import aggregate_variant, summarise

    params, ctx = _context(workspace, profile, task_name, select_fraction)
    agg = aggregate_variant(Path(workspace), params, ctx)
    return {"aggregate": agg, "summary": summarise(agg, metric, f"{variant} ({task_name})")}


def _run_variant(root: Path, study: Any, rv: Any, track: bool, parent_run_id: str | None) -> dict[str, Any]:
    from trls_core.stages.evaluate import units_for
    from trls_core.study.table import with_task
    from trls_core.study.workspace import params_note, prepare_variant, variant_workspace, write_params

    logger = run_logger()
    params, profile = rv.params, rv.params.profile
    select = study.overlay.score.select_fraction
    tags = {"stage": "study-variant", "study": study.name, "variant": rv.name, **flow_run_tags()}
    with start_run(
        track,
        root,
        experiment_name(params.evaluate.dataset),
        f"variant/{rv.name}",
        params={"variant": rv.name, **rv.variant.overrides},
        tags=tags,
        parent_run_id=parent_run_id,
    ) as run:
        t0 = time.perf_counter()
        ws_params = write_params(variant_workspace(root, study.name, rv.name), rv.raw, params_note(study.name, rv.name))
        for ds in rv.datasets():
            spectrograms_task(str(root), str(ws_params), profile, ds)
        ws, store = prepare_variant(root, study.name, rv)
        for seed in params.pretrain.seeds:  # the pretraining flow's task; MLflow here is the variant's run
            pretrain_seed_task(str(store), str(store / "params.yaml"), profile, seed, track=False)
        out: dict[str, Any] = {"name": rv.name, "overrides": rv.variant.overrides, "store": store.name, "scores": {}}
        aggregates = {}
        for t in rv.tasks:
            units = units_for(with_task(params, t))
            common = {"workspace": str(ws), "profile": profile, "task_name": t, "select_fraction": select}
            futures = unit_task.map(
                **common, variant=rv.name, unit_name=[u.name for u in units], unit=[tuple(u) for u in units]
            )
            wait(futures)
            failed = [(u, f.state) for u, f in zip(units, futures) if not f.state.is_completed()]
            if failed:
                causes = "; ".join(f"{u.name}: {s.message or s.name}" for u, s in failed)
                raise RuntimeError(f"{len(failed)} of {len(units)} units failed ({t}): {causes}")
            scored = score_task(**common, variant=rv.name, metric=study.metric)
            aggregates[t], out["scores"][t] = scored["aggregate"], scored["summary"]
        if track:
            from trls_core.tracking.study import log_study_variant

            log_study_variant(run, aggregates, out["scores"], {"workspace": str(ws), "pretrain_store": str(store)})
        first = out["scores"][rv.tasks[0]]
        logger.info(
            "variant %s: %s %.4f ± %.4f on held-out validation (%.0f s)",
            rv.name,
            study.metric,
            first["mean"],
            first["std"],
            time.perf_counter() - t0,
        )
    return out


@flow(name="trls-study", validate_parameters=True, task_runner=InlineTaskRunner())
def study_flow(
    overlay: str,
    root: str = ".",
    params_path: str = "params.yaml",
    sets: list[str] | None = None,
    variants: list[str] | None = None,
    track: bool = True,
) -> dict[str, Any]:
    """Run the overlay's variants (``variants`` names a subset) and write the study's table.

    ``overlay`` and ``params_path`` are relative to ``root`` unless absolute
    (``overlay`` also as given, when that file exists). ``sets`` are
    ``--set``-style overrides applied over every variant. Every variant is
    resolved and validated before anything runs. Returns the table files,
    the per-variant scores and the MLflow parent run id.
    """
    from trls_core.study.plan import plan_study
    from trls_core.study.table import table_rows, write_table
    from trls_core.study.workspace import table_files

    logger = run_logger()
    logger.debug("orchestration reniced: %s", yield_cpu_to_training())
    root_p, params_p = resolve_paths(root, params_path)
    ov = Path(overlay).expanduser()
    if not ov.is_absolute() and not ov.is_file():
        ov = root_p / ov
    study, plan = plan_study(ov.resolve(), params_p, sets, variants)
    tasks = list(plan[0].tasks)
    logger.info("study %s: %d variant(s), %s on %s", study.name, len(plan), study.metric, ", ".join(tasks))
    done: list[dict[str, Any]] = []
    failed: list[tuple[str, BaseException]] = []
    files = table_files(root_p, study.name)
    with start_run(
        track,
        root_p,
        experiment_name(plan[0].params.evaluate.dataset),
        f"study/{study.name}",
        params={"study": study.name, "metric": study.metric, "tasks": tasks, "variants": [v.name for v in plan]},
        tags={"stage": "study", "study": study.name, **flow_run_tags()},
    ) as parent:
        if track:
            parent.log_artifact(study.path, "study")
        for rv in plan:
            try:
                done.append(_run_variant(root_p, study, rv, track, parent.run_id))
            except Exception as exc:  # noqa: BLE001 - one failed variant must not lose the others' results
                logger.error("variant %s failed: %s", rv.name, exc)
                failed.append((rv.name, exc))
        if done:
            write_table(files, study, tasks, table_rows(study.metric, tasks, done))
            if track:
                for f in files.values():
                    parent.log_artifact(f, "study")
            logger.info("study table: %s", ", ".join(str(f) for f in files.values()))
        if failed:
            raise VariantsFailed(
                f"{len(failed)} of {len(plan)} variants of {study.name} failed: "
                + "; ".join(f"{n}: {e}" for n, e in failed)
            )
    return {
        "files": {k: str(v) for k, v in files.items()},
        "variants": {v["name"]: v["scores"] for v in done},
        "run_id": parent.run_id,
    }
