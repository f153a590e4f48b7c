"""Integration tier: a real `dvc repro` of the data stages of every dataset in a temp project.

Uses the real Bonn mirror in ../shared/data when present; otherwise a
synthetic Bonn-shaped mirror made here (same layout, random integers), so
the pipeline mechanics are always tested. cinc2017 (also in `datasets:`)
always comes from a tiny synthetic WFDB/.mat mirror: the full CinC set is a
benchmark (bench/bench_cinc2017.py), not a test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.cinc_synth import tiny_mirror

TINY_CINC_RECORDS = 40

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("TRLS_SHARED_DATA", ROOT.parent / "shared" / "data"))

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _synthetic_mirror(dest: Path) -> Path:
    rng = np.random.default_rng(0)
    bonn = dest / "bonn-eeg"
    bonn.mkdir(parents=True)
    for letter in "ZONFS":
        scale = 400 if letter == "S" else 60
        with zipfile.ZipFile(bonn / f"{letter}.zip", "w") as zf:
            for i in range(1, 101):
                ext = "TXT" if letter == "N" else "txt"
                vals = (rng.standard_normal(4097) * scale).astype(int)
                zf.writestr(f"{letter}{i:03d}.{ext}", "\n".join(map(str, vals)) + "\n")
    return dest


def _project(tmp: Path) -> Path:
    proj = tmp / "proj"
    proj.mkdir()
    for name in ("trls_core", "bin", "dvc.yaml", "params.yaml", "pyproject.toml", ".dvcignore"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, proj / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, proj / name)
    params = (proj / "params.yaml").read_text()
    assert "expected_records: 8528" in params
    (proj / "params.yaml").write_text(
        params.replace("expected_records: 8528", f"expected_records: {TINY_CINC_RECORDS}")
    )
    env = _env(proj, None)
    subprocess.run(["git", "init", "-q"], cwd=proj, check=True, env=env)
    subprocess.run([_dvc(), "init", "-q"], cwd=proj, check=True, env=env)
    return proj


def _dvc() -> str:
    return str(Path(sys.executable).with_name("dvc"))


def _env(proj: Path, mirror: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(DVC_NO_ANALYTICS="1", PYTHONPATH=str(proj), PATH=f"{Path(sys.executable).parent}:{env['PATH']}")
    if mirror is not None:
        env["TRLS_DATA_MIRROR"] = str(mirror)
    return env


def test_dvc_repro_epilepsy(tmp_path: Path) -> None:
    real = (SHARED / "bonn-eeg").is_dir()
    if not real:
        print(f"{SHARED}/bonn-eeg absent: using a synthetic Bonn-shaped mirror")
    mirror = tmp_path / "mirror"
    if real:
        mirror.mkdir()
        (mirror / "bonn-eeg").symlink_to(SHARED / "bonn-eeg")
    else:
        _synthetic_mirror(mirror)
    tiny_mirror(mirror, n_records=TINY_CINC_RECORDS)
    proj = _project(tmp_path)
    env = _env(proj, mirror)
    res = subprocess.run([_dvc(), "repro"], cwd=proj, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr

    summary = json.loads((proj / "data/parquet/epilepsy/summary.json").read_text())
    assert summary["n_windows"] == 11_500
    meta = json.loads((proj / "data/spectrograms/epilepsy/meta.json").read_text())
    assert meta["counts"]["train"]["n"] + meta["counts"]["val"]["n"] + meta["counts"]["test"]["n"] == 11_500
    assert meta["counts"]["test"]["n"] == 2_300
    assert sum(meta["counts"][s]["binary"]["1"] for s in ("train", "val", "test")) == 2_300
    assert (proj / "dvc.lock").is_file()
    cinc = json.loads((proj / "data/parquet/cinc2017/summary.json").read_text())
    assert cinc["n_windows"] == TINY_CINC_RECORDS * 2 and cinc["n_rejected"] == 0
    assert (proj / "data/parquet/cinc2017/rejected.json").is_file()
    cmeta = json.loads((proj / "data/spectrograms/cinc2017/meta.json").read_text())
    assert cmeta["tasks"]["af"]["classes"] == ["N", "A", "O", "~"]
    assert sum(cmeta["counts"][s]["n"] for s in ("train", "val", "test")) == TINY_CINC_RECORDS * 2

    # nothing changed -> nothing reruns
    again = subprocess.run([_dvc(), "repro"], cwd=proj, env=env, capture_output=True, text=True)
    assert again.returncode == 0
    assert "didn't change, skipping" in again.stdout or "up to date" in again.stdout.lower()
    assert "Running stage" not in again.stdout

    # a spectrogram param change reruns only the spectrogram stage
    params = (proj / "params.yaml").read_text().replace("hop: 4", "hop: 8", 1)
    (proj / "params.yaml").write_text(params)
    third = subprocess.run([_dvc(), "repro"], cwd=proj, env=env, capture_output=True, text=True)
    assert third.returncode == 0, third.stderr
    assert "Running stage 'spectrogram@epilepsy'" in third.stdout
    assert "Running stage 'parquet@epilepsy'" not in third.stdout
    assert "Running stage 'fetch@epilepsy'" not in third.stdout
    assert not [s for s in ("fetch", "parquet", "spectrogram") if f"Running stage '{s}@cinc2017'" in third.stdout]

    # a dataset's stages depend on its own plugin only: editing cinc2017's reruns no epilepsy stage
    plugin = proj / "trls_core/datasets/cinc2017/__init__.py"
    plugin.write_text(plugin.read_text() + "\n# edited\n")
    fourth = subprocess.run([_dvc(), "repro"], cwd=proj, env=env, capture_output=True, text=True)
    assert fourth.returncode == 0, fourth.stderr
    assert "Running stage 'fetch@cinc2017'" in fourth.stdout and "Running stage 'parquet@cinc2017'" in fourth.stdout
    assert not [s for s in ("fetch", "parquet", "spectrogram") if f"Running stage '{s}@epilepsy'" in fourth.stdout]
