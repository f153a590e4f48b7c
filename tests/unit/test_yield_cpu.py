"""Orchestration yields the CPU to training: Prefect's server process and background threads reniced."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from flows import yield_cpu_to_training

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc") or not hasattr(os, "setpriority"), reason="Linux only")


def _sleeper(stop: threading.Event) -> None:
    stop.wait(10)


def test_background_threads_and_server_child_are_reniced_training_threads_are_not():
    base = os.getpriority(os.PRIO_PROCESS, 0)
    if base + 5 > 19:  # e.g. the suite run under `nice -n 19`: no room to renice by 5, nothing to observe
        pytest.skip(f"the test process already runs at nice {base}")
    stop = threading.Event()
    bg = threading.Thread(target=_sleeper, args=(stop,), name="EventsWorkerThread")
    worker = threading.Thread(target=_sleeper, args=(stop,), name="ThreadPoolExecutor-0_0")
    bg.start(), worker.start()
    # a child whose command line looks like Prefect's ephemeral server, with a second thread (as uvicorn has)
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import threading, time; threading.Thread(target=time.sleep, args=(10,)).start(); time.sleep(10)",
            "uvicorn",
            "prefect.server",
        ]
    )
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(10)"])
    try:
        for _ in range(50):  # until the child's second thread exists
            time.sleep(0.1)
            if len(os.listdir(f"/proc/{child.pid}/task")) >= 2:
                break
        done = yield_cpu_to_training(nice=base + 5, idle=True)
        assert done["server_processes"] >= 1 and done["threads"] >= 3  # (+ a real one left by other tests)
        assert os.getpriority(os.PRIO_PROCESS, bg.native_id) == base + 5
        child_threads = [int(t) for t in os.listdir(f"/proc/{child.pid}/task")]
        assert len(child_threads) >= 2
        for tid in child_threads:  # every thread of the server, not only its main one
            assert os.getpriority(os.PRIO_PROCESS, tid) == base + 5
            if hasattr(os, "SCHED_IDLE"):
                assert os.sched_getscheduler(tid) == os.SCHED_IDLE
        if hasattr(os, "SCHED_IDLE"):
            assert os.sched_getscheduler(bg.native_id) == os.SCHED_IDLE
            assert os.sched_getscheduler(threading.main_thread().native_id) != os.SCHED_IDLE
            assert os.sched_getscheduler(worker.native_id) != os.SCHED_IDLE
        assert os.getpriority(os.PRIO_PROCESS, worker.native_id) == base  # task-runner worker: trains
        assert os.getpriority(os.PRIO_PROCESS, threading.main_thread().native_id) == base
        assert os.getpriority(os.PRIO_PROCESS, other.pid) == base  # not Prefect's server
    finally:
        stop.set()
        bg.join(), worker.join()
        for p in (child, other):
            p.kill(), p.wait()


def test_zero_turns_it_off(monkeypatch):
    monkeypatch.setenv("TRLS_ORCHESTRATION_NICE", "0")
    assert yield_cpu_to_training() == {"server_processes": 0, "threads": 0}
