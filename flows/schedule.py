"""Cron-scheduled retraining: the pipeline flow as a Prefect deployment, one run at a time.

``build_deployment`` makes the deployment object (tests register it with
``.apply()`` against a test API and read it back); ``serve_pipeline`` serves
it from this process (``trls schedule``), which then runs the pipeline at
every cron tick until stopped.

- ``concurrency_limit=1`` (Prefect's deployment concurrency, collision
  strategy ``ENQUEUE``): a tick that comes while a run of the deployment is
  still going waits (state ``AwaitingConcurrencySlot``) and starts when that
  run ends, instead of running beside it (two trainings on a 2-core machine
  run 20-30x slower, docs/stack.md). A manual ``python -m flows.pipeline`` or
  ``trls pipeline`` is not a run of the deployment and is not counted.
- ``pause_on_shutdown=False``: stopping the server process must not silently
  pause the weekly schedule.
- The profile, dataset and settings are checked before anything is served
  (:func:`flows.pipeline.pipeline_params`), so a typo fails at once, naming
  the valid values, not at the first tick a week later.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flows import resolve_paths

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

DEFAULT_CRON = "0 3 * * 1"  # Mondays 03:00 UTC
DEFAULT_NAME = "trls-retrain"
CONCURRENCY_LIMIT = 1


def build_deployment(
    cron: str = DEFAULT_CRON,
    name: str = DEFAULT_NAME,
    params_path: str = "params.yaml",
    root: str = ".",
    profile: str | None = None,
    dataset: str | None = None,
    track: bool = True,
    register_model: bool = True,
    model_name: str | None = None,
    force: bool = False,
) -> RunnerDeployment:
    """The pipeline deployment with a cron schedule (UTC), one run at a time, absolute paths as parameters.

    Paths are made absolute here because scheduled runs start in a runner
    process whose working directory is not the caller's. ``profile`` and
    ``dataset`` are validated first (:func:`flows.pipeline.pipeline_params`).
    ``force`` makes every scheduled run a real retrain (a single run can set
    it instead: ``prefect deployment run ... --param force=true``).
    """
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

    from flows.pipeline import pipeline_flow, pipeline_params
    from trls_core.errors import ConfigError

    root_p, params_p = resolve_paths(root, params_path)
    _, ds = pipeline_params(params_p, profile, dataset)
    parameters: dict[str, Any] = {
        "root": str(root_p),
        "params_path": str(params_p),
        "track": track,
        "register_model": register_model,
        "dataset": ds,
        "force": force,
    }
    if profile is not None:
        parameters["profile"] = profile
    if model_name is not None:
        parameters["model_name"] = model_name
    try:
        return pipeline_flow.to_deployment(
            name=name,
            cron=cron,
            parameters=parameters,
            description="Scheduled TRLS retraining: dvc repro -> pretrain -> evaluate -> register/promote. "
            "One run at a time: a tick during a run waits for it.",
            tags=["trls", "retrain", ds],
            concurrency_limit=ConcurrencyLimitConfig(
                limit=CONCURRENCY_LIMIT, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE
            ),
        )
    except ValueError as exc:  # pydantic's ValidationError for a bad cron string is a ValueError
        raise ConfigError(f"schedule {name!r}: invalid cron {cron!r}: {exc}") from None


def serve_pipeline(
    cron: str = DEFAULT_CRON,
    name: str = DEFAULT_NAME,
    params_path: str = "params.yaml",
    root: str = ".",
    profile: str | None = None,
    dataset: str | None = None,
    model_name: str | None = None,
    force: bool = False,
) -> None:
    """Register the deployment and serve it from this process (blocks until interrupted)."""
    from prefect import serve

    deployment = build_deployment(
        cron=cron,
        name=name,
        params_path=params_path,
        root=root,
        profile=profile,
        dataset=dataset,
        model_name=model_name,
        force=force,
    )
    serve(deployment, pause_on_shutdown=False)
