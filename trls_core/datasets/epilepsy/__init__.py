"""Bonn epilepsy EEG (Andrzejak et al. 2001): the ``epilepsy`` dataset plugin.

Five sets (Z, O, N, F, S) of 100 single-channel segments of 4097 samples at
173.61 Hz, cut into windows (the TS-TCC protocol: 23 chunks of 178 samples).
Tasks: ``five_set`` and ``binary`` (seizure, set S, vs the rest). The
source (fetch and zip reader) is :mod:`trls_core.datasets.epilepsy.source`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from trls_core.data.download import DownloadLimits
from trls_core.data.parquet import windows_frame
from trls_core.data.windows import assign_splits, segment
from trls_core.datasets.epilepsy.source import FS_HZ, BonnData, fetch_bonn, read_bonn
from trls_core.datasets.registry import Dataset, DatasetSettings, data_mirror, register
from trls_core.settings.base import SpectrogramParams, SplitFractions
from trls_core.settings.fetch import DownloadSettings

__all__ = ["EpilepsyFetchParams", "EpilepsyParams", "EpilepsyParquetParams", "build_epilepsy_table"]


class EpilepsyFetchParams(DownloadSettings):
    """Where the five set zips come from: ``mirror`` (a folder holding ``bonn-eeg/``) or the official URLs.

    The environment variable ``TRLS_DATA_MIRROR`` overrides ``mirror``, so a
    machine without internet can point at a local copy without editing params.
    Downloads are bounded and checked by the :class:`DownloadSettings` fields.
    """

    mirror: str | None
    retries: int = Field(ge=0)
    timeout_s: float = Field(gt=0)


class EpilepsyParquetParams(SplitFractions):
    """Windows of the segments and the split protocol (``random``: TS-TCC's; ``grouped``: by segment)."""

    window: int = Field(gt=0)
    stride: int | None = Field(gt=0)  # None: non-overlapping
    protocol: Literal["random", "grouped"]
    val_frac: float = Field(gt=0, lt=1)
    test_frac: float = Field(gt=0, lt=1)
    seed: int


class EpilepsyParams(DatasetSettings):
    """Section ``epilepsy`` of params.yaml."""

    fetch: EpilepsyFetchParams
    parquet: EpilepsyParquetParams
    spectrogram: SpectrogramParams


def fetch(dest: Path, section: EpilepsyParams) -> dict[str, Any]:
    f = section.fetch
    return fetch_bonn(
        dest,
        mirror=data_mirror(f),
        timeout=f.timeout_s,
        retries=f.retries,
        limits=DownloadLimits.from_mb(f.max_mb, f.total_timeout_s, "epilepsy.fetch"),
        sha256=f.sha256,
        content_sha256=f.content_sha256,
    )


def table(raw_dir: Path, section: EpilepsyParams) -> tuple[pa.Table, dict[str, Any]]:
    p = section.parquet
    return build_epilepsy_table(
        read_bonn(raw_dir),
        window=p.window,
        protocol=p.protocol,
        val_frac=p.val_frac,
        test_frac=p.test_frac,
        seed=p.seed,
        stride=p.stride,
    )


def build_epilepsy_table(
    data: BonnData,
    *,
    window: int,
    protocol: str,
    val_frac: float,
    test_frac: float,
    seed: int,
    stride: int | None,
    fs: float = FS_HZ,
) -> tuple[pa.Table, dict[str, Any]]:
    """The Epilepsy windows table and its metadata (settings: ``epilepsy.parquet``).

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
    split = assign_splits(label, record_ids if protocol == "grouped" else None, protocol, val_frac, test_frac, seed)
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


register(
    Dataset(
        name="epilepsy",
        description="Bonn epilepsy EEG, 500 segments -> 11,500 windows of 178 samples",
        settings=EpilepsyParams,
        fetch=fetch,
        table=table,
    )
)
