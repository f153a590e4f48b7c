"""The windows Parquet's splits as MLflow datasets, and real windows from it (the model's input example).

A run that trained or scored on a split says so with ``mlflow.log_input``
semantics: one dataset per split (``<dataset>/<split>``), its digest the
Parquet file's sha256 (first 16 hex digits; the full digest is in the
profile), its row count and column schema, and the context ``train`` /
``val`` / ``test``. Nothing of the data is copied: the source is the file's
path. Built from the Parquet's schema and metadata (no signal is read), and
cached per file version, so logging the same splits to ~40 unit runs costs
one hash of the file.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SPLITS", "example_windows", "parquet_sha256", "split_datasets", "split_inputs"]

SPLITS = ("train", "val", "test")
DIGEST_CHARS = 16  # MLflow stores dataset digests in a 36-character column
_CACHE_LOCK = threading.Lock()
_CACHE: dict[tuple[str, int, int, str], dict[str, Any]] = {}


def _file_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


def parquet_sha256(path: Path) -> str:
    """sha256 of the file (cached per path, size and mtime: a 160 MB Parquet hashes in ~0.5 s once)."""
    from trls_core.io import sha256_file

    key = (*_file_key(Path(path)), "sha256")
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
    if hit is None:
        hit = {"sha256": sha256_file(path)}
        with _CACHE_LOCK:
            _CACHE[key] = hit
    return str(hit["sha256"])


def _colspec_type(arrow_type: Any) -> Any:
    import pyarrow as pa
    from mlflow.types.schema import Array, DataType

    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return DataType.string
    if pa.types.is_boolean(arrow_type):
        return DataType.boolean
    if pa.types.is_int64(arrow_type) or pa.types.is_uint32(arrow_type):
        return DataType.long
    if pa.types.is_integer(arrow_type):
        return DataType.integer
    if pa.types.is_float32(arrow_type) or pa.types.is_float16(arrow_type):
        return DataType.float
    if pa.types.is_floating(arrow_type):
        return DataType.double
    if pa.types.is_list(arrow_type) or pa.types.is_fixed_size_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return Array(_colspec_type(arrow_type.value_type))
    return DataType.string


def _split_counts(path: Path, metadata: Mapping[str, Any]) -> dict[str, int]:
    counts = metadata.get("n_per_split")
    if isinstance(counts, Mapping) and counts:
        return {str(k): int(v) for k, v in counts.items()}
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    col = pq.read_table(path, columns=["split"])["split"]
    return {str(row["values"]): int(row["counts"]) for row in pc.value_counts(col).to_pylist()}


def _describe(path: Path) -> dict[str, Any]:
    """Schema JSON, split counts, digest and provenance of a windows Parquet (cached per file version)."""
    import pyarrow.parquet as pq
    from mlflow.types.schema import ColSpec, Schema

    key = (*_file_key(path), "describe")
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
    if hit is not None:
        return hit
    schema = pq.read_schema(path)
    try:
        metadata = json.loads((schema.metadata or {}).get(b"trls", b"{}"))
    except json.JSONDecodeError:
        metadata = {}
    cols = Schema([ColSpec(_colspec_type(f.type), f.name) for f in schema])
    out = {
        "schema": json.dumps({"mlflow_colspec": cols.to_dict()}),
        "counts": _split_counts(path, metadata),
        "sha256": parquet_sha256(path),
        "metadata": metadata,
    }
    with _CACHE_LOCK:
        _CACHE[key] = out
    return out


def split_datasets(parquet: Path, dataset: str, splits: Sequence[str] = SPLITS) -> dict[str, Any]:
    """``{split: mlflow.entities.Dataset}`` for the splits of a windows Parquet (a split with no rows is left out).

    Name ``<dataset>/<split>``, digest = the file's sha256 (first 16 hex
    digits), source = the file's path, schema = its columns, profile = row
    count, the full sha256 and the split protocol.
    """
    from mlflow.entities import Dataset as DatasetEntity

    path = Path(parquet)
    if not path.is_file():
        raise FileNotFoundError(f"split_datasets: {path} not found (build the data first: dvc repro)")
    info = _describe(path)
    meta = info["metadata"]
    out = {}
    for split in splits:
        n = int(info["counts"].get(split, 0))
        if n == 0:
            continue
        profile = {
            "num_rows": n,
            "split": split,
            "parquet_sha256": info["sha256"],
            "n_windows_total": int(sum(info["counts"].values())),
            "protocol": meta.get("protocol"),
            "source_content_digest": meta.get("source_content_digest"),
        }
        out[split] = DatasetEntity(
            name=f"{dataset}/{split}",
            digest=info["sha256"][:DIGEST_CHARS],
            source_type="local",
            source=json.dumps({"uri": str(path.resolve())}),
            schema=info["schema"],
            profile=json.dumps({k: v for k, v in profile.items() if v is not None}),
        )
    return out


def split_inputs(parquet: Path, dataset: str, splits: Sequence[str] = SPLITS) -> list[Any]:
    """The splits as ``mlflow.entities.DatasetInput`` with context tags (what ``log_inputs`` takes)."""
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    return [
        DatasetInput(entity, tags=[InputTag(MLFLOW_DATASET_CONTEXT, split)])
        for split, entity in split_datasets(parquet, dataset, splits).items()
    ]


def example_windows(parquet: Path, n: int = 2, split: str = "train") -> np.ndarray | None:
    """The first ``n`` windows of ``split`` as raw float32 (n, C, L), read batch by batch; None when none."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = Path(parquet)
    if not path.is_file():
        return None
    pf = pq.ParquetFile(path)
    names = pf.schema_arrow.names
    if not {"signal", "n_channels", "n_samples"} <= set(names):
        return None
    cols = ["signal", "n_channels", "n_samples"] + (["split"] if "split" in names else [])
    for batch in pf.iter_batches(batch_size=256, columns=cols):
        if "split" in cols:
            batch = batch.filter(pc.equal(batch.column("split"), split))
        if batch.num_rows == 0:
            continue
        batch = batch.slice(0, n)
        c, length = int(batch.column("n_channels")[0].as_py()), int(batch.column("n_samples")[0].as_py())
        flat = batch.column("signal").flatten().to_numpy(zero_copy_only=False)
        return np.ascontiguousarray(flat.astype(np.float32).reshape(batch.num_rows, c, length))
    return None
