"""A Prefect task runner that runs each task at once, in the thread that submits it.

Built on Prefect's public task-runner interface (``prefect.task_runners.TaskRunner``:
``submit`` and ``duplicate``, as ``prefect-dask`` and ``prefect-ray`` implement
it), so ``.submit`` / ``.map`` / ``wait`` and the task-run states, logs and
retries in the UI work unchanged. Separate from ``flows/__init__.py`` so
importing the package stays light (this module imports prefect).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from concurrent.futures import Future
from typing import Any

from prefect.futures import PrefectConcurrentFuture, PrefectFuture
from prefect.task_runners import TaskRunner

__all__ = ["InlineTaskRunner"]


class InlineTaskRunner(TaskRunner[PrefectConcurrentFuture[Any]]):
    """Prefect task runner that runs each submitted (or mapped) task at once in the flow's thread.

    Why: mapped evaluation units are separate task runs (states, logs in
    the UI), but their torch work must run where pretraining ran. Measured
    on the 2-core machines (``make bench-orchestration``): the same 36 units
    took 567 s in a ``ThreadPoolTaskRunner`` worker thread against 434 s as
    bare calls in the main thread, while pretraining in the flow's own
    thread was as fast as bare. Tasks run one after another, in submission
    order; ``submit`` returns a finished future, so ``.map`` + ``wait`` and
    a failed task's state work as with a thread pool.

    A stop (Ctrl-C, SIGTERM -> Prefect's ``TerminationSignal``) is a
    ``BaseException`` that is not an ``Exception``: it propagates out of
    ``submit`` and ends the flow, instead of being stored in the current
    task's future (signals reach only the main thread; with a pool they
    interrupt the flow's wait, here they interrupt the task itself, and a
    future that swallowed them let a stopped comparison run on through every
    remaining unit).

    For real parallelism the evaluation units can run on Dask worker
    processes instead (``evaluate.runner: dask``, :mod:`flows.dask_runner`).
    """

    def duplicate(self) -> InlineTaskRunner:
        return type(self)()

    def submit(
        self,
        task: Any,
        parameters: dict[str, Any],
        wait_for: Iterable[PrefectFuture[Any]] | None = None,
        dependencies: dict[str, set[Any]] | None = None,
    ) -> PrefectConcurrentFuture[Any]:
        """Run ``task`` now through Prefect's task engine; return its (finished) future.

        The engine records the task run and returns its final state; a
        task's ``Exception`` becomes a Failed state (``return_type="state"``),
        exactly as the thread pool's worker would hold it.
        """
        from prefect.task_engine import run_task_sync

        if task.isasync:
            raise TypeError(f"InlineTaskRunner runs sync tasks only; {task.name!r} is async")
        task_run_id = uuid.uuid4()
        fut: Future[Any] = Future()
        try:
            fut.set_result(
                run_task_sync(
                    task=task,
                    task_run_id=task_run_id,
                    parameters=parameters,
                    wait_for=wait_for,
                    return_type="state",
                    dependencies=dependencies,
                )
            )
        except Exception as exc:  # noqa: BLE001 - an engine error belongs to this task's future, as in a pool
            fut.set_exception(exc)
        return PrefectConcurrentFuture(task_run_id=task_run_id, wrapped_future=fut)
