"""Evaluation flow: linear probe, label-fraction fine-tuning and controls -> ``reports/<dataset>/``.

One task around ``trls_core.stages.evaluate.evaluate_all``. Each protocol
unit it reports (``linear_probe/seed=0``, ``finetune/0.1/seed=0``,
``controls/<name>/seed=0``) becomes a nested MLflow run under an
``evaluate`` run, which gets the report (metrics.json, summary, plots) via
``tracking.log_evaluation``.

Not yet a fan-out: ``evaluate_all`` runs the whole fractions x seeds
protocol in one call (it embeds each seed once and shares that across the
fractions), so the units are one task here. Mapping them as separate tasks
needs the protocol split into per-unit functions in ``trls_core`` first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from trls_core.paths import report_file

from flows import experiment_name, flow_run_tags, numeric_metrics, resolve_paths, run_logger, start_run


def _run_params(params: Any) -> dict[str, Any]:
    from trls_core.config import flatten

    return flatten({
        "profile": params.profile,
        "encoder": params.model.encoder,
        "pretrain_seeds": list(params.pretrain.seeds),
        "evaluate": params.evaluate.model_dump(),
    })


def _with_task(params: Any, task_name: str | None) -> Any:
    """``params`` with ``evaluate.task`` overridden (None keeps the file's)."""
    if not task_name:
        return params
    return params.model_copy(update={"evaluate": params.evaluate.model_copy(update={"task": task_name})})


def _log_unit(run: Any, name: str, result: dict[str, Any]) -> None:
    """One protocol unit as a nested run: its test metrics, and per-epoch curves for fine-tuning."""
    parts = name.split("/")
    unit_params = {"unit": name, "method": parts[0], "seed": result.get("seed")}
    if "fraction" in result:
        unit_params["fraction"] = result["fraction"]
    with run.child(name, unit_params) as child:
        child.log_metrics(numeric_metrics({k: v for k, v in result.items() if k != "history"}), step=0)
        for row in result.get("history") or []:
            if isinstance(row, dict) and "epoch" in row:
                child.log_metrics(numeric_metrics(row, drop=("epoch",)), step=int(row["epoch"]))


@task(name="evaluate", cache_policy=NO_CACHE, persist_result=False)
def evaluate_task(
    root: str,
    params_path: str,
    profile: str | None,
    task_name: str | None = None,
    track: bool = True,
    parent_run_id: str | None = None,
) -> str:
    """Run the downstream protocol and write the reports; returns the report folder."""
    from trls_core.config import load_params
    from trls_core.stages.evaluate import evaluate_all

    logger = run_logger()
    params = _with_task(load_params(params_path, profile), task_name)
    ev = params.evaluate
    tags = {"stage": "evaluate", "task": ev.task, "profile": params.profile, **flow_run_tags()}
    with start_run(track, Path(root), experiment_name(ev.dataset), f"evaluate/{ev.task}",
                   params=_run_params(params), tags=tags, parent_run_id=parent_run_id) as run:

        def on_result(name: str, result: dict[str, Any]) -> None:
            f1 = result.get("macro_f1")
            logger.info("%s: macro-F1 %s", name, f"{f1:.3f}" if isinstance(f1, float) else f1)
            _log_unit(run, name, result)

        rdir = evaluate_all(Path(root), params, progress=False, on_result=on_result)
        if track:
            from trls_core.tracking import log_evaluation

            log_evaluation(run, rdir, metrics_file=report_file(rdir, "metrics.json", ev.task).name)
    logger.info("reports written to %s", rdir)
    return str(rdir)


@flow(name="trls-finetune", validate_parameters=True)
def finetune_flow(
    root: str = ".",
    params_path: str = "params.yaml",
    profile: str | None = None,
    task: str | None = None,
    track: bool = True,
    parent_run_id: str | None = None,
) -> str:
    """Evaluate the pretrained encoders (``task`` overrides ``evaluate.task``); returns the report folder.

    ``params_path`` is relative to ``root`` unless absolute.
    """
    from trls_core.config import load_params

    logger = run_logger()
    root_p, params_p = resolve_paths(root, params_path)
    params = _with_task(load_params(params_p, profile), task)  # fail fast on bad params
    ev = params.evaluate
    logger.info("evaluating %s on %s (task %s, seeds %s, fractions %s, profile %s)", params.model.encoder,
                ev.dataset, ev.task, ev.seeds, ev.fractions, params.profile)
    return evaluate_task(str(root_p), str(params_p), profile, task, track, parent_run_id)
