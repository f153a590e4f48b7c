"""Which task failures are worth a retry: transient ones only.

Tasks that talk to MLflow (its sqlite store or a tracking server) or to
Prefect's API can fail on a locked database, a dropped connection or a
timeout; a second try a few seconds later succeeds. A failure of our own
(:class:`trls_core.errors.TrlsError`: bad params, missing data), a
``ValueError``/``KeyError``/``TypeError`` (a bug) or a missing file fails the
same way every time, so retrying it only hides the cause behind minutes of
repeats. Training tasks (pretraining seeds, evaluation units) are never
retried: a retry would repeat minutes to hours of compute.

Use: ``@task(retries=2, retry_delay_seconds=[5, 20], retry_condition_fn=transient_only)``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MLFLOW_RETRY", "is_transient", "transient_only"]

#: MLflow error codes that say "try again" (not INTERNAL_ERROR: MLflow's default code for any error; a locked
#: sqlite store is recognised by the sqlalchemy OperationalError in the cause chain instead).
_TRANSIENT_MLFLOW_CODES = {"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "DEADLINE_EXCEEDED"}
#: OSErrors that never heal by waiting.
_PERMANENT_OS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, FileExistsError)
#: Exception class names (checked along the cause chain) of transient database/network errors.
_TRANSIENT_NAMES = {"OperationalError", "TimeoutException", "ConnectError", "ReadTimeout", "RemoteProtocolError"}


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen and len(seen) < 10:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def is_transient(exc: BaseException) -> bool:
    """True for a failure that a retry may cure (locked store, network, timeout); False for ours or a bug."""
    from trls_core.errors import TrlsError

    chain = _chain(exc)
    if isinstance(chain[0], TrlsError):
        return False
    for e in chain:
        if isinstance(e, _PERMANENT_OS):
            return False
        if isinstance(e, (ConnectionError, TimeoutError)):
            return True
        if type(e).__name__ in _TRANSIENT_NAMES:
            return True
        if type(e).__name__ == "MlflowException" and getattr(e, "error_code", None) in _TRANSIENT_MLFLOW_CODES:
            return True
        if isinstance(e, OSError) and "database is locked" in str(e):
            return True
    return any("database is locked" in str(e) for e in chain)


def transient_only(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry only when the task's exception :func:`is_transient`."""
    exc = getattr(state, "data", None)
    if not isinstance(exc, BaseException):
        try:
            exc = state.result(raise_on_failure=False)
        except Exception as err:  # noqa: BLE001 - unreadable result: judge the error reading it
            exc = err
    return isinstance(exc, BaseException) and is_transient(exc)


#: The task options of an MLflow-talking task: two retries, 5 s then 20 s apart, transient failures only.
MLFLOW_RETRY: dict[str, Any] = {"retries": 2, "retry_delay_seconds": [5, 20], "retry_condition_fn": transient_only}
