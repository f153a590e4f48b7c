"""Where the fetch stage gets raw data: params `data.mirror` (where it exists), a dataset's own mirror, the env var.

And what it says when it cannot: no network is one line naming how to
point at a mirror; a permanent failure (HTTP 404) is not retried.
"""

from __future__ import annotations

import io
import logging
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from tests.cinc_synth import tiny_mirror
from trls_core.config import load_params
from trls_core.data.download import download
from trls_core.errors import DataError, NetworkError
from trls_core.stages._common import run_stage
from trls_core.stages.fetch import MIRROR_ENV, fetch, with_default_mirror

N_RECORDS = 8


@pytest.fixture
def params_file(tmp_path: Path, tiny_params: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tiny params with `data.mirror: mirror` (relative to the project root), cinc2017 sized to the tiny mirror."""
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    raw = yaml.safe_load(tiny_params.read_text())
    raw["data"]["mirror"] = "mirror"
    raw["cinc2017"]["fetch"]["expected_records"] = N_RECORDS
    raw["epilepsy"]["fetch"]["retries"] = 2
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_data_mirror_applies_where_it_exists(tmp_path: Path, params_file: Path) -> None:
    params = load_params(params_file)
    section = params.dataset("cinc2017")
    assert with_default_mirror(tmp_path, "cinc2017", section, "mirror") is section  # no folder: the download
    (tmp_path / "mirror").mkdir()
    used = with_default_mirror(tmp_path, "cinc2017", section, "mirror")
    assert used.fetch.mirror == str((tmp_path / "mirror").resolve())
    own = section.model_copy(update={"fetch": section.fetch.model_copy(update={"mirror": "/elsewhere"})})
    assert with_default_mirror(tmp_path, "cinc2017", own, "mirror").fetch.mirror == "/elsewhere"
    custom = params.dataset("ecg200")  # a `custom` section reads its own `path`: no mirror to apply
    assert with_default_mirror(tmp_path, "ecg200", custom, "mirror") is custom


def test_env_var_wins_even_empty(tmp_path: Path, params_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mirror").mkdir()
    section = load_params(params_file).dataset("cinc2017")
    monkeypatch.setenv(MIRROR_ENV, "")  # `TRLS_DATA_MIRROR= make run`: the official download
    assert with_default_mirror(tmp_path, "cinc2017", section, "mirror").fetch.mirror is None


def test_fetch_stage_uses_data_mirror(tmp_path: Path, params_file: Path) -> None:
    tiny_mirror(tmp_path / "mirror", n_records=N_RECORDS)
    fetch(tmp_path, "cinc2017", load_params(params_file))
    manifest = yaml.safe_load((tmp_path / "data/raw/cinc2017/MANIFEST.json").read_text())
    assert manifest["source"] == "mirror"


def test_no_network_says_how_to_point_at_a_mirror(
    tmp_path: Path, params_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = []

    def offline(url: str, timeout: float) -> None:
        calls.append(url)
        raise urllib.error.URLError(OSError(101, "Network is unreachable"))

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setattr(time, "sleep", lambda s: None)
    rc = run_stage("fetch", fetch, ["epilepsy", "--params", str(params_file), "--root", str(tmp_path)])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # one line, no traceback
    assert "download failed after 2 attempt(s)" in err[0] and "Network is unreachable" in err[0]
    assert f"{MIRROR_ENV}=/path/to/mirror make run" in err[0] and "docs/datasets/epilepsy.md" in err[0]
    assert len(calls) == 2  # epilepsy.fetch.retries, then it stops at the first set
    assert not list((tmp_path / "data" / "raw").iterdir())  # nothing half-written


def test_missing_data_mirror_is_logged(
    tmp_path: Path, params_file: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: (_ for _ in ()).throw(OSError("offline")))
    monkeypatch.setattr(time, "sleep", lambda s: None)
    with caplog.at_level(logging.INFO), pytest.raises(DataError, match="No network"):
        fetch(tmp_path, "epilepsy", load_params(params_file))
    assert "data.mirror" in caplog.text and "not found: fetching epilepsy from its official source" in caplog.text


def test_http_404_fails_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def not_found(url: str, timeout: float) -> None:
        calls.append(url)
        raise urllib.error.HTTPError(url, 404, "Not Found", {}, io.BytesIO())  # type: ignore[arg-type]

    monkeypatch.setattr(urllib.request, "urlopen", not_found)
    with pytest.raises(DataError, match=r"HTTP 404 Not Found") as err:
        download("https://example.invalid/z.zip", tmp_path / "z.zip", timeout=1, retries=3, backoff_s=0)
    assert not isinstance(err.value, NetworkError) and len(calls) == 1
    assert not (tmp_path / "z.zip").exists()


def test_dvc_repro_task_retries_all_but_a_stage_error() -> None:
    """A stage's own error (exit 2: missing mirror, 404, checksum, no network) is not retried by Prefect."""
    from flows.pipeline import DvcReproError, DvcStageError, dvc_repro, retry_unless_stage_error

    assert dvc_repro.retry_condition_fn is retry_unless_stage_error and dvc_repro.retries == 2
    assert not retry_unless_stage_error(None, None, SimpleNamespace(data=DvcStageError("stage fetch x: 404")))
    assert retry_unless_stage_error(None, None, SimpleNamespace(data=DvcReproError("dvc lock busy")))
    assert isinstance(DvcStageError("x"), DataError)  # the CLI prints it as one line
