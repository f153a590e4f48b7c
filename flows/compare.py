"""Compare flow: several methods through the same protocol -> ``reports/<dataset>/comparison.*``.

Each method (``trls_core.methods``: a name + params overrides) runs in its
own workspace ``compare/<dataset>/<method>/`` holding its resolved
``params.yaml``, a link to the project's spectrograms (the data is built
once, by DVC, for all methods) and its own ``models/`` and ``reports/``. In
that workspace the ordinary :func:`flows.pretrain.pretrain_flow` and
:func:`flows.evaluate.evaluate_flow` run unchanged, so every method gets the
same splits, label fractions, seeds and controls, and a rerun resumes each
method from its checkpoints and stored unit results.

MLflow: one ``compare`` parent run, a nested ``method/<name>`` run per
method (its pretrain and evaluate runs nest below it), and the comparison
files as artifacts of the parent.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import yaml
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows import experiment_name, flow_run_tags, resolve_paths, run_logger, start_run, yield_cpu_to_training
from flows.artifacts import comparison_artifacts
from flows.evaluate import evaluate_flow
from flows.pretrain import pretrain_flow
from flows.retries import MLFLOW_RETRY


def method_workspace(root: Path, dataset: str, method: str) -> Path:
    return root / "compare" / dataset / method


def prepare_workspace(
    root: Path,
    dataset: str,
    method_name: str,
    raw: dict[str, Any],
    profile: str | None,
    compare_dataset: str | None = None,
) -> Path:
    """Create (or refresh) the method's workspace; returns its params file.

    The params file is rewritten only when its content changes, and the
    spectrogram folder is a symlink to the project's, so the workspace
    never holds a stale or duplicated copy of the data.
    """
    from trls_core.config import resolve_params
    from trls_core.io import write_text
    from trls_core.methods import get_method, method_params
    from trls_core.paths import parquet_dir, spectrogram_dir

    method = get_method(method_name, resolve_params(raw, profile=profile))
    ws = method_workspace(root, dataset, method.name)
    params_file = ws / "params.yaml"
    text = (
        "# written by flows/compare.py: params.yaml with the profile applied and the overrides of\n"
        f"# method {method.name!r} ({method.description}); edit the project's params.yaml instead\n"
        + yaml.safe_dump(method_params(raw, method, profile, compare_dataset), sort_keys=False)
    )
    if not params_file.is_file() or params_file.read_text() != text:
        write_text(params_file, text)
    # the data is DVC's, built once: the spectrograms, and the windows Parquet raw-input methods read
    for where in (spectrogram_dir, parquet_dir):
        _link_dir(where(root, dataset).resolve(), where(ws, dataset))
    return params_file


def _link_dir(src: Path, link: Path) -> None:
    """``link`` -> ``src`` (re-pointed when it points elsewhere; a missing ``src`` is left to the reader's error)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() and Path(os.readlink(link)) != src:
        link.unlink()
    if not link.exists() and not link.is_symlink():
        link.symlink_to(src, target_is_directory=True)


@task(name="comparison-report", cache_policy=NO_CACHE, persist_result=False, **MLFLOW_RETRY)
def comparison_task(
    root: str,
    dataset: str,
    task_name: str,
    metrics_files: dict[str, str],
    wall_seconds: dict[str, float],
    track: bool = True,
    run_id: str | None = None,
    compute_seconds: dict[str, float] | None = None,
    descriptions: dict[str, str] | None = None,
) -> dict[str, str]:
    """Write ``reports/<dataset>/comparison.{md,csv}`` + plots, log them to the compare run, show them in Prefect.

    ``descriptions``: each method's one-line description (params.yaml
    ``methods``). Prefect artifacts: the CSV as a table and the markdown
    report (with the MLflow run link). Retried on transient failures only
    (:mod:`flows.retries`); rewriting the files is idempotent.
    """
    from trls_core.comparison import write_comparison
    from trls_core.dvc_files import write_comparison_plot
    from trls_core.paths import report_dir, report_file

    rdir = report_dir(Path(root), dataset)
    files = write_comparison(
        rdir,
        {m: Path(p) for m, p in metrics_files.items()},
        {m: (descriptions or {}).get(m, "") for m in metrics_files},
        wall_seconds,
        compute_seconds,
    )
    if task_name != "binary":  # one naming rule with the evaluation reports (paths.report_file)
        files = {k: f.rename(report_file(rdir, f.name, task_name)) for k, f in files.items()}
    write_comparison_plot(Path(root), dataset, task_name, files["csv"])  # reports/dvc/: for dvc plots
    run = None
    if track and run_id:
        from trls_core.tracking import resume_run

        run = resume_run(Path(root), run_id)  # the flow's `with` ends it
        for f in files.values():
            run.log_artifact(f, "comparison")
    comparison_artifacts(files, dataset, task_name, run)
    run_logger().info("comparison written: %s", ", ".join(str(f) for f in files.values()))
    return {k: str(v) for k, v in files.items()}


@flow(name="trls-compare", validate_parameters=True)
def compare_flow(
    root: str = ".",
    params_path: str = "params.yaml",
    profile: str | None = None,
    methods: list[str] | None = None,
    task: str | None = None,
    track: bool = True,
    dataset: str | None = None,
) -> dict[str, Any]:
    """Run each method (default ``compare.methods``) through pretraining + evaluation, then compare.

    ``dataset`` (default ``pretrain.dataset``) runs the comparison on another
    built dataset, with ``compare.datasets[dataset]`` merged in (its task
    and budget). Needs the dataset's spectrograms (``dvc repro``). Returns
    the comparison files, each method's report folder and the MLflow parent
    run id.
    """
    from trls_core.comparison import stored_compute_seconds
    from trls_core.config import read_raw_params, resolve_params
    from trls_core.methods import get_method, method_params
    from trls_core.paths import report_dir, report_file

    logger = run_logger()
    logger.debug("orchestration reniced: %s", yield_cpu_to_training())
    root_p, params_p = resolve_paths(root, params_path)
    raw = read_raw_params(params_p)
    base = resolve_params(raw, profile=profile, source=str(params_p))
    names = list(methods) if methods else list(base.compare.methods)
    descriptions = {m: get_method(m, base).description for m in names}  # unknown names fail before anything runs
    # the dataset and task as every method will see them (compare.datasets may set the task)
    first = resolve_params(method_params(raw, names[0], base.profile, dataset), profile=base.profile)
    ds = first.pretrain.dataset
    task_name = task or first.evaluate.task
    logger.info("comparing %s on %s (task %s, profile %s)", names, ds, task_name, base.profile)
    tags = {"stage": "compare", "dataset": ds, "profile": base.profile, **flow_run_tags()}
    metrics_files: dict[str, str] = {}
    walls: dict[str, float] = {}
    compute: dict[str, float] = {}
    reports: dict[str, str] = {}
    with start_run(
        track,
        root_p,
        experiment_name(ds),
        "compare",
        params={"methods": ",".join(names), "profile": base.profile, "task": task_name},
        tags=tags,
    ) as parent:
        for name in names:
            ws_params = prepare_workspace(root_p, ds, name, raw, base.profile, dataset)
            ws = ws_params.parent
            t0 = time.perf_counter()
            with start_run(
                track,
                root_p,
                experiment_name(ds),
                f"method/{name}",
                params={"method": name, "workspace": str(ws)},
                tags={"stage": "compare-method", "method": name},
                parent_run_id=parent.run_id,
            ) as mrun:
                sub = {
                    "root": str(ws),
                    "params_path": str(ws_params),
                    "profile": base.profile,
                    "track": track,
                    "parent_run_id": mrun.run_id,
                }
                model_dirs = pretrain_flow(**sub)
                reports[name] = evaluate_flow(**sub, task=task_name)
            walls[name] = round(time.perf_counter() - t0, 1)
            metrics_files[name] = str(report_file(report_dir(ws, ds), "metrics.json", task_name))
            compute[name] = round(stored_compute_seconds([Path(d) for d in model_dirs], Path(metrics_files[name])), 1)
            logger.info(
                "method %s done in %.0f s (its results cost %.0f s of compute): %s",
                name,
                walls[name],
                compute[name],
                reports[name],
            )
        files = comparison_task(
            str(root_p), ds, task_name, metrics_files, walls, track, parent.run_id, compute, descriptions
        )
    return {
        "files": files,
        "reports": reports,
        "wall_seconds": walls,
        "compute_seconds": compute,
        "run_id": parent.run_id,
    }


if __name__ == "__main__":  # `python -m flows.compare`: the methods of params.yaml on an ephemeral API
    from trls_core.runtime import exit_on_sigterm, tune_malloc

    tune_malloc()
    exit_on_sigterm()
    compare_flow()
