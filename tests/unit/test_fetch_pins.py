"""The fetches' pinned digests: downloads must match them, mirrors are compared and logged.

Served by a real HTTP server on 127.0.0.1; the pins in params.yaml are
checked against the mirrored official data where it is on the machine.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest
import yaml

from tests.cinc_synth import tiny_mirror
from tests.local_http import announce, body, serve
from trls_core.config import load_params
from trls_core.datasets.epilepsy.source import fetch_bonn, read_bonn
from trls_core.errors import ConfigError, DataError
from trls_core.stages._common import run_stage
from trls_core.stages.fetch import MIRROR_ENV, fetch

SETS = "ZONFS"
SHARED = Path("/work/shared/data")
PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"


def routes(mirror: Path) -> dict:
    return {f"/{s.lower()}.zip": body((mirror / f"{s}.zip").read_bytes()) for s in SETS}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_with_other_content_than_pinned_fails(tiny_bonn_mirror: Path, tmp_path: Path) -> None:
    with serve(routes(tiny_bonn_mirror)) as (base, _):
        urls = {s: f"{base}/{s.lower()}.zip" for s in SETS}
        with pytest.raises(DataError) as err:
            fetch_bonn(tmp_path / "raw", None, urls=urls, expected_segments=3, content_sha256="0" * 64, backoff_s=0)
    msg = str(err.value)
    assert urls["Z"] in msg and "0" * 64 in msg and "epilepsy.fetch.content_sha256" in msg
    assert read_bonn(tiny_bonn_mirror.parent / "bonn-eeg").content_digest in msg  # the actual digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mirror"]  # no raw/, no temp folder


def test_download_matching_both_pins(tiny_bonn_mirror: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pins = {f"{s}.zip": sha(tiny_bonn_mirror / f"{s}.zip") for s in SETS}
    content = read_bonn(tiny_bonn_mirror).content_digest
    with serve(routes(tiny_bonn_mirror)) as (base, _), caplog.at_level(logging.INFO):
        urls = {s: f"{base}/{s.lower()}.zip" for s in SETS}
        manifest = fetch_bonn(
            tmp_path / "raw", None, urls=urls, expected_segments=3, sha256=pins, content_sha256=content
        )
    assert manifest["source"] == "url" and manifest["content_digest"] == content
    assert "parsed content matches the pinned digest" in caplog.text


def test_download_with_a_wrong_file_pin_fails_naming_the_url(tiny_bonn_mirror: Path, tmp_path: Path) -> None:
    with serve(routes(tiny_bonn_mirror)) as (base, hits):
        urls = {s: f"{base}/{s.lower()}.zip" for s in SETS}
        with pytest.raises(
            DataError, match=rf"checksum mismatch: {urls['O']} has sha256 {sha(tiny_bonn_mirror / 'O.zip')}"
        ):
            fetch_bonn(tmp_path / "raw", None, urls=urls, expected_segments=3, sha256={"O.zip": "a" * 64}, backoff_s=0)
    assert hits["/o.zip"] == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["mirror"]


def test_mirror_files_are_compared_and_logged(
    tiny_bonn_mirror: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A mirror may hold a re-zipped copy: a differing pin is a warning naming the file, and the fetch goes on."""
    pins = {"Z.zip": sha(tiny_bonn_mirror / "Z.zip"), "O.zip": "f" * 64}
    with caplog.at_level(logging.INFO):
        fetch_bonn(tmp_path / "raw", tiny_bonn_mirror, expected_segments=3, sha256=pins, content_sha256="0" * 64)
    text = caplog.text
    assert "mirror:bonn-eeg/Z.zip: sha256 matches the pinned official file" in text
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(m.startswith("mirror:bonn-eeg/O.zip: sha256 ") and "f" * 64 in m for m in warned), warned
    assert any("parsed content digest" in m and "epilepsy.fetch.content_sha256" in m for m in warned), warned
    assert "mirror:bonn-eeg/N.zip: no pinned sha256 (epilepsy.fetch.sha256)" in text


def test_a_pin_for_a_file_that_is_not_fetched_names_the_key(tiny_bonn_mirror: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"epilepsy\.fetch\.sha256\.z\.zip: not a file this dataset fetches"):
        fetch_bonn(tmp_path / "raw", tiny_bonn_mirror, expected_segments=3, sha256={"z.zip": "a" * 64})


def test_size_cap_and_total_timeout_come_from_params(
    tmp_path: Path, tiny_params: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = yaml.safe_load(tiny_params.read_text())
    raw["cinc2017"]["fetch"].update({"max_mb": 1, "retries": 3})
    monkeypatch.setenv(MIRROR_ENV, "")
    with serve({"/training2017.zip": announce(5 << 20)}) as (base, hits):
        raw["cinc2017"]["fetch"]["url"] = f"{base}/training2017.zip"
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        assert run_stage("fetch", fetch, ["cinc2017", "--params", str(path), "--root", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert "5,242,880 bytes (Content-Length)" in err and "cap of 1,048,576 bytes (cinc2017.fetch.max_mb)" in err
    assert hits["/training2017.zip"] == 1
    assert not (tmp_path / "p" / "data" / "raw").exists() or not list((tmp_path / "p" / "data" / "raw").iterdir())


def test_mirror_with_other_content_warns_and_fetches(
    tmp_path: Path, tiny_params: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The stage with params.yaml's real pins and a tiny test mirror: warnings, not a failure."""
    raw = yaml.safe_load(tiny_params.read_text())
    raw["cinc2017"]["fetch"]["expected_records"] = 8
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.setenv(MIRROR_ENV, str(tiny_mirror(tmp_path / "mirror", n_records=8)))
    with caplog.at_level(logging.INFO):
        fetch(tmp_path / "p", "cinc2017", load_params(path))
    assert "cinc2017.fetch.content_sha256" in caplog.text and "not comparable" in caplog.text
    assert "no pinned sha256 (cinc2017.fetch.sha256)" in caplog.text


@pytest.mark.skipif(not (SHARED / "bonn-eeg").is_dir(), reason="the shared data mirror is not on this machine")
def test_pinned_bonn_content_is_the_mirrored_official_data() -> None:
    pin = load_params(PARAMS).dataset("epilepsy").fetch.content_sha256
    assert read_bonn(SHARED / "bonn-eeg").content_digest == pin


@pytest.mark.skipif(not (SHARED / "cinc2017").is_dir(), reason="the shared data mirror is not on this machine")
def test_pinned_cinc2017_content_is_the_mirrored_official_data() -> None:
    from trls_core.datasets.cinc2017.source import Cinc2017Archive, content_digest

    pin = load_params(PARAMS).dataset("cinc2017").fetch.content_sha256
    with Cinc2017Archive.open(SHARED / "cinc2017" / "training2017.zip") as arc:
        assert content_digest(arc) == pin
