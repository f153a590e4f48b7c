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
    origin: list[str] = field(default_factory=list)  # "file line N" / "file row N": where a rejection points

    def add(
        self,
        x: np.ndarray,
        label: Any,
        rid: str,
        sid: str | None,
        split: str | None,
        fs: float | None,
        origin: str = "",
    ) -> None:
        self.origin.append(origin)
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


def _row_problem(rec: dict[str, Any], sig: np.ndarray) -> tuple[str | None, int, float | None]:
    """(why the row is unusable or None, its channel count, its fs) from the id columns and samples."""
    raw_c = _opt(rec, "n_channels")
    try:
        c = 1 if raw_c is None else float(raw_c)
    except (TypeError, ValueError):
        c = 0.0
    if not (np.isfinite(c) and c >= 1 and c == int(c)):
        return f"n_channels must be a positive integer, got {raw_c!r}", 1, None
    c = int(c)
    if sig.size == 0:
        return "empty window (no samples)", c, None
    if sig.size % c:
        return f"{sig.size} samples not divisible by n_channels {c}", c, None
    label = rec.get("label")
    if label is not None and not isinstance(label, (str, int, float, bool, np.generic)):
        return f"label must be one value, got {type(label).__name__} {str(label)[:40]!r}", c, None
    raw_fs = _opt(rec, "fs")
    if raw_fs is None:
        return None, c, None
    try:
        fs = float(raw_fs)
    except (TypeError, ValueError):
        fs = float("nan")
    if not (np.isfinite(fs) and fs > 0):
        return f"fs must be a positive finite number, got {raw_fs!r}", c, None
    return None, c, fs


def _add_row(rows: Rows, rec: dict[str, Any], sig: np.ndarray, rid: str, where: str) -> None:
    """Add one window, or reject it naming ``where`` (``file line N`` / ``file row N``) and the column."""
    problem, c, fs = _row_problem(rec, sig)
    if problem is not None:
        rows.rejected.append({"record_id": rid, "reason": f"{where}: {problem}"})
        return
    rows.add(sig.reshape(c, -1), rec.get("label"), rid, _opt(rec, "subject_id"), _opt(rec, "split"), fs, where)


def _samples(value: Any) -> np.ndarray:
    """One row's ``signal`` cell as float64 samples; raises ValueError/TypeError for non-numbers."""
    if value is None:
        return np.asarray([np.nan])
    arr = np.asarray(value)
    if arr.dtype.kind == "O":  # a list with gaps (None -> NaN, rejected as non-finite by check_rows)
        arr = np.asarray([np.nan if v is None else v for v in np.ravel(arr)], dtype=np.float64)
    if arr.dtype.kind not in "biuf":  # text, complex: not samples
        raise ValueError(f"signal holds {arr.dtype} values, not real numbers")
    return arr.astype(np.float64).ravel()


def read_parquet_file(path: Path, rows: Rows) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable Parquet ({type(exc).__name__}: {exc})") from None
    for col in ("label", "signal"):
        if col not in table.column_names:
            raise DataError(f"{path}: missing column {col!r} (own-data Parquet needs label and signal)")
    meta = table.drop_columns(["signal"]).to_pylist()
    for i, (rec, cell) in enumerate(zip(meta, table["signal"].to_pylist())):
        rid = str(_opt(rec, "record_id") or f"{path.name}:{i}")
        try:
            sig = _samples(cell)
        except (TypeError, ValueError) as exc:
            rows.rejected.append({"record_id": rid, "reason": f"{path.name} row {i}: column signal: {exc}"})
            continue
        _add_row(rows, rec, sig, rid, f"{path.name} row {i}")


def read_csv_file(path: Path, rows: Rows, ucr: bool = False) -> None:
    """CSV with a header (or UCR .tsv: no header, label first); ragged lines are rejected."""
    delim = "\t" if ucr else ","
    split_hint = _ucr_split(path) if ucr else None
    try:
        _read_delimited(path, rows, ucr, delim, split_hint)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except csv.Error as exc:  # a NUL byte, a field over the csv module's size limit
        raise DataError(f"{path}: unreadable {'UCR .tsv' if ucr else 'CSV'} ({exc})") from None


def _read_delimited(path: Path, rows: Rows, ucr: bool, delim: str, split_hint: str | None) -> None:
    with open(path, newline="", encoding="utf-8") as f:
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
            _add_row(rows, rec, sig, str(rec.get("record_id") or rid), f"{path.name} line {line_no}")


