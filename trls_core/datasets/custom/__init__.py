"""Your own data: the ``custom`` dataset plugin, for params.yaml sections with ``kind: custom``.

A section ``<name>: {kind: custom, fetch: {path: FOLDER}, parquet: ..., spectrogram: ...}``
(and ``<name>`` in ``datasets`` for DVC) runs the usual fetch -> parquet ->
spectrogram stages on the files of FOLDER (formats:
:mod:`trls_core.datasets.custom.source`). The build fails only when fewer
than ``min_keep_fraction`` of the rows remain usable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from trls_core.data.parquet import windows_frame
from trls_core.data.wfdb_mat import resample
from trls_core.data.windows import assign_splits
from trls_core.datasets.custom.source import (
    Rows,
    check_rows,
    data_files,
    encode_labels,
    fetch_custom,
    read_csv_file,
    read_npz_file,
    read_parquet_file,
)
from trls_core.datasets.registry import Dataset, DatasetSettings, register
from trls_core.errors import DataError
from trls_core.settings.base import SpectrogramParams, SplitFractions, Strict

__all__ = ["CustomDatasetParams", "CustomFetchParams", "CustomParquetParams", "build_custom_table"]


class CustomFetchParams(Strict):
    """``path``: the user's folder (relative to the project root, or absolute)."""

    path: str


class CustomParquetParams(SplitFractions):
    """How to read the user's windows; see docs/datasets/custom.md.

    ``format``: ``auto`` picks by file extension. ``fs`` (None: from the
    files) is required when the files carry none; ``target_fs`` None keeps
    the rate; ``channels`` None keeps all; ``class_names`` None: the sorted
    label values. Rows/records are split by ``record_id`` (or ``subject_id``
    with ``group_by: subject``); a file may also carry its own ``split``
    column (``split_from_file: true``).
    """

    format: Literal["auto", "parquet", "csv", "npz", "ucr"]
    fs: float | None = Field(gt=0)
    target_fs: float | None = Field(gt=0)
    channels: list[str] | None
    group_by: Literal["record", "subject", "window"]
    split_from_file: bool
    val_frac: float = Field(gt=0, lt=1)
    test_frac: float = Field(gt=0, lt=1)
    seed: int
    class_names: list[str] | None
    min_keep_fraction: float = Field(ge=0, le=1)


class CustomDatasetParams(DatasetSettings):
    """A user dataset: a top-level params.yaml section with ``kind: custom``."""

    kind: Literal["custom"]
    fetch: CustomFetchParams
    parquet: CustomParquetParams
    spectrogram: SpectrogramParams


def fetch(dest: Path, section: CustomDatasetParams) -> dict[str, Any]:
    return fetch_custom(dest, Path(section.fetch.path))


def table(raw_dir: Path, section: CustomDatasetParams) -> tuple[pa.Table, dict[str, Any]]:
    return build_custom_table(raw_dir, section.parquet)


