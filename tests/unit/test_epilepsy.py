"""The epilepsy plugin: the Bonn zip reader (the real layout, every malformed-input error) and the windows table."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.settings import section
from trls_core.data.parquet import signals_array, write_windows
from trls_core.datasets.epilepsy import build_epilepsy_table
from trls_core.datasets.epilepsy.source import content_digest, fetch_bonn, read_bonn, read_bonn_zip
from trls_core.errors import DataError

#: params.yaml's epilepsy.parquet (the TS-TCC protocol)
EPILEPSY = section("epilepsy.parquet").model_dump()


def write_zip(path: Path, members: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return path


def seg(values) -> str:
    return "\r\n".join(str(v) for v in values) + "\r\n"


def test_read_zip_real_layout(tiny_bonn_mirror: Path) -> None:
    ids, x = read_bonn_zip(tiny_bonn_mirror / "N.zip", "N")
    assert ids == ["N001", "N002", "N003"]  # from upper-case N001.TXT members
    assert x.shape == (3, 4097) and x.dtype == np.float32
    with zipfile.ZipFile(tiny_bonn_mirror / "N.zip") as zf:
        first = np.array(zf.read("N001.TXT").decode().split(), dtype=np.float32)
    np.testing.assert_array_equal(x[0], first)


def test_read_bonn_all_sets_and_subset(tiny_bonn_mirror: Path) -> None:
    data = read_bonn(tiny_bonn_mirror)
    assert data.signals.shape == (15, 1, 4097) and data.signals.dtype == np.float32
    assert data.record_ids[:4] == ["Z001", "Z002", "Z003", "O001"]
    assert data.set_index.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3 + [4] * 3
    assert data.set_names == ["Z", "O", "N", "F", "S"]
    sub = read_bonn(tiny_bonn_mirror, sets="SZ")  # asked out of order: canonical order back
    assert sub.record_ids == ["Z001", "Z002", "Z003", "S001", "S002", "S003"]
    assert sub.set_index.tolist() == [0, 0, 0, 4, 4, 4]
    np.testing.assert_array_equal(sub.signals[3:], data.signals[12:])


def test_packing_does_not_change_content_digest(tiny_bonn_mirror: Path, tmp_path: Path) -> None:
    """A zip packed differently (sub-folder, LF, other member order, lower-case) parses the same."""
    repacked = tmp_path / "repacked"
    repacked.mkdir()
    for letter in "ZONFS":
        with zipfile.ZipFile(tiny_bonn_mirror / f"{letter}.zip") as src:
            items = [(i.filename, src.read(i).decode()) for i in src.infolist()]
        members = {"set/": ""} | {f"set/{n.lower()}": t.replace("\r\n", "\n") for n, t in reversed(items)}
        write_zip(repacked / f"{letter.lower()}.zip", members)
    a, b = read_bonn(tiny_bonn_mirror), read_bonn(repacked)
    assert a.record_ids == b.record_ids
    np.testing.assert_array_equal(a.signals, b.signals)
    assert a.content_digest == b.content_digest
    changed = a.signals.copy()
    changed[0, 0, 0] += 1
    assert content_digest(a.record_ids, changed) != a.content_digest


@pytest.mark.parametrize(
    "text, expect",
    [
        (seg([1, 2, 3]), ["Z002.txt", "truncated segment", "3 samples, expected 5"]),
        (seg([1, 2, 3, 4, 5, 6]), ["Z002.txt", "too long", "6 samples"]),
        (seg([1, 2, "abc", 4, 5]), ["Z002.txt", "line 3", "'abc'"]),
        (seg([1, 2, 3, "nan", 5]), ["Z002.txt", "line 4", "non-finite", "'nan'"]),
        (seg([1, "inf", 3, 4, 5]), ["Z002.txt", "line 2", "non-finite"]),
        (seg([1, 2, "", 4, 5]), ["Z002.txt", "line 3", "non-numeric"]),
        ("", ["Z002.txt", "truncated segment", "0 samples"]),
    ],
)
def test_malformed_segment_names_zip_member_and_line(tmp_path: Path, text: str, expect: list[str]) -> None:
    z = write_zip(tmp_path / "Z.zip", {"Z001.txt": seg([1, 2, 3, 4, 5]), "Z002.txt": text})
    with pytest.raises(DataError) as err:
        read_bonn_zip(z, "Z", expected_samples=5)
    msg = str(err.value)
    assert str(z) in msg
    for part in expect:
        assert part in msg


def test_empty_zip(tmp_path: Path) -> None:
    z = write_zip(tmp_path / "O.zip", {"__MACOSX/._O001.txt": "x"})
    with pytest.raises(DataError, match="empty zip"):
        read_bonn_zip(z, "O", expected_samples=5)


def test_duplicate_ids(tmp_path: Path) -> None:
    z = write_zip(tmp_path / "F.zip", {"F001.txt": seg(range(5)), "x/f001.TXT": seg(range(5))})
    with pytest.raises(DataError, match=r"duplicate segment id 'F001'.*F001\.txt and x/f001\.TXT"):
        read_bonn_zip(z, "F", expected_samples=5)


def test_member_of_another_set_is_rejected(tmp_path: Path) -> None:
    z = write_zip(tmp_path / "S.zip", {"S001.txt": seg(range(5)), "Z001.txt": seg(range(5))})
    with pytest.raises(DataError, match="Z001.txt.*does not belong to set S"):
        read_bonn_zip(z, "S", expected_samples=5)


def test_unexpected_member_and_bad_zip(tmp_path: Path) -> None:
    z = write_zip(tmp_path / "S.zip", {"S001.txt": seg(range(5)), "notes.csv": "a,b"})
    with pytest.raises(DataError, match="notes.csv: unexpected member"):
        read_bonn_zip(z, "S", expected_samples=5)
    bad = tmp_path / "Z.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a valid zip"):
        read_bonn_zip(bad, "Z", expected_samples=5)


def test_missing_set_zip_named(tiny_bonn_mirror: Path) -> None:
    (tiny_bonn_mirror / "F.zip").unlink()
    with pytest.raises(DataError, match=r"missing F\.zip in .*bonn-eeg"):
        read_bonn(tiny_bonn_mirror)
    assert read_bonn(tiny_bonn_mirror, sets="ZONS").signals.shape[0] == 12
    with pytest.raises(DataError, match="unknown Bonn set 'X'"):
        read_bonn(tiny_bonn_mirror, sets="ZX")


def test_build_epilepsy_table_tiny(tiny_bonn_mirror: Path) -> None:
    data = read_bonn(tiny_bonn_mirror)
    table, meta = build_epilepsy_table(data, **{**EPILEPSY, "seed": 1})
    assert table.num_rows == 15 * 23
    ids = table["window_id"].to_pylist()
    assert ids[:2] == ["Z001_00", "Z001_01"] and ids[22] == "Z001_22" and ids[-1] == "S003_22"
    assert table["record_id"].to_pylist() == table["subject_id"].to_pylist()
    assert sum(table["label_binary"].to_pylist()) == 3 * 23
    assert set(zip(table["label"].to_pylist(), table["label_name"].to_pylist())) == set(enumerate("ZONFS"))
    assert set(table["label_binary_name"].to_pylist()) == {"seizure", "non-seizure"}
    x = signals_array(table)
    np.testing.assert_array_equal(x[23 * 4 + 1, 0], data.signals[4, 0, 178:356])  # O002 window 1
    assert meta["tasks"]["binary"] == {"column": "label_binary", "classes": ["non-seizure", "seizure"]}
    assert meta["tasks"]["five_set"]["classes"] == ["Z", "O", "N", "F", "S"]
    assert meta["n_per_split"] == {"train": 221, "val": 55, "test": 69}
    assert meta["dropped_samples_per_record"] == 3 and meta["source_content_digest"] == data.content_digest
    grouped, gmeta = build_epilepsy_table(
        data, **{**EPILEPSY, "protocol": "grouped", "val_frac": 0.2, "test_frac": 0.2, "seed": 0}
    )
    pairs = set(zip(grouped["record_id"].to_pylist(), grouped["split"].to_pylist()))
    assert len(pairs) == 15  # each record in exactly one split
    assert gmeta["protocol"] == "grouped" and sum(gmeta["n_per_split"].values()) == 345


def _shared_data() -> Path:
    env = os.environ.get("TRLS_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.mark.realdata
def test_real_bonn_mirror(tmp_path: Path) -> None:
    mirror = _shared_data() / "bonn-eeg"
    if not mirror.is_dir():
        pytest.skip(f"real Bonn data not found at {mirror} (set TRLS_SHARED_DATA)")
    manifest = fetch_bonn(tmp_path / "epilepsy", _shared_data())
    assert manifest["n_segments"] == 500
    data = read_bonn(tmp_path / "epilepsy")
    assert data.signals.shape == (500, 1, 4097)
    assert data.content_digest == manifest["content_digest"]
    table, meta = build_epilepsy_table(data, **EPILEPSY)
    assert table.num_rows == 11_500
    assert sum(table["label_binary"].to_pylist()) == 2_300
    assert meta["n_per_split"] == {"train": 7360, "val": 1840, "test": 2300}
    digest = write_windows(table, tmp_path / "windows.parquet", meta)
    assert len(digest) == 64
    assert signals_array(tmp_path / "windows.parquet", split="test").shape == (2300, 1, 178)
