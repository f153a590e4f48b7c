"""A fetch stage killed with SIGKILL mid-download leaves its temp folder; the next run removes it and says so."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.cinc_synth import tiny_mirror
from tests.local_http import drip, serve
from trls_core.stages._common import run_stage
from trls_core.stages.fetch import MIRROR_ENV, fetch

ROOT = Path(__file__).resolve().parents[2]
N_RECORDS = 8


def _partial_download(raw: Path, pid: int) -> Path | None:
    """The partial ``training2017.zip`` the stage with ``pid`` streams into (in its temp folder), once it exists."""
    return next(iter(raw.glob(f".cinc2017.{pid}.*.tmp/.training2017.zip.{pid}.*.tmp")), None)


def test_litter_of_a_killed_fetch_is_removed_on_rerun(
    tmp_path: Path, tiny_params: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "proj"
    raw_parent = root / "data" / "raw"
    params = yaml.safe_load(tiny_params.read_text())
    params["cinc2017"]["fetch"].update({"expected_records": N_RECORDS, "retries": 1})
    with serve({"/training2017.zip": drip(1_000_000, every_s=0.05)}) as (base, hits):
        params["cinc2017"]["fetch"]["url"] = f"{base}/training2017.zip"
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump(params, sort_keys=False))
        env = {**os.environ, MIRROR_ENV: ""}  # the download, from the server above
        argv = [sys.executable, "-m", "trls_core.stages.fetch", "cinc2017", "--params", str(path), "--root", str(root)]
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while _partial_download(raw_parent, proc.pid) is None or not hits["/training2017.zip"]:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else proc.returncode
            assert time.monotonic() < deadline, "the stage never started downloading"
            time.sleep(0.05)
        time.sleep(0.3)  # a few bytes into the body
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    litter = sorted(p.name for p in raw_parent.iterdir())
    assert len(litter) == 1 and litter[0].startswith(f".cinc2017.{proc.pid}.")  # what kill -9 leaves

    monkeypatch.setenv(MIRROR_ENV, str(tiny_mirror(tmp_path / "mirror", n_records=N_RECORDS)))
    with caplog.at_level(logging.INFO):
        assert run_stage("fetch", fetch, ["cinc2017", "--params", str(path), "--root", str(root)]) == 0
    assert sorted(p.name for p in raw_parent.iterdir()) == ["cinc2017"]
    assert f"removed {raw_parent / litter[0]}, left by a killed process (its writer, pid {proc.pid}, is gone)" in (
        caplog.text
    )
