"""bin/trls-stage: every DVC stage runs with the project's interpreter, not whatever `python` is on PATH."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = ROOT / "bin" / "trls-stage"
BARE_PATH = "/usr/bin:/bin"  # a fresh shell: no activated venv


def test_every_stage_command_goes_through_the_launcher() -> None:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        cmd = stage["do"]["cmd"] if "do" in stage else stage["cmd"]
        launcher, module, *_ = cmd.split()
        assert launcher == "bin/trls-stage", (name, cmd)
        assert (ROOT / "trls_core" / "stages" / f"{module}.py").is_file(), (name, cmd)
    assert os.access(LAUNCHER, os.X_OK)


def test_launcher_uses_trls_python_then_the_venv(tmp_path: Path) -> None:
    fake = tmp_path / "fakepy"
    fake.write_text('#!/bin/sh\necho "fake $*"\n')
    fake.chmod(0o755)
    env = {"PATH": BARE_PATH, "TRLS_PYTHON": str(fake)}
    out = subprocess.run([str(LAUNCHER), "fetch", "epilepsy"], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "fake -m trls_core.stages.fetch epilepsy"
    if not (ROOT / ".venv" / "bin" / "python").is_file():
        pytest.skip("no .venv in this checkout")
    res = subprocess.run([str(LAUNCHER), "fetch", "--help"], env={"PATH": BARE_PATH}, capture_output=True, text=True)
    assert res.returncode == 0 and "usage: trls_core.stages.fetch" in res.stdout, res.stderr


def test_launcher_without_a_stage_says_how_to_call_it() -> None:
    res = subprocess.run([str(LAUNCHER)], env={"PATH": BARE_PATH, "TRLS_PYTHON": "/bin/true"}, capture_output=True)
    assert res.returncode == 2 and b"usage: bin/trls-stage STAGE" in res.stderr
