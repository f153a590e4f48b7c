"""Evaluation units on Dask: ``evaluate.runner: dask`` -> prefect-dask's ``DaskTaskRunner``.

Why processes: torch in threads of one process ran 31 % slower than in the
flow's own thread (:mod:`flows.runners`), and units in one process share
torch's global RNG. A Dask worker is a process of its own; with
``threads_per_worker: 1`` it runs one unit at a time, and Dask's nanny
starts it with ``OMP_NUM_THREADS=1`` (``distributed.nanny.pre-spawn-environ``),
so N workers are N single-threaded torch jobs instead of N jobs fighting
over the same cores (docs/stack.md, "torch on the CPU").

``evaluate.dask.address: null`` starts a ``LocalCluster`` of
``n_workers`` processes on 127.0.0.1 for the flow and closes it when the
flow's units are done (also when the flow fails or is stopped). A scheduler
``address`` is checked before any work (:func:`check_scheduler`): an
unreachable one fails within ``connect_timeout_s``, naming it. Its workers
are the user's: they need this project installed and the project root at
the same path (the units read and write ``<root>/reports``), and the
environment the flow has (``MLFLOW_TRACKING_URI``).

The runner enters no fingerprint: a unit's result depends on its settings,
data and encoder, not on where it ran (``trls_core.stages.evaluate``).
Imported by :mod:`flows.evaluate` only when the runner is ``dask``, so the
inline path never imports dask.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from trls_core.errors import ConfigError

__all__ = [
    "SchedulerUnreachable",
    "check_scheduler",
    "dask_task_runner",
    "flush_workers",
    "units_on_dask",
    "workers_api_url",
]


class SchedulerUnreachable(ConfigError):
    """``evaluate.dask.address`` names no Dask scheduler that answered in time (exit 2 through the CLI)."""


async def _identity(address: str, timeout_s: float) -> dict[str, Any]:
    from distributed.core import rpc

    async with rpc(address, timeout=timeout_s) as scheduler:
        return await asyncio.wait_for(scheduler.identity(), timeout_s)


def check_scheduler(address: str, timeout_s: float) -> dict[str, Any]:
    """The scheduler's identity; :class:`SchedulerUnreachable` naming ``address`` if none answers in ``timeout_s``.

    One connection and an ``identity`` call, bounded by ``timeout_s`` (a
    refused port, an unknown host, a server that is not Dask's and a
    malformed address all fail the same way, naming the address). Run in
    its own thread: a caller inside a running event loop may call it too.
    """
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="dask-check") as pool:
        fut = pool.submit(asyncio.run, _identity(address, timeout_s))
        try:
            ident = fut.result(timeout=timeout_s + 5)
        except Exception as exc:  # noqa: BLE001 - every way of not answering is the same user error
            why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise SchedulerUnreachable(
                f"evaluate.dask.address {address!r}: no Dask scheduler answered within {timeout_s:g} s ({why}); "
                "start one (`dask scheduler` + `dask worker <address>`) or set evaluate.dask.address: null "
                "for a local cluster"
            ) from None
    if ident.get("type") != "Scheduler":
        raise SchedulerUnreachable(
            f"evaluate.dask.address {address!r}: answered as {ident.get('type')!r}, not as a Dask scheduler"
        )
    return ident


def dask_task_runner(dask: Any) -> Any:
    """The ``DaskTaskRunner`` for ``evaluate.dask``: the scheduler at ``address``, or a LocalCluster of processes."""
    from prefect_dask import DaskTaskRunner

    client_kwargs = {"timeout": dask.connect_timeout_s}
    if dask.address:
        return DaskTaskRunner(address=dask.address, client_kwargs=client_kwargs)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": dask.n_workers,
            "threads_per_worker": dask.threads_per_worker,
            "processes": True,  # torch work per process (see the module docstring)
            "host": "127.0.0.1",
            "dashboard_address": None,  # no web server per flow run (and no port clash between runs)
        },
        client_kwargs=client_kwargs,
    )


def workers_api_url() -> str | None:
    """The Prefect API URL the units' processes must report to, or None when the settings already name one.

    On Prefect's ephemeral API (no ``PREFECT_API_URL``) the flow talks to a
    server its own process started; a Dask worker would start a second one
    on the same database. The flow's client knows the server's address.
    """
    from prefect.context import FlowRunContext
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return None
    ctx = FlowRunContext.get()
    url = str(getattr(ctx.client, "api_url", "") or "") if ctx else ""
    return url if url.startswith(("http://", "https://")) and "ephemeral-prefect" not in url else None


@contextmanager
def units_on_dask(dask: Any) -> Iterator[Any]:
    """A started ``DaskTaskRunner`` for the flow's units; closes the client (and a LocalCluster) on exit.

    The scheduler at ``address`` is checked first (bounded, naming it). The
    Prefect API URL is put into the settings the runner serialises with
    each unit, so worker processes report to the flow's API.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if dask.address:
        check_scheduler(dask.address, dask.connect_timeout_s)
    url = workers_api_url()
    updates = {PREFECT_API_URL: url} if url else {}
    with temporary_settings(updates=updates), dask_task_runner(dask) as runner:
        yield runner


def _drain_prefect(timeout_s: float) -> None:
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    EventsWorker.drain_all(timeout=timeout_s)
    APILogWorker.drain_all(timeout=timeout_s)


def _flush_prefect(timeout_s: float) -> None:
    """In a worker: send the Prefect events and logs its units left queued (task-run states arrive as events).

    ``Client.run`` calls this in the worker's event loop, where Prefect's
    ``drain_all`` would only return a coroutine: it drains in a thread.
    """
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="prefect-drain") as pool:
        pool.submit(_drain_prefect, timeout_s).result(timeout=2 * timeout_s + 5)


def flush_workers(client: Any, timeout_s: float = 20.0) -> None:
    """Every worker sends what its units queued for the Prefect API, before the cluster is closed or left.

    Why: Prefect records a task run's states from events a background
    thread sends; a LocalCluster's nanny kills a worker that has not exited
    4 s after being asked, which on a busy machine can be before that
    thread has sent the last states (the UI would show finished units as
    Running). Best effort: a failure here is logged, the units are done.
    """
    from flows import run_logger

    try:
        client.run(_flush_prefect, timeout_s, wait=True)
    except Exception as exc:  # noqa: BLE001 - the units' results are written; only their UI states may lag
        run_logger().warning("Dask workers: Prefect events/logs not flushed (%s: %s)", type(exc).__name__, exc)
