"""DVC as a user drives it, on a tiny project: repro without an activated venv, the declared mirror,
metrics/plots/params, and a remote round trip (push, fresh clone, pull, status clean).

One `dvc repro` of the cinc2017 stages on a 40-record synthetic mirror (the
whole chain is seconds); the results in reports/dvc/ are written by the
real writers from a metrics.json-shaped report, not by a training run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.cinc_synth import tiny_mirror
from tests.unit.test_dvc_files import fake_report

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.executable).parents[1]  # the venv running the tests: the project's .venv in a checkout
N_RECORDS = 40
COPIED = ("trls_core", "bin", "dvc.yaml", "params.yaml", "pyproject.toml", ".dvcignore", ".gitignore")

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _env(home: Path) -> dict[str, str]:
    """No venv on PATH (as a user typing `.venv/bin/dvc repro` in a fresh shell), no mirror variable."""
    env = {k: v for k, v in os.environ.items() if k not in ("TRLS_DATA_MIRROR", "VIRTUAL_ENV", "PYTHONPATH")}
    env.update(
        PATH="/usr/bin:/bin",
        HOME=str(home),
        DVC_NO_ANALYTICS="1",
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t.invalid",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t.invalid",
    )
    return env


def _run(cwd: Path, env: dict[str, str], *cmd: str) -> str:
    exe = str(cwd / ".venv/bin/dvc") if cmd[0] == "dvc" else cmd[0]
    res = subprocess.run([exe, *cmd[1:]], cwd=cwd, env=env, capture_output=True, text=True)
    assert res.returncode == 0, f"{' '.join(cmd)}:\n{res.stdout}\n{res.stderr}"
    return res.stdout


def _project(tmp: Path, env: dict[str, str]) -> Path:
    proj = tmp / "proj"
    proj.mkdir()
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, proj / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, proj / name)
    raw = yaml.safe_load((proj / "params.yaml").read_text())
    raw["datasets"] = {"cinc2017": raw["datasets"]["cinc2017"]}
    raw["cinc2017"]["fetch"]["expected_records"] = N_RECORDS
    raw["data"]["mirror"] = "../mirror"  # relative to the project, as the default ../shared/data
    (proj / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    (proj / ".venv").symlink_to(VENV)
    _run(proj, env, "git", "init", "-q")
    (proj / ".git/info/exclude").write_text(".venv\n")  # .gitignore's `.venv/` matches a folder, not this link
    _run(proj, env, "dvc", "init", "-q")
    return proj


def test_repro_metrics_plots_params_and_remote_round_trip(tmp_path: Path) -> None:
    from trls_core.config import load_params
    from trls_core.dvc_files import write_comparison_plot, write_evaluation_files

    env = _env(tmp_path / "home")
    tiny_mirror(tmp_path / "mirror", n_records=N_RECORDS)
    proj = _project(tmp_path, env)

    # `.venv/bin/dvc repro` with no venv on PATH: the stages run the project's interpreter
    out = _run(proj, env, "dvc", "repro")
    assert "Running stage 'spectrogram@cinc2017'" in out
    assert json.loads((proj / "data/raw/cinc2017/MANIFEST.json").read_text())["source"] == "mirror"

    # the mirror's path is a declared param: pointing it elsewhere refetches (same bytes: nothing after)
    (tmp_path / "mirror2").symlink_to(tmp_path / "mirror")
    params_text = (proj / "params.yaml").read_text()
    (proj / "params.yaml").write_text(params_text.replace("mirror: ../mirror\n", "mirror: ../mirror2\n"))
    assert "data.mirror" in _run(proj, env, "dvc", "status", "fetch@cinc2017")
    out = _run(proj, env, "dvc", "repro")
    assert "Running stage 'fetch@cinc2017'" in out and "Running stage 'parquet@cinc2017'" not in out

    # results where dvc.yaml declares them, read by the real tool
    params = load_params(proj / "params.yaml")
    mdir = proj / "models" / "epilepsy" / f"{params.model.encoder}_seed0"
    mdir.mkdir(parents=True)
    (mdir / "encoder.json").write_text(json.dumps({"history": [{"epoch": 0, "loss": 0.9}, {"epoch": 1, "loss": 0.5}]}))
    write_evaluation_files(proj, params, fake_report())
    comparison = tmp_path / "comparison.csv"
    comparison.write_text("method,setting,accuracy_mean,accuracy_std,macro_f1_mean,macro_f1_std\ntrls,lp,0.9,0,0.8,0\n")
    write_comparison_plot(proj, "epilepsy", "binary", comparison)
    metrics = json.loads(_run(proj, env, "dvc", "metrics", "show", "--json"))[""]["data"]
    binary = metrics["reports/dvc/metrics/epilepsy/binary.json"]["data"]
    assert binary["linear_probe"]["macro_f1"]["mean"] == 0.8765
    plots = json.loads(_run(proj, env, "dvc", "plots", "show", "--json"))
    assert not plots.get("errors"), plots.get("errors")
    assert set(plots["data"]) == {
        "reports/dvc/plots/label_fractions/epilepsy/binary.csv",
        f"reports/dvc/plots/loss/epilepsy/{params.model.encoder}_seed0.csv",
        "reports/dvc/plots/comparison/epilepsy/binary.csv",
    }
    assert all(p[0]["type"] == "vega" for p in plots["data"].values())

    # commit, push to a local-folder remote
    _run(proj, env, "dvc", "remote", "add", "-d", "local", str(tmp_path / "remote"))
    _run(proj, env, "git", "add", "-A")
    _run(proj, env, "git", "commit", "-q", "-m", "tiny project")
    assert "reports/dvc/metrics/epilepsy/binary.json" in _run(proj, env, "git", "ls-files", "reports")
    _run(proj, env, "dvc", "push")

    # params and metrics diff against the commit
    (proj / "params.yaml").write_text((proj / "params.yaml").read_text().replace("  epochs: 10\n", "  epochs: 11\n", 1))
    changed = json.loads(_run(proj, env, "dvc", "params", "diff", "--json"))["params.yaml"]
    assert {k: (v["old"], v["new"]) for k, v in changed.items()} == {"pretrain.epochs": (10, 11)}
    report = fake_report()
    report["linear_probe"]["macro_f1"]["mean"] = 0.9
    write_evaluation_files(proj, params, report)
    diff = json.loads(_run(proj, env, "dvc", "metrics", "diff", "--json"))
    assert diff["reports/dvc/metrics/epilepsy/binary.json"]["linear_probe.macro_f1.mean"]["new"] == 0.9

    # a fresh clone gets the data from the remote, and everything is up to date
    clone = tmp_path / "clone"
    _run(tmp_path, env, "git", "clone", "-q", str(proj), str(clone))
    (clone / ".venv").symlink_to(VENV)
    _run(clone, env, "dvc", "pull")
    assert "Data and pipelines are up to date" in _run(clone, env, "dvc", "status")
    for rel in ("data/parquet/cinc2017/windows.parquet", "data/spectrograms/cinc2017/meta.json"):
        assert (clone / rel).read_bytes() == (proj / rel).read_bytes(), rel
