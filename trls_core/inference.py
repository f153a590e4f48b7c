"""Batch inference (``trls embed``): raw windows in a file -> a Parquet of embeddings from a registered model.

Input: one file in a format of the ``custom`` dataset (docs/datasets/custom.md),
labels optional:

- ``*.parquet``: ``signal`` (list of C*L floats, channels x samples
  row-major; a trls windows Parquet works as is), optional ``window_id``,
  ``record_id``, ``subject_id``, ``fs``, ``n_channels`` (when C > 1);
- ``*.csv``: header row, the same optional columns by name, every other
  column one sample in order;
- ``*.npz``: ``x`` (N, L) or (N, C, L), optional ``window_id``, ``record_id``,
  ``subject_id``, ``fs``, ``channel_names`` (``allow_pickle=False``);
- ``*.tsv`` (UCR archive): no header, label in column 0, samples after.

The windows must be what the model was trained on: its channels, window
length and sampling rate (the registered model's ``input_spec``). A file
that differs says which (all differences at once) and nothing is written.
Output: a Parquet with the input's id columns and ``embedding``
(``fixed_size_list<float32>[R]``), written atomically (temp file + rename),
its schema metadata naming the model and the input file's sha256.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trls_core.errors import ConfigError, DataError, TrlsError

__all__ = ["ID_COLUMNS", "Windows", "check_windows", "embed_file", "read_windows_file", "write_embeddings"]

ID_COLUMNS = ("window_id", "record_id", "subject_id")
_NOT_SAMPLES = (*ID_COLUMNS, "label", "label_name", "split", "fs", "n_channels", "n_samples")
RATE_TOLERANCE = 1e-3  # relative: 173.61 vs 173.6100006 (float32 in the Parquet) is the same rate


@dataclass
class Windows:
    """Windows read from one file: ``x`` (N, C, L) float32, their id columns, rate and channel names if known."""

    x: np.ndarray
    ids: dict[str, list[str]] = field(default_factory=dict)
    fs: float | None = None
    channel_names: list[str] | None = None


def _ids(columns: Mapping[str, Any], n: int, name: str) -> dict[str, list[str]]:
    out = {c: [str(v) for v in columns[c]] for c in ID_COLUMNS if c in columns}
    if "window_id" not in out:
        out = {"window_id": [f"{name}:{i}" for i in range(n)], **out}
    return out


def _rate(values: Any, path: Path) -> float | None:
    vals = np.unique(np.asarray([v for v in np.asarray(values).ravel() if v is not None], dtype=np.float64))
    vals = vals[np.isfinite(vals)]
    if vals.size > 1:
        raise DataError(f"{path}: rate: the windows have {vals.size} sampling rates {vals[:5].tolist()}; one per file")
    return float(vals[0]) if vals.size else None


def _reshape(rows: np.ndarray, channels: list[int], path: Path, where: str) -> np.ndarray:
    """(N, C*L) values -> (N, C, L), C from the file's ``n_channels`` (one value per file)."""
    c = set(channels)
    if len(c) > 1:
        raise DataError(f"{path}: channels: rows with different n_channels {sorted(c)}; one per file")
    n_ch = c.pop() if c else 1
    size = rows.shape[1]
    if n_ch < 1 or size % n_ch:
        raise DataError(f"{path}: channels: {size} values per window ({where}) not divisible by n_channels {n_ch}")
    return np.ascontiguousarray(rows, dtype=np.float32).reshape(len(rows), n_ch, size // n_ch)


def _read_parquet(path: Path) -> Windows:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
    if "signal" not in names:
        raise DataError(f"{path}: no 'signal' column (a list of C*L floats per window)")
    wanted = [c for c in (*ID_COLUMNS, "fs", "n_channels") if c in names]
    table = pq.read_table(path, columns=[*wanted, "signal"])
    sig = table["signal"].combine_chunks()
    if sig.null_count:
        raise DataError(f"{path}: column signal has {sig.null_count} null row(s)")
    if len(sig) == 0:
        raise DataError(f"{path}: no windows")
    sizes = np.unique(pc.list_value_length(sig).to_numpy(zero_copy_only=False))
    if sizes.size > 1:
        raise DataError(f"{path}: length: windows of several sizes {sizes[:5].tolist()}; one length per file")
    flat = sig.flatten().to_numpy(zero_copy_only=False)
    rows = flat.reshape(len(sig), int(sizes[0]))  # the whole column at once, no Python loop over windows
    channels = table["n_channels"].to_numpy(zero_copy_only=False) if "n_channels" in wanted else np.ones(1, int)
    x = _reshape(rows, [int(c) for c in np.unique(channels)], path, "column signal")
    fs = _rate(table["fs"].to_numpy(zero_copy_only=False), path) if "fs" in wanted else None
    cols = {c: table[c].to_pylist() for c in wanted if c in ID_COLUMNS}
    return Windows(x, _ids(cols, len(sig), path.name), fs)


def _read_csv(path: Path, ucr: bool) -> Windows:
    import pandas as pd

    try:
        df = pd.read_csv(path, sep="\t" if ucr else ",", header=None if ucr else 0)
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: not a readable {'UCR .tsv' if ucr else 'CSV'} file ({exc})") from None
    if ucr:
        df.columns = ["label", *[f"s{i}" for i in range(df.shape[1] - 1)]]
    df.columns = [str(c).strip() for c in df.columns]
    sample_cols = [c for c in df.columns if c not in _NOT_SAMPLES]
    values = df[sample_cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if bad.size:
        line = int(bad[0]) + (1 if ucr else 2)
        raise DataError(
            f"{path}: {bad.size} row(s) with a missing or non-numeric sample, the first on line {line} "
            "(a ragged line or a text cell)"
        )
    channels = [int(c) for c in df["n_channels"]] if "n_channels" in df else [1] * len(df)
    x = _reshape(values, channels, path, f"{len(sample_cols)} sample columns")
    cols = {c: df[c].tolist() for c in df.columns if c in ID_COLUMNS}
    fs = _rate(df["fs"].to_numpy(), path) if "fs" in df else None
    return Windows(x, _ids(cols, len(df), path.name), fs)


def _read_npz(path: Path) -> Windows:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: unreadable .npz ({exc}); object arrays are refused (no pickle)") from None
    if "x" not in arrays:
        raise DataError(f"{path}: no array 'x' ((N, L) or (N, C, L) windows)")
    x = arrays["x"]
    x = x[:, None, :] if x.ndim == 2 else x
    if x.ndim != 3:
        raise DataError(f"{path}: x must be (N, L) or (N, C, L), got shape {arrays['x'].shape}")
    fs = _rate(arrays["fs"], path) if "fs" in arrays else None
    names = [str(c) for c in arrays["channel_names"]] if "channel_names" in arrays else None
    cols = {c: arrays[c].tolist() for c in ID_COLUMNS if c in arrays}
    for c, v in cols.items():
        if len(v) != x.shape[0]:
            raise DataError(f"{path}: {c} has {len(v)} entries for {x.shape[0]} windows")
    return Windows(np.asarray(x, dtype=np.float32), _ids(cols, x.shape[0], path.name), fs, names)


def read_windows_file(path: Path) -> Windows:
    """The windows of one ``.parquet`` / ``.csv`` / ``.npz`` / ``.tsv`` file (labels, if any, are ignored)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"input file not found: {path}")
    kind = path.suffix.lower()
    readers = {".parquet": _read_parquet, ".npz": _read_npz}
    if kind in readers:
        w = readers[kind](path)
    elif kind in (".csv", ".tsv"):
        w = _read_csv(path, ucr=kind == ".tsv")
    else:
        raise DataError(f"{path}: unknown format {kind!r} (expected .parquet, .csv, .npz or UCR .tsv)")
    if len(w.x) == 0:
        raise DataError(f"{path}: no windows")
    if not np.isfinite(w.x).all():
        raise DataError(f"{path}: {int((~np.isfinite(w.x)).sum())} NaN/inf sample(s)")
    return w


def check_windows(w: Windows, spec: Mapping[str, Any], where: str, fs: float | None = None) -> None:
    """Raise DataError naming every mismatch of channels, length and rate between ``w`` and the model's input.

    ``fs`` (the user's statement of the file's rate) stands in when the file carries none.
    """
    problems = []
    _, c, length = w.x.shape
    want_c, want_l, want_fs = spec.get("channels"), spec.get("n_samples"), spec.get("fs")
    if want_c and c != int(want_c):
        problems.append(f"channels: the file has {c} channel(s) per window, the model takes {want_c}")
    elif w.channel_names and spec.get("channel_names") and list(w.channel_names) != list(spec["channel_names"]):
        problems.append(f"channels: the file's {w.channel_names} are not the model's {spec['channel_names']}")
    if want_l and length != int(want_l):
        problems.append(f"length: windows of {length} samples, the model takes {want_l}")
    rate = w.fs if w.fs is not None else fs
    if w.fs is not None and fs is not None and abs(w.fs - fs) > RATE_TOLERANCE * fs:
        problems.append(f"rate: the file says {w.fs:g} Hz, --fs says {fs:g} Hz")
    if rate is not None and want_fs and abs(rate - float(want_fs)) > RATE_TOLERANCE * float(want_fs):
        problems.append(f"rate: the windows are at {rate:g} Hz, the model's at {float(want_fs):g} Hz (resample first)")
    if problems:
        raise DataError(f"{where} does not match the model's input: " + "; ".join(problems) + "; nothing written")


def write_embeddings(path: Path, ids: Mapping[str, list[str]], emb: np.ndarray, metadata: Mapping[str, Any]) -> None:
    """``ids`` columns + ``embedding`` (fixed-size list of float32) to ``path`` atomically (temp + rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from trls_core.io import atomic_path

    emb = np.ascontiguousarray(emb, dtype=np.float32)
    cols = {k: pa.array(v, type=pa.string()) for k, v in ids.items()}
    cols["embedding"] = pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1])
    table = pa.table(cols).replace_schema_metadata({b"trls": json.dumps(dict(metadata), default=str).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def embed_file(
    model_uri: str, input_path: Path, output_path: Path, root: Path | None = None, fs: float | None = None
) -> dict[str, Any]:
    """Embed every window of ``input_path`` with ``model_uri`` (e.g. ``models:/trls-epilepsy-encoder@champion``).

    ``root`` selects the MLflow store (``<root>/mlflow.db`` unless
    ``MLFLOW_TRACKING_URI`` is set). Returns a summary (rows, dimension, paths).
    """
    from trls_core.io import sha256_file
    from trls_core.tracking import load_model

    input_path, output_path = Path(input_path), Path(output_path)
    if fs is not None and not (np.isfinite(fs) and fs > 0):  # nan would pass every rate comparison
        raise ConfigError(f"--fs must be a positive finite number of Hz, got {fs}")
    windows = read_windows_file(input_path)  # a bad file fails before the model loads
    try:
        model = load_model(model_uri, root=root)
    except Exception as exc:  # MlflowException, OSError: no such model/alias/store
        raise TrlsError(f"cannot load model {model_uri!r}: {str(exc).splitlines()[0]}") from None
    python_model = model.unwrap_python_model()
    spec = getattr(python_model, "input_spec", None) or (model.metadata.metadata or {}).get("trls_input") or {}
    check_windows(windows, spec, str(input_path), fs)
    emb = np.asarray(model.predict(windows.x), dtype=np.float32)
    meta = {
        "model_uri": model_uri,
        "model_id": getattr(model.metadata, "model_id", None),
        "run_id": model.metadata.run_id,
        "input": str(input_path.resolve()),
        "input_sha256": sha256_file(input_path),
        "input_spec": spec,
    }
    write_embeddings(output_path, windows.ids, emb, meta)
    return {"rows": int(emb.shape[0]), "dim": int(emb.shape[1]), "output": str(output_path), "model": model_uri}
