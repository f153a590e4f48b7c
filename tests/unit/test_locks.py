"""The workspace lock (one pipeline / pretrain / evaluate per project root) and the plain file lock.

The holders are real processes (``python -c`` with the lock held until its
stdin closes), so the tests exercise flock between processes, a holder killed
with SIGKILL, and the record the error message is made from.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from trls_core.errors import TrlsError
from trls_core.locks import LockHeld, WorkspaceLocked, hold, holder_of, workspace_lock, workspace_lock_path

HOLDER = """
import sys
from trls_core.locks import workspace_lock
with workspace_lock(sys.argv[1], "test holder"):
    print("ready", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding ``tmp_path``'s workspace lock until its stdin closes."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    yield proc
    if proc.poll() is None:
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(10)


def test_a_second_process_fails_at_once_naming_the_holder(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    t0 = time.perf_counter()
    with pytest.raises(WorkspaceLocked) as err:
        with workspace_lock(tmp_path, "second"):
            pytest.fail("entered a lock another process holds")
    assert time.perf_counter() - t0 < 1.0  # fails fast, no waiting
    msg = str(err.value)
    rec = holder_of(workspace_lock_path(tmp_path))
    assert rec is not None and rec["pid"] == holder.pid and rec["host"] == socket.gethostname()
    assert f"pid {holder.pid} on host {socket.gethostname()} since {rec['since']}" in msg, msg
    assert str(workspace_lock_path(tmp_path)) in msg and "one pipeline / pretrain / evaluate" in msg
    assert isinstance(err.value, TrlsError)  # the CLI turns it into exit 2

    holder.stdin.close()  # type: ignore[union-attr]
    assert holder.wait(10) == 0
    assert holder_of(workspace_lock_path(tmp_path)) is None  # a clean release leaves no record
    with workspace_lock(tmp_path, "after"):
        assert holder_of(workspace_lock_path(tmp_path))["pid"] == os.getpid()


def test_a_killed_holder_is_recovered_with_a_log_line(
    tmp_path: Path, holder: subprocess.Popen[str], caplog: pytest.LogCaptureFixture
) -> None:
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(10)
    assert holder_of(workspace_lock_path(tmp_path))["pid"] == holder.pid  # its record is still there
    with caplog.at_level(logging.WARNING, logger="trls_core.locks"):
        with workspace_lock(tmp_path, "recovering"):
            assert holder_of(workspace_lock_path(tmp_path))["pid"] == os.getpid()
    lines = [r.getMessage() for r in caplog.records if "stale lock" in r.getMessage()]
    assert len(lines) == 1 and f"pid {holder.pid}" in lines[0] and "gone" in lines[0], lines


def test_reentrant_in_one_process_exclusive_across_processes(tmp_path: Path) -> None:
    """The pipeline flow's nested flows (same process, any thread) share its hold; another process cannot."""
    code = "import sys\nfrom trls_core.locks import workspace_lock\nwith workspace_lock(sys.argv[1], 'probe'): pass"
    probe = [sys.executable, "-c", code, str(tmp_path)]
    entered = []

    def nested_in_a_thread() -> None:
        with workspace_lock(tmp_path, "thread"):
            entered.append(holder_of(workspace_lock_path(tmp_path))["what"])

    with workspace_lock(tmp_path, "outer"):
        with workspace_lock(tmp_path, "inner"):
            t = threading.Thread(target=nested_in_a_thread)
            t.start()
            t.join(5)
        res = subprocess.run(probe, capture_output=True, text=True)
        assert res.returncode != 0 and "WorkspaceLocked" in res.stderr and f"pid {os.getpid()}" in res.stderr
    assert entered == ["outer"]  # the nested holds took nothing of their own
    assert holder_of(workspace_lock_path(tmp_path)) is None
    assert subprocess.run(probe, capture_output=True).returncode == 0  # released with the outermost hold


def test_hold_waits_for_the_holder_then_names_it_when_it_takes_too_long(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    released = threading.Event()

    def short_holder() -> None:
        with hold(path, "short"):
            released.wait(5)
            time.sleep(0.2)

    t = threading.Thread(target=short_holder)
    t.start()
    while holder_of(path) is None:
        time.sleep(0.01)
    with pytest.raises(LockHeld, match=rf"held by pid {os.getpid()} on host .* since .*"):
        with hold(path, "impatient", wait=0.1):
            pass
    released.set()
    t0 = time.perf_counter()
    with hold(path, "patient", wait=5) as rec:
        assert json.loads(path.read_text()) == rec and rec["what"] == "patient"
    assert 0.1 < time.perf_counter() - t0 < 5
    t.join(5)
    assert path.read_text() == ""


def test_cli_pretrain_and_evaluate_exit_2_while_a_pipeline_runs(
    tmp_path: Path, holder: subprocess.Popen[str], tiny_params: Path
) -> None:
    from typer.testing import CliRunner

    from trls_core.cli import app

    for cmd in ("pretrain", "evaluate"):
        res = CliRunner().invoke(app, [cmd, "--params", str(tiny_params), "--root", str(tmp_path)])
        assert res.exit_code == 2, (cmd, res.output)
        assert "is in use" in res.output and f"pid {holder.pid}" in res.output, res.output
    assert not (tmp_path / "models").exists() and not (tmp_path / "reports").exists()
