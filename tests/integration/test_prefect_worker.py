"""Prefect beyond the ephemeral API: ``prefect server start``, a process work pool, the pipeline deployment of
the project's ``prefect.yaml`` (``prefect deploy``), ``prefect worker start``, and a deployment run that the
worker picks up and finishes Completed, all on 127.0.0.1 with a temp ``PREFECT_HOME``.

Every process is started in its own session and stopped in ``finally`` with its whole process group (the
server's API process, the worker's flow-run process), also when an assertion fails; the test then checks
that none of them is left. The run trains the tiny project (1 epoch, 4 evaluation units, one task,
untracked): what is tested is the path server -> pool -> worker -> flow run, not the pipeline.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, TELEMETRY_OFF

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.scale]

POOL = "trls-process"
DEPLOYMENT = "trls-pipeline/trls-pipeline"  # <flow name>/<deployment name> of prefect.yaml
PREFECT = str(Path(sys.executable).with_name("prefect"))
SMALL = ["pretrain.epochs=1", "evaluate.seeds=[0]", "evaluate.fractions=[1.0]", "evaluate.also_tasks=[]"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Services:
    """The processes this test starts; :meth:`stop_all` ends each with everything it started."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, *args: str, cwd: Path) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [PREFECT, *args], cwd=cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.procs.append((name, proc))
        return proc

    def tail(self, name: str, n: int = 3000) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-n:]

    def stop_all(self, grace_s: float = 15) -> list[int]:
        """Each process group in turn, last started first: SIGTERM, SIGKILL after ``grace_s``; returns pids alive.

        One at a time: a worker stopping while the server is gone retries the API instead of exiting.
        """
        tree = {pid for _, p in self.procs for pid in {p.pid, *_descendants(p.pid)}}
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        for pid in tree:  # anything that left its group (none expected)
            if _alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        time.sleep(0.5)
        return sorted(pid for pid in tree if _alive(pid))


def _cli(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run([PREFECT, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"prefect {' '.join(args)} (exit {proc.returncode}):\n{proc.stdout[-2000:]}"
    return proc.stdout


def _wait_healthy(api: str, services: Services, server: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{api}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        assert server.poll() is None, f"prefect server exited ({server.returncode}):\n{services.tail('server')}"
        assert time.monotonic() < deadline, f"no healthy API at {api} in {timeout_s:.0f} s:\n{services.tail('server')}"
        time.sleep(0.5)


def _wait_final(flow_run_id: Any, services: Services, timeout_s: float = 300) -> Any:
    from prefect import get_client

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(flow_run_id)
            if run.state is not None and run.state.is_final():
                return run
            assert time.monotonic() < deadline, f"{run.state} after {timeout_s:.0f} s:\n{services.tail('worker')}"
            time.sleep(1)


def test_a_deployment_run_is_picked_up_by_a_process_worker_and_completes(
    tiny_project: Path, tiny_params: Path, tmp_path: Path
) -> None:
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    api = f"http://127.0.0.1:{_free_port()}/api"
    port = api.rsplit(":", 1)[1].split("/")[0]
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},  # none of the session's API
        **TELEMETRY_OFF,
        "PREFECT_HOME": str(tmp_path / "prefect_home"),
        "PREFECT_API_URL": api,
        "PREFECT_WORKER_QUERY_SECONDS": "1",  # the worker polls every second (default 10)
        "PREFECT_SERVER_UI_ENABLED": "false",
    }
    services = Services(env, logs)
    t0 = time.perf_counter()
    try:
        server = services.start("server", "server", "start", "--host", "127.0.0.1", "--port", port, cwd=tmp_path)
        _wait_healthy(api, services, server)
        t_server = time.perf_counter() - t0
        _cli(env, "work-pool", "create", POOL, "--type", "process")
        out = _cli(env, "--no-prompt", "deploy", "--name", "trls-pipeline")  # prefect.yaml of the project root
        assert "successfully created" in out, out[-2000:]
        worker = services.start("worker", "worker", "start", "--pool", POOL, cwd=tmp_path)
        with temporary_settings(updates={PREFECT_API_URL: api}):
            t_run = time.perf_counter()
            run = run_deployment(
                DEPLOYMENT,
                parameters={
                    "root": str(tiny_project),
                    "params_path": str(tiny_params),
                    "skip_data": True,  # the tiny project's data is built (no dvc repro)
                    "track": False,
                    "sets": SMALL,
                },
                timeout=0,  # returns at once; the worker picks the run up
            )
            done = _wait_final(run.id, services)
            t_done = time.perf_counter() - t_run
            assert done.state.is_completed(), f"{done.state}:\n{services.tail('worker')}"
            assert worker.poll() is None, services.tail("worker")
            from prefect import get_client

            with get_client(sync_client=True) as client:
                dep = client.read_deployment(done.deployment_id)
        assert done.work_pool_name == POOL and done.infrastructure_pid, done
        assert dep.name == "trls-pipeline" and dep.entrypoint == "flows/pipeline.py:pipeline_flow", dep
        # as `trls schedule`: one run at a time, a run that comes during another waits for it
        assert dep.global_concurrency_limit is not None and dep.global_concurrency_limit.limit == 1, dep
        assert dep.concurrency_options.collision_strategy == "ENQUEUE", dep
        assert {k: dep.parameters.get(k) for k in ("profile", "dataset", "model_name", "force")} == {
            "profile": None,
            "dataset": None,
            "model_name": None,
            "force": False,
        }, dep.parameters
        assert (tiny_project / "reports" / "epilepsy" / "metrics.json").is_file()  # the run trained and evaluated
        print(f"server healthy after {t_server:.1f} s; deployment run Completed {t_done:.1f} s after it was triggered")
    finally:
        left = services.stop_all()
    assert not left, f"processes left running: {left}"
    assert all(p.poll() is not None for _, p in services.procs)
