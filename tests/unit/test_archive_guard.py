"""Zip archives refused before a member is read: a zip bomb, an oversized member, names escaping the folder.

Both readers (Bonn set zips, the CinC archive) and so both fetches go through
the guard; the real mirrored archives pass it.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from tests.cinc_synth import good_records, write_archive
from trls_core.data import archive
from trls_core.datasets.cinc2017.source import Cinc2017Archive
from trls_core.datasets.epilepsy.source import fetch_bonn, read_bonn_zip
from trls_core.errors import DataError

SHARED = Path("/work/shared/data")


def segment(seed: int = 0) -> str:
    return "\r\n".join(str((i * 7 + seed) % 200 - 100) for i in range(4097)) + "\r\n"


def bonn_zip(path: Path, members: dict[str, bytes | str]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_zip_bomb_is_refused_naming_archive_and_member(tmp_path: Path) -> None:
    bomb = bonn_zip(tmp_path / "Z.zip", {"Z001.txt": segment(), "Z002.txt": b"0" * (8 << 20)})
    with pytest.raises(DataError) as err:
        read_bonn_zip(bomb, "Z")
    msg = str(err.value)
    assert str(bomb) in msg and "member 'Z002.txt'" in msg and "zip bomb" in msg and "MAX_RATIO" in msg


def test_real_data_compresses_far_below_the_ratio_limit(tmp_path: Path) -> None:
    ids, arr = read_bonn_zip(bonn_zip(tmp_path / "O.zip", {f"O{i:03d}.txt": segment(i) for i in range(1, 4)}), "O")
    assert ids == ["O001", "O002", "O003"] and arr.shape == (3, 4097)
    small_flat = bonn_zip(tmp_path / "F.zip", {"F001.txt": "0\r\n" * 4097})  # 12 kB at ~200:1: under the floor
    assert read_bonn_zip(small_flat, "F")[1].shape == (1, 4097)


def test_member_over_the_size_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive, "MAX_MEMBER_BYTES", 10_000)
    path = bonn_zip(tmp_path / "S.zip", {"S001.txt": segment()})
    with pytest.raises(DataError, match=r"member 'S001\.txt': [\d,]+ bytes uncompressed, over the cap of 10,000"):
        read_bonn_zip(path, "S")


@pytest.mark.parametrize("name", ["../Z001.txt", "bonn/../../Z001.txt", "/etc/Z001.txt", "C:/Z001.txt", "..\\Z001.txt"])
def test_member_escaping_the_folder_is_refused(tmp_path: Path, name: str) -> None:
    path = bonn_zip(tmp_path / "Z.zip", {"Z002.txt": segment(), name: segment(1)})
    with pytest.raises(DataError) as err:
        read_bonn_zip(path, "Z")
    assert str(path) in str(err.value) and f"member {name!r}" in str(err.value) and "escapes" in str(err.value)


def test_cinc_archive_is_guarded_too(tmp_path: Path) -> None:
    path = write_archive(tmp_path / "training2017.zip", good_records(3))
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("training2017/../../evil.hea", b"x")
    with pytest.raises(DataError, match=r"training2017\.zip member 'training2017/\.\./\.\./evil\.hea': member name"):
        Cinc2017Archive.open(path)


def test_fetch_from_a_mirror_with_a_bomb_keeps_the_previous_raw(tiny_bonn_mirror: Path, tmp_path: Path) -> None:
    dest = tmp_path / "raw" / "epilepsy"
    dest.mkdir(parents=True)
    (dest / "MANIFEST.json").write_text("{}")
    with zipfile.ZipFile(tiny_bonn_mirror / "F.zip", "a", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("F004.txt", b"1" * (4 << 20))
    with pytest.raises(DataError, match=r"F\.zip member 'F004\.txt': compresses"):
        fetch_bonn(dest, tiny_bonn_mirror, expected_segments=3)
    assert [p.name for p in dest.iterdir()] == ["MANIFEST.json"]
    assert [p.name for p in dest.parent.iterdir()] == ["epilepsy"]


@pytest.mark.skipif(not SHARED.is_dir(), reason="the shared data mirror is not on this machine")
def test_the_mirrored_official_archives_pass_the_guard() -> None:
    zips = sorted((SHARED / "bonn-eeg").glob("*.zip")) + [SHARED / "cinc2017" / "training2017.zip"]
    for path in zips:
        with zipfile.ZipFile(path) as zf:
            archive.check_zip(zf, path)  # directory only: no member is inflated
