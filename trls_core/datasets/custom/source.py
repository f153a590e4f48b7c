"""Your own data: the files a ``kind: custom`` section points at, read into rows.

Accepted (one format per folder, docs/datasets/custom.md has examples):

- ``*.parquet``: ``label`` + ``signal`` (list of C*L floats, row-major
  channels × samples; ``n_channels`` column when C > 1), optional
  ``record_id``, ``subject_id``, ``split``, ``fs``.
- ``*.csv`` (header row): the same id/label columns; every other column is
  a sample, in order (C*L of them, ``n_channels`` column when C > 1).
- ``*.npz``: ``x`` (N, L) or (N, C, L), ``y`` (N,), optional
  ``record_id``, ``subject_id``, ``split``, ``fs``, ``channel_names``;
  loaded with ``allow_pickle=False``.
- ``*.tsv`` (UCR archive style): no header, label in column 0, samples
  after; ``*_TRAIN.tsv`` / ``*_TEST.tsv`` give the split with
  ``split_from_file``.

A bad row (ragged CSV/TSV line, NaN, flat line) is rejected with its reason.
"""

from __future__ import annotations

import csv
import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trls_core.errors import DataError

FORMATS: dict[str, str] = {".parquet": "parquet", ".csv": "csv", ".npz": "npz", ".tsv": "ucr"}
ID_COLUMNS = ("label", "record_id", "subject_id", "split", "fs", "n_channels")


@dataclass
class Rows:
    """Windows gathered from the files, before labels are encoded and splits drawn."""

    x: list[np.ndarray] = field(default_factory=list)  # each (C, L)
    label: list[Any] = field(default_factory=list)
    record_id: list[str] = field(default_factory=list)
    subject_id: list[str] = field(default_factory=list)
    split: list[str | None] = field(default_factory=list)
    fs: list[float | None] = field(default_factory=list)
    rejected: list[dict[str, str]] = field(default_factory=list)
    channel_names: list[str] | None = None

    def add(self, x: np.ndarray, label: Any, rid: str, sid: str | None, split: str | None, fs: float | None) -> None:
        self.x.append(np.asarray(x, dtype=np.float32))
        self.label.append(label)
        self.record_id.append(rid)
        self.subject_id.append(sid or rid)
        self.split.append(split)
        self.fs.append(fs)


