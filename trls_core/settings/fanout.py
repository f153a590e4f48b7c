"""Where the evaluation's units run: ``evaluate.runner`` and ``evaluate.dask`` (``flows/dask_runner.py``).

An execution detail like ``evaluate.device``: none of it enters a unit's
fingerprint, so switching runners reuses every stored unit result.
"""

from __future__ import annotations

from pydantic import Field

from trls_core.settings.base import Strict

__all__ = ["DaskParams"]


class DaskParams(Strict):
    """The Dask cluster ``evaluate.runner: dask`` maps the units over (prefect-dask's ``DaskTaskRunner``)."""

    # a running scheduler (``tcp://host:8786``); None: a LocalCluster of worker processes that the flow
    # starts and closes itself
    address: str | None = Field(min_length=1)
    # LocalCluster only (a scheduler at ``address`` brings its own workers): worker processes, and
    # threads per worker (1: one unit at a time per process, torch on one intra-op thread)
    n_workers: int = Field(gt=0)
    threads_per_worker: int = Field(gt=0)
    # how long to wait for the scheduler at ``address`` before failing, naming it
    connect_timeout_s: float = Field(gt=0)
