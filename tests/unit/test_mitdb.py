"""MIT-BIH reader on tiny WFDB records written with wfdb.wrsamp/wrann.

Beat windows, AAMI labels, lead selection, resampling, the DS1/DS2 split,
and each bad input: a missing lead, an unknown annotation symbol (beats
skipped, record kept), a record with no usable beat, missing files, a flat
line; the build fails only below ``min_keep_fraction``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.mitdb_synth import FS, tiny_mirror, wfdb_write, write_record
from tests.settings import section
from trls_core.data.parquet import signals_array
from trls_core.data.report import reason_kind
from trls_core.datasets.mitdb import build_mitdb_table
from trls_core.datasets.mitdb.source import AAMI, DS1, DS2, fetch_mitdb
from trls_core.errors import DataError

P = section("mitdb.parquet", val_frac=0.25, min_keep_fraction=0.5)


def _rejected(meta: dict) -> dict[str, dict]:
    return {r["record_id"]: r for r in meta["rejected"]}


def test_beat_windows_aami_labels_and_inter_patient_split(tmp_path: Path) -> None:
    raw = tiny_mirror(tmp_path) / "mitdb"
    table, meta = build_mitdb_table(raw, P)
    assert meta["rejected"] == [] and meta["tasks"] == {
        "aami": {"column": "label", "classes": ["N", "S", "V", "F", "Q"]}
    }
    x = signals_array(table)
    assert x.shape == (6 * 24, 1, 90 + 162) and x.dtype == np.float32  # first beat of each record is at the edge
    # the window is centred on the R peak: the spike maximum sits at index `before`
    assert (np.abs(x[:, 0].argmax(axis=1) - 90) <= 3).all()
    sym, name = table["symbol"].to_pylist(), table["label_name"].to_pylist()
    assert all(AAMI[s] == n for s, n in zip(sym, name)) and set(name) == {"N", "S", "V", "F", "Q"}
    assert "+" not in sym and "~" not in sym  # non-beat annotations skipped
    assert meta["beats_skipped"]["101"] == {"edge": 1, "non_beat": 2}
    per_record: dict[str, set[str]] = {}
    for rid, split in zip(table["record_id"].to_pylist(), table["split"].to_pylist()):
        per_record.setdefault(rid, set()).add(split)
    assert all(len(v) == 1 for v in per_record.values())
    assert {r for r, s in per_record.items() if s == {"test"}} == {"100", "103"}  # DS2
    assert {r for r, s in per_record.items() if s != {"test"}} == {"101", "106", "108", "109"}  # DS1: train/val
    assert sum(1 for s in per_record.values() if s == {"val"}) == 1  # round(0.25 * 4 DS1 records)
    assert table["window_id"][0].as_py() == "100_000001" and meta["protocol"] == "inter_patient"
    # values in mV after the header gain (212 format, 200 adu/mV: quantised to 5 µV)
    peak = table["r_peak"][0].as_py()
    assert peak == int(round((0.1 + 0.8) * FS))


def test_de_chazal_lists() -> None:
    assert len(DS1) == len(DS2) == 22 and not set(DS1) & set(DS2)
    assert not {"102", "104", "107", "217"} & (set(DS1) | set(DS2))


def test_leads_by_name_in_the_requested_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    write_record(tmp_path, "114", rng, leads=("V5", "MLII"))  # 114 has MLII second, as in the real database
    write_record(tmp_path, "101", rng)
    table, meta = build_mitdb_table(tmp_path, P.model_copy(update={"leads": ["MLII"]}))
    x = signals_array(table)
    # MLII is the louder lead in the synthetic records, wherever it sits in the file
    assert x.shape[1] == 1 and np.allclose(x[:, 0].max(axis=1), 1.0, atol=0.2)
    table2, _ = build_mitdb_table(tmp_path, P.model_copy(update={"leads": ["MLII", "V5"], "min_keep_fraction": 0.0}))
    assert set(table2["record_id"].to_pylist()) == {"114"}  # 101 has V1, not V5


def test_missing_lead_is_rejected_and_the_rest_kept(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    for rid in ("101", "106", "100"):
        write_record(tmp_path, rid, rng)
    write_record(tmp_path, "103", rng, leads=("V1", "V2"))  # no MLII
    table, meta = build_mitdb_table(tmp_path, P)
    reason = _rejected(meta)["103"]["reason"]
    assert (
        "record 103" in reason and "['MLII'] not in the record" in reason and reason_kind(reason) == "missing_channel"
    )
    assert set(table["record_id"].to_pylist()) == {"101", "106", "100"}


def test_unknown_symbol_skips_beats_and_keeps_the_record(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    write_record(tmp_path, "100", rng)
    syms = ["N", "N", "Z", "V", "Z"] + ["N"] * 20
    samples, _ = write_record(tmp_path, "101", rng, symbols=syms, custom={"Z": "not a MIT-BIH code"})
    table, meta = build_mitdb_table(tmp_path, P)
    entry = _rejected(meta)["101"]
    assert entry["record_kept"] is True and entry["n_beats_skipped"] == 2
    assert "unknown annotation symbol(s) {'Z': 2}" in entry["reason"] and "101.atr" in entry["reason"]
    assert reason_kind(entry["reason"]) == "unknown_annotation"
    rec = table.filter(np.asarray(table["record_id"].to_pylist()) == "101")
    assert rec.num_rows == 25 - 1 - 2 and "Z" not in rec["symbol"].to_pylist()
    assert meta["beats_skipped"]["101"]["unknown"] == 2


def test_record_with_no_usable_beat_is_rejected(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    write_record(tmp_path, "100", rng)
    write_record(tmp_path, "101", rng, symbols=["Z"] * 25, custom={"Z": "unknown"})
    table, meta = build_mitdb_table(tmp_path, P)
    entry = _rejected(meta)["101"]
    assert "no usable beat window" in entry["reason"] and not entry.get("record_kept")
    assert set(table["record_id"].to_pylist()) == {"100"}


def test_missing_files_and_flat_line_are_rejected(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    for rid in ("100", "101", "106"):
        write_record(tmp_path, rid, rng)
    (tmp_path / "106.atr").unlink()
    write_record(tmp_path, "108", rng)
    wfdb_write(tmp_path, "108", FS, ["MLII", "V1"], np.zeros((FS * 20, 2)))  # same annotations, flat signal
    table, meta = build_mitdb_table(tmp_path, P)
    rej = _rejected(meta)
    assert (
        ".atr missing from the folder" in rej["106"]["reason"] and reason_kind(rej["106"]["reason"]) == "missing_files"
    )
    assert "flat line" in rej["108"]["reason"]
    assert set(table["record_id"].to_pylist()) == {"100", "101"}


def test_resampled_to_the_target_rate(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    write_record(tmp_path, "100", rng, fs=250)
    write_record(tmp_path, "101", rng, fs=FS)
    table, _ = build_mitdb_table(tmp_path, P)
    x = signals_array(table)
    assert x.shape[-1] == 252 and set(table["fs"].to_pylist()) == {360.0}
    rec100 = np.asarray(table["record_id"].to_pylist()) == "100"
    assert rec100.sum() == 24
    # R peaks rescaled with the signal: the spike is still centred
    assert (np.abs(x[rec100, 0].argmax(axis=1) - 90) <= 3).all()
    assert table["r_peak"].to_pylist()[0] == round((int(0.1 * 250) + int(0.8 * 250)) * 360 / 250)


def test_paced_excluded_and_protocol_lists(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    for rid in ("100", "101", "102", "999"):
        write_record(tmp_path, rid, rng)
    table, meta = build_mitdb_table(tmp_path, P)
    assert meta["excluded_records"] == ["102"] and "102" not in _rejected(meta)
    assert "neither DS1 nor DS2" in _rejected(meta)["999"]["reason"]
    assert set(table["record_id"].to_pylist()) == {"100", "101"}


def test_grouped_protocol_keeps_201_and_202_together(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    rids = ("100", "101", "103", "105", "106", "201", "202", "203")
    for rid in rids:
        write_record(tmp_path, rid, rng, seconds=4)
    p = P.model_copy(update={"protocol": "grouped", "val_frac": 0.2, "test_frac": 0.3})
    table, meta = build_mitdb_table(tmp_path, p)
    split = dict(zip(table["record_id"].to_pylist(), table["split"].to_pylist()))
    assert split["201"] == split["202"] and set(table["subject_id"].to_pylist()) >= {"201"}
    assert "202" not in table["subject_id"].to_pylist() and set(split.values()) == {"train", "val", "test"}
    again, _ = build_mitdb_table(tmp_path, p)
    assert again["split"].to_pylist() == table["split"].to_pylist()  # seeded


def test_too_few_records_fail_never_silently(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    write_record(tmp_path, "100", rng)
    write_record(tmp_path, "101", rng, leads=("V1", "V2"))
    with pytest.raises(DataError, match=r"only 1 of 2 records usable .*mitdb\.parquet\.min_keep_fraction"):
        build_mitdb_table(tmp_path, P.model_copy(update={"min_keep_fraction": 0.9}))


def test_fetch_from_mirror_writes_manifest_with_parsed_digest(tmp_path: Path) -> None:
    mirror = tiny_mirror(tmp_path / "m1", records=("100", "101"))
    m = fetch_mitdb(tmp_path / "raw", mirror, records=None, expected_records=2)
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == [
        "100.atr",
        "100.dat",
        "100.hea",
        "101.atr",
        "101.dat",
        "101.hea",
        "MANIFEST.json",
    ]
    assert m["n_records"] == 2 and m["records"]["100"]["leads"] == ["MLII", "V1"]
    # same records in another folder layout -> same content digest
    nested = tmp_path / "m2" / "mitdb" / "1.0.0"
    nested.mkdir(parents=True)
    for p in (mirror / "mitdb").iterdir():
        (nested / p.name).write_bytes(p.read_bytes())
    assert (
        fetch_mitdb(tmp_path / "raw2", tmp_path / "m2", records=["100", "101"], expected_records=None)["content_digest"]
        == m["content_digest"]
    )
    with pytest.raises(DataError, match=r"expected 48"):
        fetch_mitdb(tmp_path / "raw3", mirror, records=None, expected_records=48)
    with pytest.raises(DataError, match=r"record\(s\) \['230'\] not found"):
        fetch_mitdb(tmp_path / "raw3", mirror, records=["100", "230"], expected_records=None)
    assert not (tmp_path / "raw3").exists()


def test_fetch_without_mirror_or_network_fails_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    def offline(*a: object, **k: object) -> None:
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", offline)
    with pytest.raises(DataError, match=r"mitdb: no mirror given .*physionet\.org is unreachable"):
        fetch_mitdb(tmp_path / "raw", None, records=None, expected_records=48)
    assert not (tmp_path / "raw").exists()
