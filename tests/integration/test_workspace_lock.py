"""Two pipelines on one checkout: the second stops at once with exit 2, naming the first; nothing is written."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOLDER = """
import sys
from trls_core.locks import workspace_lock
with workspace_lock(sys.argv[1], "first pipeline"):
    print("ready", flush=True)
    sys.stdin.read()
"""


def test_a_second_pipeline_on_the_same_root_exits_2_naming_the_first(
    tiny_project: Path, tiny_params: Path, prefect_api: None
) -> None:
    from typer.testing import CliRunner

    from trls_core.cli import app

    first = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tiny_project)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert first.stdout is not None and first.stdout.readline().strip() == "ready"
        t0 = time.perf_counter()
        res = CliRunner().invoke(
            app, ["pipeline", "--params", str(tiny_params), "--root", str(tiny_project), "--no-track"]
        )
        seconds = time.perf_counter() - t0
    finally:
        first.stdin.close()  # type: ignore[union-attr]
        first.wait(10)
    assert res.exit_code == 2, res.output
    assert "is in use" in res.output and f"pid {first.pid}" in res.output and "first pipeline" in res.output
    assert not (tiny_project / "models").exists() and not (tiny_project / "reports").exists()
    assert seconds < 60, seconds  # before dvc repro or any training (Prefect's flow start is most of it)
