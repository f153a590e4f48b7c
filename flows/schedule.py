"""Cron-scheduled retraining: the pipeline flow as a Prefect deployment.

``build_deployment`` makes the deployment object (tests register it with
``.apply()`` against a test API and read it back); ``serve_pipeline`` serves
it from this process (``trls schedule``), which then runs the pipeline at
every cron tick until stopped. ``pause_on_shutdown=False``: stopping the
server process must not silently pause the weekly schedule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flows import resolve_paths

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

DEFAULT_CRON = "0 3 * * 1"  # Mondays 03:00 UTC
DEFAULT_NAME = "trls-retrain"


def build_deployment(
    cron: str = DEFAULT_CRON,
    name: str = DEFAULT_NAME,
    params_path: str = "params.yaml",
    root: str = ".",
    profile: str | None = None,
    dataset: str | None = None,
    track: bool = True,
    register_model: bool = True,
) -> RunnerDeployment:
    """The pipeline deployment with a cron schedule (UTC) and absolute paths as default parameters.

    Paths are made absolute here because scheduled runs start in a runner
    process whose working directory is not the caller's.
    """
    from flows.pipeline import pipeline_flow
    from trls_core.errors import ConfigError

    root_p, params_p = resolve_paths(root, params_path)
    parameters: dict[str, Any] = {
        "root": str(root_p),
        "params_path": str(params_p),
        "track": track,
        "register_model": register_model,
    }
    if profile is not None:
        parameters["profile"] = profile
    if dataset is not None:
        parameters["dataset"] = dataset
    try:
        return pipeline_flow.to_deployment(
            name=name,
            cron=cron,
            parameters=parameters,
            description="Scheduled TRLS retraining: dvc repro -> pretrain -> evaluate -> register/promote.",
            tags=["trls", "retrain"],
        )
    except ValueError as exc:  # pydantic's ValidationError for a bad cron string is a ValueError
        raise ConfigError(f"schedule {name!r}: invalid cron {cron!r}: {exc}") from None


def serve_pipeline(cron: str = DEFAULT_CRON, name: str = DEFAULT_NAME, params_path: str = "params.yaml") -> None:
    """Register the deployment and serve it from this process (blocks until interrupted)."""
    from prefect import serve

    serve(build_deployment(cron=cron, name=name, params_path=params_path), pause_on_shutdown=False)
