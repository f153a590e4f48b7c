"""The epilepsy plugin's fetch_bonn: mirror and URL sources, verification by parsing, atomic dest."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from trls_core.datasets.epilepsy.source import BONN_SETS, BONN_URLS, fetch_bonn, read_bonn
from trls_core.errors import DataError

SETS = ["Z", "O", "N", "F", "S"]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def old_dest(tmp_path: Path) -> Path:
    """A previous good dest that a failed fetch must leave untouched."""
    dest = tmp_path / "raw" / "epilepsy"
    dest.mkdir(parents=True)
    (dest / "Z.zip").write_bytes(b"previous")
    (dest / "MANIFEST.json").write_text("{}")
    return dest


def test_constants() -> None:
    assert list(BONN_SETS) == SETS and list(BONN_URLS) == SETS
    assert all(u.startswith("https://www.ukbonn.de/") and u.endswith(f"/{k.lower()}.zip") for k, u in BONN_URLS.items())


@pytest.mark.parametrize("use_parent", [False, True])
def test_fetch_from_mirror(tiny_bonn_mirror: Path, tmp_path: Path, use_parent: bool) -> None:
    mirror = tiny_bonn_mirror.parent if use_parent else tiny_bonn_mirror
    dest = tmp_path / "raw" / "epilepsy"
    manifest = fetch_bonn(dest, mirror, expected_segments=3)
    assert sorted(p.name for p in dest.iterdir()) == sorted([f"{s}.zip" for s in SETS] + ["MANIFEST.json"])
    for s in SETS:
        data = (dest / f"{s}.zip").read_bytes()
        assert data == (tiny_bonn_mirror / f"{s}.zip").read_bytes()  # exactly as distributed
        entry = manifest["files"][f"{s}.zip"]
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["bytes"] == len(data) and entry["n_segments"] == 3 and entry["n_samples"] == 4097
    assert manifest["source"] == "mirror"
    assert str(tmp_path) not in json.dumps(manifest)  # machine-independent DVC output
    assert json.loads((dest / "MANIFEST.json").read_text()) == manifest
    assert manifest["content_digest"] == read_bonn(dest).content_digest
    assert [p.name for p in dest.parent.iterdir()] == ["epilepsy"]  # no temp folder left behind


def test_fetch_from_urls_matches_mirror_content(tiny_bonn_mirror: Path, tmp_path: Path) -> None:
    """Official zips are packed differently: same parsed content -> same content_digest."""
    served = tmp_path / "served"
    served.mkdir()
    for s in SETS:
        with (
            zipfile.ZipFile(tiny_bonn_mirror / f"{s}.zip") as src,
            zipfile.ZipFile(served / f"{s.lower()}.zip", "w", zipfile.ZIP_STORED) as out,
        ):
            for info in reversed(src.infolist()):
                out.writestr(f"{s}/{info.filename}", src.read(info))
    urls = {s: (served / f"{s.lower()}.zip").as_uri() for s in SETS}
    from_url = fetch_bonn(tmp_path / "a", None, urls=urls, expected_segments=3, backoff_s=0)
    from_mirror = fetch_bonn(tmp_path / "b", tiny_bonn_mirror, expected_segments=3)
    assert from_url["source"] == "url"
    assert from_url["content_digest"] == from_mirror["content_digest"]
    assert from_url["files"]["Z.zip"]["sha256"] != from_mirror["files"]["Z.zip"]["sha256"]
    assert (tmp_path / "a" / "Z.zip").read_bytes() == (served / "z.zip").read_bytes()


def test_missing_set_in_mirror_names_file_and_folder(tiny_bonn_mirror: Path, old_dest: Path) -> None:
    before = snapshot(old_dest)
    (tiny_bonn_mirror / "F.zip").unlink()
    with pytest.raises(DataError) as err:
        fetch_bonn(old_dest, tiny_bonn_mirror.parent, expected_segments=3)
    assert "F.zip" in str(err.value) and str(tiny_bonn_mirror.resolve()) in str(err.value)
    assert snapshot(old_dest) == before


def test_missing_mirror_folder(tmp_path: Path, old_dest: Path) -> None:
    before = snapshot(old_dest)
    with pytest.raises(DataError, match=r"mirror folder not found: .*nowhere"):
        fetch_bonn(old_dest, tmp_path / "nowhere", expected_segments=3)
    assert snapshot(old_dest) == before


def test_corrupt_zip_leaves_previous_dest(tiny_bonn_mirror: Path, old_dest: Path) -> None:
    before = snapshot(old_dest)
    with zipfile.ZipFile(tiny_bonn_mirror / "S.zip", "a") as zf:
        zf.writestr("S004.txt", "1\r\n2\r\n")
    with pytest.raises(DataError, match=r"S\.zip member S004\.txt: truncated segment"):
        fetch_bonn(old_dest, tiny_bonn_mirror, expected_segments=3)
    assert snapshot(old_dest) == before
    assert sorted(p.name for p in old_dest.parent.iterdir()) == ["epilepsy"]


def test_wrong_segment_count(tiny_bonn_mirror: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="set Z has 3 segments, expected 100"):
        fetch_bonn(tmp_path / "dest", tiny_bonn_mirror)
    assert not (tmp_path / "dest").exists()


def test_download_failure_retries_then_raises(tmp_path: Path, old_dest: Path) -> None:
    before = snapshot(old_dest)
    urls = {s: (tmp_path / f"absent_{s}.zip").as_uri() for s in SETS}
    with pytest.raises(DataError, match=r"download failed after 2 attempt\(s\): file://.*absent_Z\.zip"):
        fetch_bonn(old_dest, None, urls=urls, expected_segments=3, retries=2, backoff_s=0)
    assert snapshot(old_dest) == before
    with pytest.raises(DataError, match="no download URL for Bonn set"):
        fetch_bonn(old_dest, None, urls={"Z": urls["Z"]}, expected_segments=3)
