"""A fresh clone with no ../shared beside it and no network: the pipeline's data step fails once, saying how
to point at a mirror (not three times under a Prefect traceback).

The project is a copy of the checkout's tracked layout in a temp folder, so
params.yaml's default `data.mirror: ../shared/data` does not exist there;
"no network" is an HTTP(S) proxy on a closed local port, so the official
download fails at once on any machine. The data step runs as the real
`dvc-repro` Prefect task (retries=2) on the integration tier's Prefect API
(tests/integration/conftest.py).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLOSED_PORT_PROXY = "http://127.0.0.1:9"

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _fresh_clone(tmp: Path) -> Path:
    proj = tmp / "clone"
    proj.mkdir()
    for name in ("trls_core", "bin", "dvc.yaml", "params.yaml", "pyproject.toml", ".dvcignore", ".gitignore"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, proj / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, proj / name)
    raw = yaml.safe_load((proj / "params.yaml").read_text())
    assert raw["data"]["mirror"] == "../shared/data" and not (tmp / "shared").exists()
    raw["epilepsy"]["fetch"]["retries"] = 1  # the download's own retries (backoff 1 s, 2 s) are not under test
    (proj / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    subprocess.run(["git", "init", "-q"], cwd=proj, check=True)
    subprocess.run([str(Path(sys.executable).with_name("dvc")), "init", "-q"], cwd=proj, check=True)
    return proj


def test_no_mirror_no_network_fails_once_with_one_clear_line(
    tmp_path: Path, prefect_api: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect import flow

    import flows.pipeline as pipeline

    proj = _fresh_clone(tmp_path)
    monkeypatch.delenv("TRLS_DATA_MIRROR", raising=False)
    monkeypatch.setenv("TRLS_PYTHON", sys.executable)  # the clone has no .venv of its own
    offline = {var: CLOSED_PORT_PROXY for var in ("https_proxy", "http_proxy", "HTTPS_PROXY", "HTTP_PROXY")}
    repros = []
    real_run = subprocess.run

    def counting_run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        if "repro" in cmd:  # `dvc repro`, and so its stages, without network (Prefect's own API stays reachable)
            repros.append(cmd)
            kwargs["env"] = {**kwargs["env"], **offline, "no_proxy": "", "NO_PROXY": ""}
        return real_run(cmd, **kwargs)

    monkeypatch.setattr(pipeline.subprocess, "run", counting_run)

    @flow(name="fresh-clone-data")
    def data_only(root: str) -> str:
        return pipeline.dvc_repro(root, "epilepsy")

    with pytest.raises(pipeline.DvcStageError) as err:
        data_only(str(proj))
    assert len(repros) == 1, repros  # not retried: the same missing network fails the same way
    msg = str(err.value)
    assert "\n" not in msg, msg
    assert msg.startswith("stage fetch epilepsy: epilepsy: download failed after 1 attempt(s): https://"), msg
    assert "TRLS_DATA_MIRROR=/path/to/mirror make run" in msg and "data.mirror in params.yaml" in msg
    assert not (proj / "data" / "raw" / "epilepsy").exists()
