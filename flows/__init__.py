"""Prefect 3 flows: the orchestration layer over ``trls_core`` (docs/design.md §4).

Thin on purpose: every flow loads params, calls one stage function of
``trls_core`` per task and passes only paths and MLflow run ids between
tasks (never tensors or models). DVC owns the data and its caching, so no
task here persists or caches Prefect results.

Modules: ``pretrain`` (one task per seed), ``finetune`` (evaluation
protocol), ``pipeline`` (DVC data -> pretrain -> evaluate -> registry, under
one MLflow parent run), ``schedule`` (cron deployment of the pipeline, one
run at a time), ``compare`` and ``study``; ``artifacts`` (what the Prefect UI
shows: report / promotion / comparison artifacts, progress), ``retries``
(which failures are retried), ``runners`` (the inline task runner).

This package imports nothing heavy at import time; the helpers below are
shared by the flow modules.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

__all__ = [
    "NullTracker",
    "experiment_name",
    "flow_run_tags",
    "log_params_file",
    "numeric_metrics",
    "resolve_paths",
    "run_logger",
    "start_run",
    "yield_cpu_to_training",
]


def run_logger() -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger inside a flow/task run (shown in the UI), a module logger outside one.

    The fallback lets a task's ``.fn`` be called directly (tests, scripts).
    """
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("flows")


def resolve_paths(root: str | Path, params_path: str | Path) -> tuple[Path, Path]:
    """Absolute project root and params file; a relative params path is relative to ``root``.

    Flows may run in another process (a deployment's runner), so every path
    they hand to tasks is made absolute once, here.
    """
    root_p = Path(root).expanduser().resolve()
    params_p = Path(params_path).expanduser()
    if not params_p.is_absolute():
        params_p = root_p / params_p
    return root_p, params_p.resolve()


def experiment_name(dataset: str) -> str:
    """One MLflow experiment per dataset (docs/design.md §4)."""
    return f"trls-{dataset}"


def numeric_metrics(d: dict[str, Any], drop: tuple[str, ...] = ("seed",)) -> dict[str, float]:
    """Finite scalar numbers of a (nested) result dict, with dotted keys: what MLflow metrics accept."""
    from trls_core.config import flatten

    out: dict[str, float] = {}
    for k, v in flatten(d).items():
        if k in drop or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if math.isfinite(float(v)):
            out[k] = float(v)
    return out


class NullTracker:
    """Stand-in for ``trls_core.tracking.Tracker`` when a flow runs with ``track=False``.

    Same methods, all no-ops, so the flows have one code path whether or
    not MLflow is used.
    """

    run_id: str | None = None

    def __enter__(self) -> NullTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def log_params(self, *a: Any, **k: Any) -> None: ...
    def log_metrics(self, *a: Any, **k: Any) -> None: ...
    def log_metric_steps(self, *a: Any, **k: Any) -> None: ...
    def log_artifact(self, *a: Any, **k: Any) -> None: ...
    def log_table(self, *a: Any, **k: Any) -> None: ...
    def log_splits(self, *a: Any, **k: Any) -> int:
        return 0

    def set_tags(self, *a: Any, **k: Any) -> None: ...
    def finish(self, *a: Any, **k: Any) -> None: ...

    def system_metrics(self, *a: Any, **k: Any) -> AbstractContextManager[None]:
        return nullcontext()

    def child(self, *a: Any, **k: Any) -> NullTracker:
        return NullTracker()


@contextmanager
def start_run(
    track: bool,
    root: Path,
    experiment: str,
    run_name: str,
    params: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    parent_run_id: str | None = None,
) -> Iterator[Any]:
    """An MLflow run (``Tracker.start``) when tracking, else a :class:`NullTracker`.

    ``trls_core.tracking`` (the only mlflow importer) is imported only when
    tracking is on, so ``track=False`` flows never load mlflow.
    """
    if not track:
        yield NullTracker()
        return
    from trls_core.tracking import Tracker

    with Tracker.start(root, experiment, run_name, params=params, tags=tags, parent_run_id=parent_run_id) as run:
        yield run


def flow_run_tags() -> dict[str, str]:
    """Tags linking an MLflow run to the Prefect flow run that made it."""
    from prefect.runtime import flow_run

    tags = {}
    if flow_run.id:
        tags["prefect.flow_run_id"] = str(flow_run.id)
    if flow_run.name:
        tags["prefect.flow_run_name"] = str(flow_run.name)
    return tags


