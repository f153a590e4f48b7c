"""The windows Parquet contract and the Epilepsy table builder."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trls_core.data.bonn import read_bonn
from trls_core.data.parquet import (
    REQUIRED_COLUMNS,
    build_epilepsy_table,
    read_windows,
    signals_array,
    windows_frame,
    write_windows,
)
from trls_core.errors import DataError


def small_table(m: int = 6, c: int = 2, length: int = 5) -> tuple[pa.Table, np.ndarray]:
    x = np.arange(m * c * length, dtype=np.float32).reshape(m, c, length)
    ids = [f"r{i // 2}" for i in range(m)]
    table = windows_frame(
        x,
        window_id=[f"w{i}" for i in range(m)],
        record_id=ids,
        subject_id=ids,
        split=np.array(["train", "val", "test"] * (m // 3)),
        label=np.arange(m) % 2,
        label_name=["a", "b"] * (m // 2),
        fs=100.0,
        extra={"label_binary": np.arange(m) % 2},
    )
    return table, x


def test_windows_frame_schema_and_roundtrip() -> None:
    table, x = small_table()
    assert table.column_names == list(REQUIRED_COLUMNS) + ["label_binary"]
    assert table.schema.field("signal").type == pa.list_(pa.float32(), 10)
    assert table.schema.field("label").type == pa.int64()
    assert table.schema.field("fs").type == pa.float32()
    assert table.schema.field("n_channels").type == pa.int32()
    assert table["n_channels"][0].as_py() == 2 and table["n_samples"][0].as_py() == 5
    assert table["signal"][1].as_py() == list(range(10, 20))  # channels x samples, row-major
    np.testing.assert_array_equal(signals_array(table), x)
    np.testing.assert_array_equal(signals_array(table.slice(2, 3)), x[2:5])  # slice offsets honoured
    with pytest.raises(ValueError, match="'split' has 5 values, expected 6"):
        windows_frame(x, ["w"] * 6, ["r"] * 6, ["r"] * 6, ["train"] * 5, [0] * 6, ["a"] * 6, 1.0)
    with pytest.raises(ValueError, match="clashes"):
        windows_frame(x, ["w"] * 6, ["r"] * 6, ["r"] * 6, ["t"] * 6, [0] * 6, ["a"] * 6, 1.0, extra={"label": [0] * 6})


def test_write_read_roundtrip(tmp_path: Path) -> None:
    table, x = small_table()
    path = tmp_path / "parquet" / "windows.parquet"
    meta = {"dataset": "toy", "n": np.int64(6), "tasks": {"t": {"column": "label"}}}
    digest = write_windows(table, path, meta)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert os.listdir(path.parent) == ["windows.parquet"]
    df, got = read_windows(path)
    assert got == {"dataset": "toy", "n": 6, "tasks": {"t": {"column": "label"}}}
    assert df["window_id"].tolist() == [f"w{i}" for i in range(6)]
    df2, _ = read_windows(path, columns=["split", "label"])
    assert list(df2.columns) == ["split", "label"]
    np.testing.assert_array_equal(signals_array(path), x)
    np.testing.assert_array_equal(signals_array(path, split="val"), x[[1, 4]])
    with pytest.raises(DataError, match="no column.*nope"):
        read_windows(path, columns=["nope"])


def test_read_errors_name_file_and_column(tmp_path: Path) -> None:
    missing = tmp_path / "absent.parquet"
    with pytest.raises(DataError, match="not found: .*absent.parquet"):
        read_windows(missing)
    table, _ = small_table()
    bare = tmp_path / "bare.parquet"
    pq.write_table(table, bare)
    with pytest.raises(DataError, match=r"bare.parquet: schema metadata key 'trls' missing"):
        signals_array(bare)
    nolabel = tmp_path / "nolabel.parquet"
    pq.write_table(table.drop_columns(["label"]).replace_schema_metadata({"trls": "{}"}), nolabel)
    with pytest.raises(DataError, match=r"nolabel.parquet: missing required column\(s\) label"):
        read_windows(nolabel)
    with pytest.raises(DataError, match="missing required column"):
        write_windows(table.drop_columns(["split"]), tmp_path / "x.parquet", {})
    assert not (tmp_path / "x.parquet").exists()


def test_build_epilepsy_table_tiny(tiny_bonn_mirror: Path) -> None:
    data = read_bonn(tiny_bonn_mirror)
    table, meta = build_epilepsy_table(data, seed=1)
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
    grouped, gmeta = build_epilepsy_table(data, protocol="grouped", val_frac=0.2, test_frac=0.2, seed=0)
    pairs = set(zip(grouped["record_id"].to_pylist(), grouped["split"].to_pylist()))
    assert len(pairs) == 15  # each record in exactly one split
    assert gmeta["protocol"] == "grouped" and sum(gmeta["n_per_split"].values()) == 345


def _shared_data() -> Path:
    env = os.environ.get("TRLS_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.mark.realdata
def test_real_bonn_mirror(tmp_path: Path) -> None:
    from trls_core.data.sources import fetch_bonn

    mirror = _shared_data() / "bonn-eeg"
    if not mirror.is_dir():
        pytest.skip(f"real Bonn data not found at {mirror} (set TRLS_SHARED_DATA)")
    manifest = fetch_bonn(tmp_path / "epilepsy", _shared_data())
    assert manifest["n_segments"] == 500
    data = read_bonn(tmp_path / "epilepsy")
    assert data.signals.shape == (500, 1, 4097)
    assert data.content_digest == manifest["content_digest"]
    table, meta = build_epilepsy_table(data)
    assert table.num_rows == 11_500
    assert sum(table["label_binary"].to_pylist()) == 2_300
    assert meta["n_per_split"] == {"train": 7360, "val": 1840, "test": 2300}
    digest = write_windows(table, tmp_path / "windows.parquet", meta)
    assert len(digest) == 64
    assert signals_array(tmp_path / "windows.parquet", split="test").shape == (2300, 1, 178)
