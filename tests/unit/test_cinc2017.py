"""CinC 2017 reader: synthetic WFDB/.mat archives, one test per bad-input case.

Every bad record must be skipped with its reason in the rejection report,
the good ones kept, and the build must fail (never silently) only when too
few records survive (``min_keep_fraction``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.cinc_synth import ecg_like, good_records, hea_text, mat_bytes, tiny_mirror, write_archive
from tests.settings import section
from trls_core.data.parquet import signals_array
from trls_core.data.report import reason_kind
from trls_core.data.wfdb_mat import cut_windows, parse_header
from trls_core.datasets.cinc2017 import Cinc2017ParquetParams, build_cinc2017_table
from trls_core.datasets.cinc2017.source import fetch_cinc2017
from trls_core.errors import DataError


def parquet_params(**changes: object) -> Cinc2017ParquetParams:
    """params.yaml's cinc2017.parquet at the rate and padding these tests were written for (300 Hz, drop)."""
    return section("cinc2017.parquet", **{"pad": "drop", "target_fs": 300.0, **changes})


P = parquet_params(min_keep_fraction=0.5)


def _build(tmp_path: Path, records: dict, params: Cinc2017ParquetParams = P, **kw: dict) -> tuple:
    zpath = write_archive(tmp_path / "training2017.zip", records, **kw)
    return build_cinc2017_table(zpath, params)


def _rejected(meta: dict) -> dict[str, str]:
    return {r["record_id"]: r["reason"] for r in meta["rejected"]}


def test_good_records_become_windows_in_mv(tmp_path: Path) -> None:
    recs = good_records(12)
    table, meta = _build(tmp_path, recs)
    assert meta["rejected"] == []
    assert table.num_rows == 12 * 3  # 4500 samples -> 3 windows of 1500
    assert meta["tasks"] == {
        "af": {"column": "label", "classes": ["N", "A", "O", "~"], "score_classes": ["N", "A", "O"]}
    }
    x = signals_array(table)
    assert x.shape == (36, 1, 1500) and x.dtype == np.float32
    first = np.frombuffer(recs["A00001"][1][-9000:], dtype="<i2")[:1500]  # MAT v4 data follows the header
    np.testing.assert_allclose(x[0, 0], first / 1000.0, rtol=1e-6)  # gain 1000/mV applied
    # every record in exactly one split; ids and record-level labels kept
    per_record = {}
    for rid, split, lab in zip(
        table["record_id"].to_pylist(), table["split"].to_pylist(), table["label_name"].to_pylist()
    ):
        per_record.setdefault(rid, set()).add((split, lab))
    assert all(len(v) == 1 for v in per_record.values()) and len(per_record) == 12
    assert table["window_id"][0].as_py() == "A00001_000" and table["start"].to_pylist()[:3] == [0, 1500, 3000]


