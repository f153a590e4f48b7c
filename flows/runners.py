"""A Prefect task runner that keeps task work in the flow's own thread.

Separate from ``flows/__init__.py`` so importing the package stays light
(this module imports prefect).
"""

from __future__ import annotations

from typing import Any

from prefect.task_runners import ThreadPoolTaskRunner

__all__ = ["InlineTaskRunner"]


class _InlineExecutor:
    """A ``concurrent.futures`` executor that runs each call at once, in the calling thread."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` now; its ``Exception`` goes into the future, as a pool's would.

        A ``BaseException`` that is not an ``Exception`` (``KeyboardInterrupt``,
        ``SystemExit``, Prefect's ``TerminationSignal`` raised by its SIGTERM
        handler) propagates instead. Signals reach only the main thread, so
        with a real pool they would interrupt the flow's wait, not a task; a
        future that swallowed them let a stopped comparison run on through
        every remaining unit (measured: SIGTERM crashed one unit and the next
        ones kept going until SIGKILL).
        """
        from concurrent.futures import Future

        fut: Future[Any] = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - a task's failure is its future's, as in a pool
            fut.set_exception(exc)
        return fut

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        return None


class InlineTaskRunner(ThreadPoolTaskRunner):
    """Prefect task runner that runs each submitted (or mapped) task at once in the flow's thread.

    Why: mapped evaluation units are separate task runs (states, retries,
    logs in the UI), but their torch work must run where pretraining ran.
    Measured on the 2-core machines (``make bench-orchestration``): the same
    36 units took 567 s in a ``ThreadPoolTaskRunner`` worker thread against
    434 s as bare calls in the main thread, while pretraining in the flow's
    own thread was as fast as bare. Tasks then run one after another (as
    ``max_workers=1`` did), in submission order; a failed task's state is
    returned like the thread pool's, so ``.map`` + ``wait`` work unchanged;
    a stop (Ctrl-C, SIGTERM) ends the flow instead of the current task only.
    """

    def __init__(self, max_workers: int | None = 1) -> None:
        super().__init__(max_workers=1)

    def __enter__(self) -> InlineTaskRunner:
        super().__enter__()
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        self._executor = _InlineExecutor()
        return self
