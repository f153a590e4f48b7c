"""The windows Parquet contract and the Epilepsy table builder."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trls_core.data.parquet import (
    REQUIRED_COLUMNS,
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
