"""bin/trls-stage: every DVC stage runs with the project's interpreter, not whatever `python` is on PATH."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

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


def _fake_python(path: Path, name: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\necho "{name} $*"\n')
    path.chmod(0o755)
    return path


def test_launcher_picks_trls_python_then_the_project_venv(tmp_path: Path) -> None:
    """A copy of the launcher in a project whose .venv/bin/python is a stub (the real run: test_dvc_remote)."""
    proj = tmp_path / "proj"
    (proj / "bin").mkdir(parents=True)
    shutil.copy2(LAUNCHER, proj / "bin" / "trls-stage")
    _fake_python(proj / ".venv" / "bin" / "python", "venv")
    override = _fake_python(tmp_path / "other" / "python", "override")

    def run(**env: str) -> str:
        res = subprocess.run(
            ["bin/trls-stage", "fetch", "epilepsy"], cwd=proj, env={"PATH": BARE_PATH, **env}, capture_output=True
        )
        assert res.returncode == 0, res.stderr
        return res.stdout.decode().strip()

    assert run() == "venv -m trls_core.stages.fetch epilepsy"
    assert run(TRLS_PYTHON=str(override)) == "override -m trls_core.stages.fetch epilepsy"


def test_launcher_without_a_stage_says_how_to_call_it() -> None:
    res = subprocess.run([str(LAUNCHER)], env={"PATH": BARE_PATH, "TRLS_PYTHON": "/bin/true"}, capture_output=True)
    assert res.returncode == 2 and b"usage: bin/trls-stage STAGE" in res.stderr