def _ucr_split(path: Path) -> str | None:
    stem = path.stem.upper()
    for suffix, split in (("_TRAIN", "train"), ("_TEST", "test"), ("_VALID", "val"), ("_VAL", "val")):
        if stem.endswith(suffix):
            return split
    return None


def read_npz_file(path: Path, rows: Rows) -> None:
    """An NPZ of ``x`` (N, L) or (N, C, L) and ``y`` (N,), each optional array checked against N."""
    import zipfile
    import zlib

    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(
            f"{path}: unreadable .npz ({type(exc).__name__}: {exc}); object arrays are refused (no pickle)"
        ) from None
    except AttributeError:  # np.load of a bare .npy saved under .npz: an array, not an archive
        raise DataError(f"{path}: not an .npz archive (a single array? save with np.savez(x=..., y=...))") from None
    for key in ("x", "y"):
        if key not in arrays:
            raise DataError(f"{path}: missing array {key!r} (own-data NPZ needs x and y)")
    x, y = arrays["x"], arrays["y"]
    if x.dtype.kind not in "biuf":
        raise DataError(f"{path}: array 'x' must hold real numbers, got dtype {x.dtype}")
    if y.dtype.kind not in "biufUS":
        raise DataError(f"{path}: array 'y' must hold labels (numbers or text), got dtype {y.dtype}")
    x = x[:, None, :] if x.ndim == 2 else x
    if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise DataError(f"{path}: x must be (N, L) or (N, C, L) and y (N,); got x {arrays['x'].shape}, y {y.shape}")
    n, c, length = x.shape
    if length == 0 or c == 0:
        raise DataError(f"{path}: array 'x' has empty windows (shape {arrays['x'].shape})")
    for key in ("record_id", "subject_id", "split"):
        if key in arrays and (arrays[key].ndim != 1 or arrays[key].shape[0] != n):
            raise DataError(
                f"{path}: array {key!r} must be 1-D with one value per window ({n}); got {arrays[key].shape}"
            )
    fs = _npz_fs(arrays["fs"], path) if "fs" in arrays else None
    if "channel_names" in arrays:
        names = arrays["channel_names"]
        if names.ndim != 1 or names.shape[0] != c:
            raise DataError(f"{path}: array 'channel_names' must name the {c} channel(s) of x; got {names.shape}")
        rows.channel_names = [str(v) for v in names]
    for i in range(n):
        rid = str(arrays["record_id"][i]) if "record_id" in arrays else f"{path.name}:{i}"
        sid = str(arrays["subject_id"][i]) if "subject_id" in arrays else None
        split = str(arrays["split"][i]) if "split" in arrays else None
        rows.add(x[i], y[i].item(), rid, sid, split, fs, f"{path.name} window {i}")


def _npz_fs(value: np.ndarray, path: Path) -> float:
    """The ``fs`` array of an NPZ: one positive finite number (a scalar or a 1-element array)."""
    if value.size != 1 or value.dtype.kind not in "iuf":
        raise DataError(f"{path}: array 'fs' must be one number, got dtype {value.dtype} shape {value.shape}")
    fs = float(value.reshape(()))
    if not (np.isfinite(fs) and fs > 0):
        raise DataError(f"{path}: array 'fs' must be a positive finite number, got {fs}")
    return fs


def check_rows(rows: Rows) -> np.ndarray:
    """Keep mask over rows: same shape as the first row, finite, not flat."""
    shape = rows.x[0].shape if rows.x else None
    keep = np.ones(len(rows.x), dtype=bool)
    for i, x in enumerate(rows.x):
        reason = None
        if x.shape != shape:
            reason = f"shape {x.shape} differs from the first window's {shape}"
        elif x.size == 0:
            reason = "empty window (no samples)"
        elif not np.isfinite(x).all():
            reason = f"{int((~np.isfinite(x)).sum())} non-finite sample(s) (NaN/inf)"
        elif np.all(x.std(axis=-1) == 0):
            reason = "flat line (every channel constant)"
        elif _opt({"label": rows.label[i]}, "label") is None:
            reason = "no label"
        if reason:
            keep[i] = False
            where = rows.origin[i] if i < len(rows.origin) and rows.origin[i] else f"record {rows.record_id[i]}"
            rows.rejected.append({"record_id": rows.record_id[i], "reason": f"{where}: {reason}"})
    return keep


def encode_labels(
    values: list[Any], class_names: list[str] | None, where: str = "labels"
) -> tuple[np.ndarray, list[str]]:
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
        raise DataError(f"{where}: labels {unknown[:5]} not in parquet.class_names {names}")
    index = {n: k for k, n in enumerate(names)}
    return np.asarray([index[t] for t in text], dtype=np.int64), names