def test_truncated_mat_is_rejected_and_the_rest_kept(tmp_path: Path) -> None:
    recs = good_records(6)
    lab, mat, hea = recs["A00002"]
    recs["A00002"] = (lab, mat[: len(mat) // 2], hea)
    table, meta = _build(tmp_path, recs)
    reason = _rejected(meta)["A00002"]
    assert "A00002.mat" in reason and "truncated" in reason and reason_kind(reason) == "unreadable_mat"
    assert set(table["record_id"].to_pylist()) == {f"A{i:05d}" for i in (1, 3, 4, 5, 6)}


def test_header_disagreeing_with_mat_is_rejected(tmp_path: Path) -> None:
    recs = good_records(6)
    lab, mat, _ = recs["A00003"]
    recs["A00003"] = (lab, mat, hea_text("A00003", 4600, 0))  # header says 4600 samples, .mat has 4500
    lab, mat, _ = recs["A00004"]
    recs["A00004"] = (
        lab,
        mat,
        "A00004 2 300 4500\nA00004.mat 16+24 1000/mV 16 0 0 0 0 ECG\nA00004.mat 16+24 1000/mV 16 0 0 0 0 II\n",
    )
    _, meta = _build(tmp_path, recs)
    rej = _rejected(meta)
    assert "n_samples 4600 != .mat length 4500" in rej["A00003"] and "A00003.hea" in rej["A00003"]
    assert "2 signal(s)" in rej["A00004"]
    assert {reason_kind(r) for r in rej.values()} == {"header_mismatch"}


def test_label_naming_a_missing_record(tmp_path: Path) -> None:
    recs = good_records(5)
    recs["A00005"] = (recs["A00005"][0], None, recs["A00005"][2])  # .mat missing
    _, meta = _build(tmp_path, recs, extra_labels={"A09999": "N"})
    rej = _rejected(meta)
    assert "A09999" in rej and ".hea and .mat missing" in rej["A09999"]
    assert ".mat missing" in rej["A00005"]
    assert meta["n_candidate_records"] == 6 and meta["n_records"] == 4


def test_unlabelled_and_unknown_label(tmp_path: Path) -> None:
    recs = good_records(5)
    recs["A00001"] = (None, *recs["A00001"][1:])
    recs["A00002"] = ("X", *recs["A00002"][1:])
    _, meta = _build(tmp_path, recs)
    rej = _rejected(meta)
    assert rej["A00001"] == "no label in REFERENCE.csv" and "unknown label 'X'" in rej["A00002"]


def test_record_shorter_than_one_window(tmp_path: Path) -> None:
    recs = good_records(5)
    val = ecg_like(1000, np.random.default_rng(1))
    recs["A00002"] = ("N", mat_bytes(val), hea_text("A00002", 1000, int(val[0])))
    _, meta = _build(tmp_path, recs)
    assert "shorter than one window (1000 samples < window 1500)" in _rejected(meta)["A00002"]
    # pad: zero keeps it as one window with 500 padded samples
    table, meta = _build(tmp_path, recs, parquet_params(pad="zero"))
    assert meta["rejected"] == []
    rows = [i for i, r in enumerate(table["record_id"].to_pylist()) if r == "A00002"]
    assert len(rows) == 1 and table["n_pad"][rows[0]].as_py() == 500
    assert not signals_array(table)[rows[0], 0, 1000:].any()


def test_nan_and_flat_line_records_are_rejected(tmp_path: Path) -> None:
    recs = good_records(6)
    nan = ecg_like(4500, np.random.default_rng(2)).astype(np.float64)
    nan[100:110] = np.nan
    recs["A00002"] = ("N", mat_bytes(nan), hea_text("A00002", 4500, int(nan[0])))
    flat = np.full(4500, 7, dtype=np.int16)
    recs["A00003"] = ("O", mat_bytes(flat), hea_text("A00003", 4500, 7))
    _, meta = _build(tmp_path, recs)
    rej = _rejected(meta)
    assert "10 non-finite sample(s)" in rej["A00002"] and reason_kind(rej["A00002"]) == "non_finite"
    assert "flat line" in rej["A00003"] and reason_kind(rej["A00003"]) == "flat_line"


def test_too_few_records_left_fails_loudly(tmp_path: Path) -> None:
    recs = good_records(4)
    for rid in ("A00001", "A00002"):
        lab, mat, hea = recs[rid]
        recs[rid] = (lab, mat[:40], hea)
    with pytest.raises(DataError, match=r"only 2 of 4 labelled records usable .*min_keep_fraction 90%"):
        _build(tmp_path, recs, parquet_params(min_keep_fraction=0.9))
    table, _ = _build(tmp_path, recs, parquet_params(min_keep_fraction=0.5))
    assert table.num_rows == 6


def test_resampling_and_channel_selection(tmp_path: Path) -> None:
    recs = good_records(4)
    val = ecg_like(9000, np.random.default_rng(3), fs=600)
    recs["A00002"] = ("N", mat_bytes(val), hea_text("A00002", 9000, int(val[0]), fs=600))
    val = ecg_like(4500, np.random.default_rng(4))
    recs["A00003"] = ("O", mat_bytes(val), hea_text("A00003", 4500, int(val[0]), desc="II"))
    table, meta = _build(tmp_path, recs)
    assert sum(r == "A00002" for r in table["record_id"].to_pylist()) == 3  # 9000 @ 600 Hz -> 4500 @ 300 Hz
    assert "channel(s) ['ECG'] not in the record (channels: ['II'])" in _rejected(meta)["A00003"]
    table, meta = _build(tmp_path, recs, parquet_params(channels=["II"], min_keep_fraction=0.1))
    assert set(table["record_id"].to_pylist()) == {"A00003"}


def test_splits_are_grouped_stratified_and_stable_under_rejections(tmp_path: Path) -> None:
    recs = good_records(40)
    table, _ = _build(tmp_path / "a", recs)
    split_of = dict(zip(table["record_id"].to_pylist(), table["split"].to_pylist()))
    recs["A00007"] = (recs["A00007"][0], recs["A00007"][1][:50], recs["A00007"][2])
    table2, _ = _build(tmp_path / "b", recs)
    split2 = dict(zip(table2["record_id"].to_pylist(), table2["split"].to_pylist()))
    assert "A00007" not in split2 and all(split_of[r] == s for r, s in split2.items())
    records_per_split = {s: sum(v == s for v in split_of.values()) for s in ("train", "val", "test")}
    assert records_per_split == {"train": 28, "val": 6, "test": 6}


def test_cut_windows_policies() -> None:
    x = np.arange(10, dtype=np.float32)[None]
    w, start, pad = cut_windows(x, 4, None, "drop", "r")
    assert w.shape == (2, 1, 4) and start.tolist() == [0, 4] and pad.tolist() == [0, 0]
    w, start, pad = cut_windows(x, 4, None, "zero", "r")
    assert start.tolist() == [0, 4, 8] and pad.tolist() == [0, 0, 2] and w[2, 0].tolist() == [8, 9, 0, 0]
    w, start, _ = cut_windows(x, 4, 3, "drop", "r")
    assert start.tolist() == [0, 3, 6]
    # end: the last window ends at the record's end (real signal, overlapping); short records zero-padded
    w, start, pad = cut_windows(x, 4, None, "end", "r")
    assert start.tolist() == [0, 4, 6] and pad.tolist() == [0, 0, 0] and w[2, 0].tolist() == [6, 7, 8, 9]
    w, start, pad = cut_windows(x[:, :8], 4, None, "end", "r")
    assert start.tolist() == [0, 4]  # nothing left over: no extra window
    w, start, pad = cut_windows(x[:, :3], 4, None, "end", "r")
    assert start.tolist() == [0] and pad.tolist() == [1] and w[0, 0].tolist() == [0, 1, 2, 0]
    with pytest.raises(DataError, match="r: pad must be"):
        cut_windows(x, 4, None, "wrap", "r")


def test_header_parsing_errors_name_the_file() -> None:
    h = parse_header("A1 1 300 10\nA1.mat 16+24 1000(5)/mV 16 0 3 0 0 ECG lead I\n", "A1.hea")
    assert h.fs == 300 and h.signals[0].baseline == 5 and h.signals[0].description == "ECG lead I"
    with pytest.raises(DataError, match=r"A1.hea: header declares 2 signal"):
        parse_header("A1 2 300 10\nA1.mat 16+24 1000/mV\n", "A1.hea")
    with pytest.raises(DataError, match=r"A1.hea: header field gain is malformed"):
        parse_header("A1 1 300 10\nA1.mat 16+24 lots/mV\n", "A1.hea")


def test_fetch_verifies_counts_and_writes_manifest(tmp_path: Path) -> None:
    mirror = tiny_mirror(tmp_path / "mirror", n_records=8)
    m = fetch_cinc2017(tmp_path / "raw", mirror, url="unused", expected_records=8)
    assert m["n_records"] == 8 and m["label_counts"] == {"N": 4, "A": 2, "O": 2}
    assert json.loads((tmp_path / "raw" / "MANIFEST.json").read_text())["content_digest"] == m["content_digest"]
    # the digest is about content, not packing: a re-packed zip (stored, other order) gives the same
    import zipfile

    src = zipfile.ZipFile(mirror / "cinc2017" / "training2017.zip")
    other = tmp_path / "other" / "training2017.zip"
    other.parent.mkdir()
    with zipfile.ZipFile(other, "w", zipfile.ZIP_STORED) as zf:
        for name in reversed(src.namelist()):
            zf.writestr(name.replace("training2017/", "x/"), src.read(name))
    assert (
        fetch_cinc2017(tmp_path / "raw2", other.parent, url="unused", expected_records=8)["content_digest"]
        == m["content_digest"]
    )
    with pytest.raises(DataError, match="RECORDS lists 8 records, expected 9"):
        fetch_cinc2017(tmp_path / "raw3", mirror, url="unused", expected_records=9)
    assert not (tmp_path / "raw3").exists()
    with pytest.raises(DataError, match="no cinc2017/training2017.zip"):
        fetch_cinc2017(tmp_path / "raw4", tmp_path, url="unused", expected_records=None)