def data_files(folder: Path) -> tuple[str, list[Path]]:
    """(format, sorted files) of ``folder``; mixing formats is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"custom dataset folder not found: {folder.resolve()}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FORMATS)
    if not files:
        raise DataError(f"{folder}: no data files (expected *.parquet, *.csv, *.npz or UCR *.tsv)")
    kinds = {FORMATS[p.suffix.lower()] for p in files}
    if len(kinds) > 1:
        raise DataError(f"{folder}: mixed formats {sorted(kinds)}; keep one format per folder")
    return kinds.pop(), files


def fetch_custom(dest: Path, source: Path) -> dict[str, Any]:
    """Copy the data files of ``source`` into ``dest`` atomically, with a MANIFEST.

    The content digest hashes (name, sha256) of every file, so DVC and the
    Parquet provenance change exactly when the user's files change.
    """
    from trls_core.io import atomic_dir, sha256_file, write_json

    fmt, files = data_files(source)
    h = hashlib.sha256(b"custom-files\n")
    entries: dict[str, Any] = {}
    with atomic_dir(dest) as tmp:
        for f in files:
            shutil.copyfile(f, tmp / f.name)
            digest = sha256_file(tmp / f.name)
            entries[f.name] = {"sha256": digest, "bytes": f.stat().st_size}
            h.update(f.name.encode() + b"\0" + digest.encode())
        manifest = {
            "dataset": "custom",
            "source": "folder",
            "format": fmt,
            "files": entries,
            "content_digest": h.hexdigest(),
        }
        write_json(tmp / "MANIFEST.json", manifest)
    return manifest


def _opt(row: dict[str, Any], key: str) -> Any:
    v = row.get(key)
    return None if v is None or (isinstance(v, float) and np.isnan(v)) or v == "" else v


def _read_table_rows(rows: Rows, records: list[dict[str, Any]], samples: list[np.ndarray], where: str) -> None:
    for i, (rec, sig) in enumerate(zip(records, samples)):
        rid = str(_opt(rec, "record_id") or f"{where}:{i}")
        c = int(_opt(rec, "n_channels") or 1)
        if sig.size % c:
            rows.rejected.append(
                {"record_id": rid, "reason": f"{where} row {i}: {sig.size} samples not divisible by n_channels {c}"}
            )
            continue
        fs = _opt(rec, "fs")
        rows.add(
            sig.reshape(c, -1),
            rec.get("label"),
            rid,
            _opt(rec, "subject_id"),
            _opt(rec, "split"),
            float(fs) if fs is not None else None,
        )


def read_parquet_file(path: Path, rows: Rows) -> None:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    for col in ("label", "signal"):
        if col not in table.column_names:
            raise DataError(f"{path}: missing column {col!r} (own-data Parquet needs label and signal)")
    meta = table.drop_columns(["signal"]).to_pylist()
    samples = [np.asarray(s if s is not None else [np.nan], dtype=np.float64) for s in table["signal"].to_pylist()]
    _read_table_rows(rows, meta, samples, path.name)


def read_csv_file(path: Path, rows: Rows, ucr: bool = False) -> None:
    """CSV with a header (or UCR .tsv: no header, label first); ragged lines are rejected."""
    delim = "\t" if ucr else ","
    split_hint = _ucr_split(path) if ucr else None
    with open(path, newline="") as f:
        reader = csv.reader(f, delimiter=delim)
        header = None if ucr else next(reader, None)
        if header is not None:
            header = [h.strip() for h in header]
            if "label" not in header:
                raise DataError(f"{path}: header has no 'label' column (got {header[:8]}...)")
        width: int | None = len(header) if header else None
        for line_no, cells in enumerate(reader, start=1 if ucr else 2):
            if not cells or all(not c.strip() for c in cells):
                continue
            rid = f"{path.name}:{line_no}"
            if width is None:
                width = len(cells)
            if len(cells) != width:
                rows.rejected.append(
                    {
                        "record_id": rid,
                        "reason": f"{path.name} line {line_no}: ragged row, "
                        f"{len(cells)} fields where the {'first row' if ucr else 'header'} has {width}",
                    }
                )
                continue
            if ucr:
                rec: dict[str, Any] = {"label": cells[0].strip(), "split": split_hint, "record_id": rid}
                values = cells[1:]
            else:
                assert header is not None
                rec = {h: c.strip() for h, c in zip(header, cells) if h in ID_COLUMNS}
                values = [c for h, c in zip(header, cells) if h not in ID_COLUMNS]
                rec.setdefault("record_id", rid)
            try:
                sig = np.array([float(v) if v.strip() else np.nan for v in values], dtype=np.float64)
            except ValueError as exc:
                rows.rejected.append(
                    {"record_id": rid, "reason": f"{path.name} line {line_no}: non-numeric sample ({exc})"}
                )
                continue
            _read_table_rows(rows, [rec], [sig], path.name)


def _ucr_split(path: Path) -> str | None:
    stem = path.stem.upper()
    for suffix, split in (("_TRAIN", "train"), ("_TEST", "test"), ("_VALID", "val"), ("_VAL", "val")):
        if stem.endswith(suffix):
            return split
    return None


def read_npz_file(path: Path, rows: Rows) -> None:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: unreadable .npz ({exc}); object arrays are refused (no pickle)") from None
    for key in ("x", "y"):
        if key not in arrays:
            raise DataError(f"{path}: missing array {key!r} (own-data NPZ needs x and y)")
    x = arrays["x"]
    x = x[:, None, :] if x.ndim == 2 else x
    if x.ndim != 3 or x.shape[0] != arrays["y"].shape[0]:
        raise DataError(
            f"{path}: x must be (N, L) or (N, C, L) with N = len(y); got x {arrays['x'].shape}, y {arrays['y'].shape}"
        )
    n = x.shape[0]
    fs = float(arrays["fs"]) if "fs" in arrays else None
    if "channel_names" in arrays:
        rows.channel_names = [str(c) for c in arrays["channel_names"]]
    for i in range(n):
        rid = str(arrays["record_id"][i]) if "record_id" in arrays else f"{path.name}:{i}"
        sid = str(arrays["subject_id"][i]) if "subject_id" in arrays else None
        split = str(arrays["split"][i]) if "split" in arrays else None
        rows.add(x[i], arrays["y"][i].item(), rid, sid, split, fs)


def check_rows(rows: Rows) -> np.ndarray:
    """Keep mask over rows: same shape as the first row, finite, not flat."""
    shape = rows.x[0].shape if rows.x else None
    keep = np.ones(len(rows.x), dtype=bool)
    for i, x in enumerate(rows.x):
        reason = None
        if x.shape != shape:
            reason = f"shape {x.shape} differs from the first window's {shape}"
        elif not np.isfinite(x).all():
            reason = f"{int((~np.isfinite(x)).sum())} non-finite sample(s) (NaN/inf)"
        elif np.all(x.std(axis=-1) == 0):
            reason = "flat line (every channel constant)"
        elif rows.label[i] is None or rows.label[i] == "":
            reason = "no label"
        if reason:
            keep[i] = False
            rows.rejected.append({"record_id": rows.record_id[i], "reason": reason})
    return keep


def encode_labels(values: list[Any], class_names: list[str] | None) -> tuple[np.ndarray, list[str]]:
    """Labels -> 0..K-1 and class names (given, else sorted unique values; numbers sort numerically).

    With ``class_names`` given, labels are either those names or integer
    indices 0..K-1 into them.
    """
    text = [str(v) for v in values]
    if class_names is not None and not set(text) <= set(class_names):
        ints = [v for v in values if isinstance(v, (int, np.integer)) or (isinstance(v, str) and v.strip().isdigit())]
        if len(ints) == len(values) and all(0 <= int(v) < len(class_names) for v in ints):
            return np.asarray([int(v) for v in values], dtype=np.int64), list(class_names)
    if class_names is None:
        try:
            uniq = sorted(set(values), key=float)
            text = [str(float(v)) for v in values]
            names = [str(float(v)) for v in uniq]
            names = [n[:-2] if n.endswith(".0") else n for n in names]
            text = [t[:-2] if t.endswith(".0") else t for t in text]
        except (TypeError, ValueError):
            names = sorted(set(text))
    else:
        names = list(class_names)
    unknown = sorted(set(text) - set(names))
    if unknown:
        raise DataError(f"labels {unknown[:5]} not in parquet.class_names {names}")
    index = {n: k for k, n in enumerate(names)}
    return np.asarray([index[t] for t in text], dtype=np.int64), names
