"""The windows Parquet contract (docs/design.md §3): building, writing and reading the windows table.

One row per window: ``window_id, record_id, subject_id, split, label,
label_name, fs, n_channels, n_samples, signal`` (+ dataset-specific extra
columns). ``signal`` is a ``fixed_size_list<float32>[C*L]`` holding channels
× samples flattened row-major, so the whole column maps to one contiguous
float32 buffer and reshapes to (M, C, L) without a Python loop. Schema
metadata key ``trls`` holds JSON provenance (dataset, source digest, tasks,
split protocol, ...): a Parquet without it is rejected, not guessed at.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from trls_core.errors import DataError
from trls_core.io import atomic_path, sha256_file

if TYPE_CHECKING:  # pandas is imported by to_pandas() where it is needed: dataset plugins load without it
    import pandas as pd

METADATA_KEY = b"trls"
ROW_GROUP_BYTES = 32 << 20
REQUIRED_COLUMNS: tuple[str, ...] = (
    "window_id",
    "record_id",
    "subject_id",
    "split",
    "label",
    "label_name",
    "fs",
    "n_channels",
    "n_samples",
    "signal",
)


def _column(values: Any, name: str, m: int, type_: pa.DataType) -> pa.Array:
    arr = pa.array(np.asarray(values), type=type_)
    if len(arr) != m:
        raise ValueError(f"column {name!r} has {len(arr)} values, expected {m} (one per window)")
    return arr


def windows_frame(
    signals: np.ndarray,
    window_id: Sequence[str] | np.ndarray,
    record_id: Sequence[str] | np.ndarray,
    subject_id: Sequence[str] | np.ndarray,
    split: Sequence[str] | np.ndarray,
    label: Sequence[int] | np.ndarray,
    label_name: Sequence[str] | np.ndarray,
    fs: float,
    extra: dict[str, np.ndarray] | None = None,
) -> pa.Table:
    """Build the windows table from (M, C, L) signals and per-window columns."""
    x = np.ascontiguousarray(signals, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"signals must be (M, C, L); got shape {x.shape}")
    m, c, length = x.shape
    flat = pa.array(x.reshape(-1), type=pa.float32())
    signal = pa.FixedSizeListArray.from_arrays(flat, c * length)
    columns: dict[str, pa.Array] = {
        "window_id": _column(window_id, "window_id", m, pa.string()),
        "record_id": _column(record_id, "record_id", m, pa.string()),
        "subject_id": _column(subject_id, "subject_id", m, pa.string()),
        "split": _column(split, "split", m, pa.string()),
        "label": _column(np.asarray(label, dtype=np.int64), "label", m, pa.int64()),
        "label_name": _column(label_name, "label_name", m, pa.string()),
        "fs": pa.array(np.full(m, fs, dtype=np.float32)),
        "n_channels": pa.array(np.full(m, c, dtype=np.int32)),
        "n_samples": pa.array(np.full(m, length, dtype=np.int32)),
        "signal": signal,
    }
    for name, values in (extra or {}).items():
        if name in columns:
            raise ValueError(f"extra column {name!r} clashes with a contract column")
        arr = pa.array(np.asarray(values))
        if len(arr) != m:
            raise ValueError(f"extra column {name!r} has {len(arr)} values, expected {m}")
        columns[name] = arr
    return pa.table(columns)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"metadata value of type {type(obj).__name__} is not JSON-serialisable")


def write_windows(table: pa.Table, path: Path, metadata: dict[str, Any]) -> str:
    """Write ``table`` to ``path`` atomically with ``metadata`` as JSON under key ``trls``.

    Returns the hex sha256 of the written file (for the spectrogram stage's
    provenance).
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise DataError(f"refusing to write {path}: missing required column(s) {', '.join(missing)}")
    meta = dict(table.schema.metadata or {})
    meta[METADATA_KEY] = json.dumps(metadata, sort_keys=True, default=_json_default).encode()
    table = table.replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        # Row groups of ~32 MB of signal: readers stream a big file group by group
        # (signals_array) instead of decoding the whole column at once. Small
        # tables (Epilepsy: 8 MB) stay one row group, byte-identical to before.
        row_bytes = (
            4 * table.schema.field("signal").type.list_size
            if pa.types.is_fixed_size_list(table.schema.field("signal").type)
            else 4096
        )
        pq.write_table(table, tmp, compression="zstd", row_group_size=max(1, ROW_GROUP_BYTES // row_bytes))
        h = sha256_file(tmp)  # chunked: the file can be hundreds of MB
    return h


def _open_checked(path: Path) -> tuple[pa.Schema, dict[str, Any]]:
    """Schema and ``trls`` metadata of a windows Parquet, with clear errors."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"windows Parquet not found: {path}")
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise DataError(f"{path}: schema metadata key 'trls' missing (not written by write_windows)")
    try:
        metadata = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: schema metadata 'trls' is not valid JSON ({exc})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in schema.names]
    if missing:
        raise DataError(f"{path}: missing required column(s) {', '.join(missing)}")
    return schema, metadata


def read_schema_names(path: Path) -> list[str]:
    """Column names of a windows Parquet (checked like :func:`read_windows`)."""
    schema, _ = _open_checked(Path(path))
    return list(schema.names)


def read_windows(path: Path, columns: list[str] | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a windows Parquet into a DataFrame plus its ``trls`` metadata dict.

    Prefer :func:`signals_array` for the signals: a DataFrame holds one
    numpy object per row in ``signal``.
    """
    schema, metadata = _open_checked(path)
    if columns is not None:
        unknown = [c for c in columns if c not in schema.names]
        if unknown:
            raise DataError(f"{path}: no column(s) {', '.join(unknown)}")
    table = pq.read_table(path, columns=columns)
    return table.to_pandas(), metadata


def signals_array(source: Path | str | pa.Table, split: str | None = None) -> np.ndarray:
    """The ``signal`` column as float32 (M, C, L), optionally only rows of one ``split``.

    Works on a path or a table; reshapes the fixed-size list's flat buffer
    (no per-row Python work). Row order is the file's order, the same as
    :func:`read_windows` with the same split filter. From a file, row
    batches are copied into one preallocated array, so peak memory is the
    result plus one batch (reading the whole column first costs ~4x the
    result in Arrow buffers, which Arrow's allocator then keeps).
    """
    if isinstance(source, pa.Table):
        return _signals_from_table(source, "table", split)
    return _signals_from_file(Path(source), split)


def _check_shape(where: str, channels: np.ndarray, samples: np.ndarray, size: int) -> tuple[int, int]:
    channels, samples = np.unique(channels), np.unique(samples)
    if channels.size != 1 or samples.size != 1 or int(channels[0]) * int(samples[0]) != size:
        raise DataError(
            f"{where}: n_channels {channels.tolist()} x n_samples {samples.tolist()} "
            f"inconsistent with signal list size {size}"
        )
    return int(channels[0]), int(samples[0])


def _signals_from_table(table: pa.Table, where: str, split: str | None) -> np.ndarray:
    missing = [c for c in ("signal", "n_channels", "n_samples") if c not in table.column_names]
    if missing:
        raise DataError(f"{where}: missing required column(s) {', '.join(missing)}")
    if split is not None:
        if "split" not in table.column_names:
            raise DataError(f"{where}: missing required column split")
        table = table.filter(pc.equal(table["split"], split))
    size = table.schema.field("signal").type.list_size
    if not table.num_rows:
        return np.zeros((0, 1, size), dtype=np.float32)
    sig = table["signal"].combine_chunks()
    if sig.null_count:
        raise DataError(f"{where}: column signal has {sig.null_count} null row(s)")
    c, length = _check_shape(where, table["n_channels"].to_numpy(), table["n_samples"].to_numpy(), size)
    flat = sig.flatten().to_numpy(zero_copy_only=False)  # flatten() honours slices, .values would not
    return flat.astype(np.float32, copy=False).reshape(table.num_rows, c, length)


def _signals_from_file(path: Path, split: str | None, batch_rows: int = 4096) -> np.ndarray:
    schema, _ = _open_checked(path)
    where = str(path)
    if split is not None and "split" not in schema.names:
        raise DataError(f"{where}: missing required column split")
    pf = pq.ParquetFile(path)
    size = schema.field("signal").type.list_size
    small = pf.read(columns=["n_channels", "n_samples"] + (["split"] if split is not None else []))
    mask = None
    if split is not None:
        mask = pc.equal(small["split"], split).to_numpy(zero_copy_only=False)
        small = small.filter(mask)
    n = small.num_rows
    if n == 0:
        return np.zeros((0, 1, size), dtype=np.float32)
    c, length = _check_shape(where, small["n_channels"].to_numpy(), small["n_samples"].to_numpy(), size)
    out = np.empty((n, size), dtype=np.float32)
    pos = row0 = 0
    for batch in pf.iter_batches(batch_size=batch_rows, columns=["signal"]):
        col = batch.column(0)
        if col.null_count:
            raise DataError(f"{where}: column signal has {col.null_count} null row(s)")
        block = col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), size)
        if mask is not None:
            block = block[mask[row0 : row0 + len(col)]]
        out[pos : pos + len(block)] = block
        pos += len(block)
        row0 += len(col)
    return out.reshape(n, c, length)