def build_custom_table(raw_dir: Path, p: CustomParquetParams) -> tuple[pa.Table, dict[str, Any]]:
    """Read every file of ``raw_dir`` (copied by the fetch) into the windows contract."""
    fmt, files = data_files(raw_dir)
    if p.format != "auto" and p.format != fmt:
        raise DataError(f"{raw_dir}: parquet.format is {p.format!r} but the files are {fmt!r}")
    rows = Rows()
    for f in files:
        if fmt == "parquet":
            read_parquet_file(f, rows)
        elif fmt == "npz":
            read_npz_file(f, rows)
        else:
            read_csv_file(f, rows, ucr=fmt == "ucr")
    n_total = len(rows.x) + len(rows.rejected)
    keep = check_rows(rows)
    if not keep.any():
        raise DataError(f"{raw_dir}: no usable window (rejected {len(rows.rejected)}, first: {rows.rejected[:3]})")
    idx = np.flatnonzero(keep)
    fs_vals = {rows.fs[i] for i in idx} - {None}
    if len(fs_vals) > 1:
        raise DataError(f"{raw_dir}: windows have different fs {sorted(fs_vals)}; one rate per dataset")
    fs = p.fs or (fs_vals.pop() if fs_vals else None)
    if fs is None:
        raise DataError(f"{raw_dir}: no sampling rate: set parquet.fs or give an fs column/array")
    x = np.stack([rows.x[i] for i in idx])
    names = rows.channel_names or [f"ch{k}" for k in range(x.shape[1])]
    if p.channels is not None:
        missing = [c for c in p.channels if c not in names]
        if missing:
            raise DataError(f"{raw_dir}: channel(s) {missing} not found (channels: {names})")
        x = x[:, [names.index(c) for c in p.channels]]
        names = list(p.channels)
    if p.target_fs is not None and p.target_fs != fs:
        x = resample(x, fs, p.target_fs, f"{raw_dir} (parquet.fs {fs:g} -> parquet.target_fs)")
        fs = p.target_fs
    kept = len(idx)
    if kept / max(n_total, 1) < p.min_keep_fraction:
        raise DataError(
            f"{raw_dir}: only {kept} of {n_total} windows usable (< parquet.min_keep_fraction "
            f"{p.min_keep_fraction:.0%}); first rejected: {rows.rejected[:3]}"
        )
    labels, class_names = encode_labels([rows.label[i] for i in idx], p.class_names, str(raw_dir))
    rid = np.asarray([rows.record_id[i] for i in idx])
    sid = np.asarray([rows.subject_id[i] for i in idx])
    split = _splits(labels, rid, sid, [rows.split[i] for i in idx], p, raw_dir)
    wid = np.char.add(np.char.add(rid.astype(str), "#"), np.arange(kept).astype(str))
    table = windows_frame(
        x,
        window_id=wid,
        record_id=rid,
        subject_id=sid,
        split=split,
        label=labels,
        label_name=np.asarray(class_names)[labels],
        fs=float(fs),
    )
    names_s, counts = np.unique(split, return_counts=True)
    meta = {
        "dataset_version": "custom",
        "format": fmt,
        "tasks": {"label": {"column": "label", "classes": class_names}},
        "protocol": "from_file" if p.split_from_file else ("random" if p.group_by == "window" else "grouped"),
        "group": {"record": "record_id", "subject": "subject_id", "window": None}[p.group_by],
        "seed": p.seed,
        "val_frac": p.val_frac,
        "test_frac": p.test_frac,
        "window": int(x.shape[-1]),
        "fs": float(fs),
        "channels": names,
        "n_records": int(np.unique(rid).size),
        "n_windows": kept,
        "n_per_split": {s: 0 for s in ("train", "val", "test")} | {str(a): int(b) for a, b in zip(names_s, counts)},
        "rejected": sorted(rows.rejected, key=lambda r: r["record_id"]),
    }
    return table, meta


def _splits(
    labels: np.ndarray,
    rid: np.ndarray,
    sid: np.ndarray,
    given: list[str | None],
    p: CustomParquetParams,
    raw_dir: Path,
) -> np.ndarray:
    """train/val/test per window; fails naming the setting when a split would be empty."""
    if not p.split_from_file:
        groups = {"record": rid, "subject": sid, "window": None}[p.group_by]
        split = assign_splits(
            labels, groups, "random" if groups is None else "grouped", p.val_frac, p.test_frac, p.seed
        )
        how = f"{p.group_by}s split by parquet.val_frac {p.val_frac} / parquet.test_frac {p.test_frac}"
    else:
        split = np.asarray([str(s) if s is not None else "" for s in given], dtype=object)
        bad = sorted({s for s in split if s not in ("train", "val", "test")})
        if bad:
            raise DataError(
                f"{raw_dir}: parquet.split_from_file: split values {bad[:5]} (expected train/val/test for every window)"
            )
        if not (split == "val").any() and (split == "train").any():  # UCR: TRAIN/TEST only, val carved from train
            tr = np.flatnonzero(split == "train")
            sub = assign_splits(labels[tr], rid[tr], "grouped", p.val_frac, 0.0, p.seed)
            split[tr[sub == "val"]] = "val"
        how = "the files' splits (parquet.split_from_file) and parquet.val_frac"
    split = np.asarray(split).astype(str)
    empty = [s for s in ("train", "val", "test") if not (split == s).any()]
    if empty:
        raise DataError(
            f"{raw_dir}: split(s) {empty} would be empty ({len(split)} windows, {how}); "
            "add data or change those settings"
        )
    return split


register(
    Dataset(
        name="custom",
        description="your own windows + labels (Parquet, CSV, NPZ or UCR .tsv) from a folder",
        settings=CustomDatasetParams,
        fetch=fetch,
        table=table,
    )
)
