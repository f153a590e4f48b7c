"""The windows Parquet contract (DESIGN.md section 3) and the Epilepsy table builder.

One row per window: ``window_id, record_id, subject_id, split, label,
label_name, fs, n_channels, n_samples, signal`` (+ dataset-specific extra
columns). ``signal`` is a ``fixed_size_list<float32>[C*L]`` holding channels
× samples flattened row-major, so the whole column maps to one contiguous
float32 buffer and reshapes to (M, C, L) without a Python loop. Schema
metadata key ``trls`` holds JSON provenance (dataset, source digest, tasks,
split protocol, ...): a Parquet without it is rejected, not guessed at.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from trls_core.data.bonn import BonnData
from trls_core.data.windows import assign_splits, segment
from trls_core.errors import DataError
from trls_core.io import atomic_path

METADATA_KEY = b"trls"
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
        pq.write_table(table, tmp, compression="zstd")
        h = hashlib.sha256(tmp.read_bytes()).hexdigest()
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
    :func:`read_windows` with the same split filter.
    """
    if isinstance(source, pa.Table):
        table, where = source, "table"
        missing = [c for c in ("signal", "n_channels", "n_samples") if c not in table.column_names]
        if missing:
            raise DataError(f"{where}: missing required column(s) {', '.join(missing)}")
    else:
        _open_checked(Path(source))
        where = str(source)
        cols = ["signal", "n_channels", "n_samples"] + (["split"] if split is not None else [])
        table = pq.read_table(source, columns=cols)
    if split is not None:
        if "split" not in table.column_names:
            raise DataError(f"{where}: missing required column split")
        table = table.filter(pc.equal(table["split"], split))
    sig = table["signal"].combine_chunks() if table.num_rows else None
    size = table.schema.field("signal").type.list_size
    if sig is None:
        return np.zeros((0, 1, size), dtype=np.float32)
    if sig.null_count:
        raise DataError(f"{where}: column signal has {sig.null_count} null row(s)")
    channels = np.unique(table["n_channels"].to_numpy())
    samples = np.unique(table["n_samples"].to_numpy())
    if channels.size != 1 or samples.size != 1 or int(channels[0]) * int(samples[0]) != size:
        raise DataError(
            f"{where}: n_channels {channels.tolist()} x n_samples {samples.tolist()} "
            f"inconsistent with signal list size {size}"
        )
    flat = sig.flatten().to_numpy(zero_copy_only=False)  # flatten() honours slices, .values would not
    return flat.astype(np.float32, copy=False).reshape(table.num_rows, int(channels[0]), int(samples[0]))


def build_epilepsy_table(
    data: BonnData,
    window: int = 178,
    protocol: str = "random",
    val_frac: float = 0.16,
    test_frac: float = 0.2,
    seed: int = 42,
    fs: float = 173.61,
    stride: int | None = None,
) -> tuple[pa.Table, dict[str, Any]]:
    """The Epilepsy windows table (TS-TCC protocol by default) and its metadata.

    Each segment is cut into ``window``-sample chunks (4097 -> 23 × 178; the
    last 3 samples dropped). ``label`` is the five-set index (Z/O/N/F/S),
    ``label_binary`` is seizure (set S) vs. the rest. Bonn gives no subject
    ids, so ``subject_id`` = ``record_id`` = segment id: the ``grouped``
    protocol keeps each segment in one split but cannot keep a patient's
    segments together (each set comes from 5 people).
    Splits are stratified on the five-set label, hence also on the binary one.
    """
    windows, rec_idx, start = segment(data.signals, window, stride)
    step = window if stride is None else stride
    record_ids = np.asarray(data.record_ids)[rec_idx]
    k = (start // step).astype(str)
    window_ids = np.char.add(np.char.add(record_ids, "_"), np.char.zfill(k, 2))
    label = np.asarray(data.set_index, dtype=np.int64)[rec_idx]
    class_names = list(data.set_names)
    label_name = np.asarray(class_names)[label]
    seizure = class_names.index("S")
    label_binary = (label == seizure).astype(np.int64)
    binary_names = ["non-seizure", "seizure"]
    split = assign_splits(
        label, record_ids if protocol == "grouped" else None, protocol, val_frac, test_frac, seed
    )
    table = windows_frame(
        windows,
        window_id=window_ids,
        record_id=record_ids,
        subject_id=record_ids,
        split=split,
        label=label,
        label_name=label_name,
        fs=fs,
        extra={
            "label_binary": label_binary,
            "label_binary_name": np.asarray(binary_names)[label_binary],
        },
    )
    names, counts = np.unique(split, return_counts=True)
    n_per_split = {s: 0 for s in ("train", "val", "test")} | {str(a): int(b) for a, b in zip(names, counts)}
    metadata: dict[str, Any] = {
        "dataset": "epilepsy",
        "dataset_version": "bonn-2001",
        "source_content_digest": data.content_digest,
        "tasks": {
            "five_set": {"column": "label", "classes": class_names},
            "binary": {"column": "label_binary", "classes": binary_names},
        },
        "protocol": protocol,
        "seed": seed,
        "val_frac": val_frac,
        "test_frac": test_frac,
        "window": window,
        "stride": step,
        "fs": fs,
        "n_records": len(data.record_ids),
        "n_windows": int(windows.shape[0]),
        "windows_per_record": int(windows.shape[0] // max(len(data.record_ids), 1)),
        "dropped_samples_per_record": int(data.signals.shape[-1] - (start.max() + window)) if start.size else 0,
        "n_per_split": n_per_split,
        "subject_id_note": "Bonn publishes no subject ids; subject_id = record_id (segment id)",
        "stratified_on": "label",
    }
    return table, metadata