def log_params_file(run: Any, params_path: Path, params: Any) -> None:
    """The params file as given and the resolved settings (profile merged) as artifacts under ``params/``.

    The flattened MLflow params are for filtering in the UI; these two files
    are what a user copies to reproduce the run exactly.
    """
    if isinstance(run, NullTracker):
        return
    run.log_artifact(Path(params_path), "params")
    run.log_dict(params.model_dump(mode="json"), "params/resolved.json")


ORCHESTRATION_NICE_ENV = "TRLS_ORCHESTRATION_NICE"
ORCHESTRATION_IDLE_ENV = "TRLS_ORCHESTRATION_SCHED_IDLE"
_TRAINING_THREADS = ("MainThread",)


def _server_pids() -> list[int]:
    """Children of this process that are Prefect's ephemeral API server (uvicorn), from /proc."""
    me, pids = os.getpid(), []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
            if ppid != me:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmd = fh.read()
        except (OSError, ValueError, IndexError):
            continue
        if b"uvicorn" in cmd and b"prefect.server" in cmd:
            pids.append(int(entry))
    return pids


def _threads_of(pid: int) -> list[int]:
    """Thread ids of process ``pid`` (Linux /proc); empty when it is gone."""
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except (OSError, ValueError):
        return []


def _deprioritise(tid: int, nice: int, idle: bool) -> bool:
    """Thread ``tid`` to SCHED_IDLE (when ``idle`` and available) and niceness ``nice``; False without permission."""
    ok = False
    if idle and hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
            ok = True
        except OSError:
            pass
    try:
        os.setpriority(os.PRIO_PROCESS, tid, nice)  # per thread on Linux; the fallback where SCHED_IDLE is refused
        ok = True
    except OSError:
        pass
    return ok


def yield_cpu_to_training(nice: int | None = None, idle: bool | None = None) -> dict[str, int]:
    """Lower the CPU priority of orchestration work so training keeps the cores.

    Why: on the 2-core machines torch's intra-op threads use both cores, and
    every slice of CPU that Prefect's ephemeral API server (a uvicorn child
    process: its event loop, aiosqlite connection threads and a tokio
    runtime wake ~140 times a second even when idle) or this process's
    Prefect background threads (event/log shipping, the sync event loop)
    take preempts a torch thread and stalls the whole parallel region until
    it is back (measured: 28.8k involuntary context switches in a flow run
    vs 6.0k bare). That bookkeeping is latency-tolerant: every thread of the
    server and the background threads here go to ``SCHED_IDLE`` (they run
    when a core is free and never preempt training; env
    ``TRLS_ORCHESTRATION_SCHED_IDLE=0`` keeps the normal policy) and
    niceness ``nice`` (default 10, env ``TRLS_ORCHESTRATION_NICE``; 0 turns
    all of this off). Threads they start later inherit the policy. When the
    flow itself waits on the API, the training threads are idle, so the
    server gets the cores at once.

    Linux only (per-thread scheduling via thread ids); elsewhere, and
    without permission, it does nothing. Returns the number of server
    processes and of threads (server's and ours) changed.
    """
    if nice is None:
        try:
            nice = int(os.environ.get(ORCHESTRATION_NICE_ENV, "10"))
        except ValueError:
            nice = 10
    if idle is None:
        from trls_core.runtime import env_enabled

        idle = env_enabled(ORCHESTRATION_IDLE_ENV)
    done = {"server_processes": 0, "threads": 0}
    if nice <= 0 or not hasattr(os, "setpriority") or not os.path.isdir("/proc"):
        return done
    for pid in _server_pids():
        changed = sum(_deprioritise(tid, nice, idle) for tid in _threads_of(pid))
        done["server_processes"] += changed > 0
        done["threads"] += changed
    for t in threading.enumerate():
        tid = getattr(t, "native_id", None)
        # training runs in the main thread and in task-runner workers ("ThreadPoolExecutor-…");
        # everything else here is Prefect's (or mlflow's) background machinery
        if tid is None or t.name in _TRAINING_THREADS or t.name.startswith("ThreadPoolExecutor"):
            continue
        done["threads"] += _deprioritise(tid, nice, idle)
    return done
