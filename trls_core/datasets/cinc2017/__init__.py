"""PhysioNet/CinC Challenge 2017 single-lead ECG: the ``cinc2017`` dataset plugin.

8,528 records at 300 Hz labelled N/A/O/~, windowed at ``target_fs``; task
``af`` (scored by the mean F1 of N, A and O). The source (fetch and the
zip's index) is :mod:`trls_core.datasets.cinc2017.source`. Building the
windows table:
- Splits are drawn over the *labelled records* before any signal is read
  (grouped by record, stratified by record label), so a record rejected for
  a bad signal never reshuffles the others: the same record lands in the
  same split whatever else is broken.
- Records are read one at a time from the zip and turned into Arrow
  batches ``chunk_records`` at a time, so memory holds the windows, not the
  raw records plus intermediate copies.
- A bad record is skipped with its reason (``rejected``); the build fails
  only when fewer than ``min_keep_fraction`` of the labelled records remain.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from trls_core.data.download import DownloadLimits
from trls_core.data.parquet import windows_frame
from trls_core.data.report import unexpected_reason
from trls_core.data.wfdb_mat import (
    check_against_header,
    check_signal,
    cut_windows,
    parse_header,
    read_mat_val,
    resample,
    select_channels,
    to_physical,
)
from trls_core.data.windows import assign_splits
from trls_core.datasets.cinc2017.source import (
    CLASS_DESCRIPTIONS,
    CLASSES,
    DATASET_VERSION,
    ZIP_NAME,
    Cinc2017Archive,
    fetch_cinc2017,
)
from trls_core.datasets.registry import Dataset, DatasetSettings, data_mirror, register
from trls_core.errors import DataError
from trls_core.settings.base import SpectrogramParams, SplitFractions
from trls_core.settings.fetch import DownloadSettings

__all__ = [
    "Cinc2017FetchParams",
    "Cinc2017Params",
    "Cinc2017ParquetParams",
    "build_cinc2017_table",
    "load_record",
]

logger = logging.getLogger(__name__)


class Cinc2017FetchParams(DownloadSettings):
    """Source of ``training2017.zip``: ``mirror`` (holding ``cinc2017/``) or ``url``; the download's
    bounds and pins are the :class:`DownloadSettings` fields.

    ``expected_records`` is checked against the parsed ``RECORDS`` list, so a
    wrong or partial archive fails the fetch; ``None`` skips the check (tests).
    ``TRLS_DATA_MIRROR`` overrides ``mirror``.
    """

    mirror: str | None
    url: str
    retries: int = Field(ge=0)
    timeout_s: float = Field(gt=0)
    expected_records: int | None = Field(gt=0)


class Cinc2017ParquetParams(SplitFractions):
    """Windows of the single-lead ECG records, grouped splits.

    ``window``/``stride`` count samples at ``target_fs`` (records at another
    rate are resampled with ``resample_poly``). ``pad``: ``drop`` drops each
    record's trailing remainder and rejects records shorter than a window;
    ``zero`` zero-pads the remainder into one last window; ``end`` adds one last
    window ending at the record's end (overlapping, all real signal: what a
    record-level score should pool) and zero-pads only records shorter than
    a window. Splits always keep a record in one split, stratified by the
    record label. The stage fails when fewer than ``min_keep_fraction`` of
    the labelled records survive.
    """

    window: int = Field(gt=0)
    stride: int | None = Field(gt=0)  # None: non-overlapping
    pad: Literal["drop", "zero", "end"]
    target_fs: float = Field(gt=0)
    channels: list[str]
    val_frac: float = Field(gt=0, lt=1)
    test_frac: float = Field(gt=0, lt=1)
    seed: int
    flat_std_mv: float = Field(ge=0)
    min_keep_fraction: float = Field(ge=0, le=1)
    chunk_records: int = Field(gt=0)


class Cinc2017Params(DatasetSettings):
    """Section ``cinc2017`` of params.yaml."""

    fetch: Cinc2017FetchParams
    parquet: Cinc2017ParquetParams
    spectrogram: SpectrogramParams


def fetch(dest: Path, section: Cinc2017Params) -> dict[str, Any]:
    f = section.fetch
    return fetch_cinc2017(
        dest,
        mirror=data_mirror(f),
        url=f.url,
        expected_records=f.expected_records,
        timeout=f.timeout_s,
        retries=f.retries,
        limits=DownloadLimits.from_mb(f.max_mb, f.total_timeout_s, "cinc2017.fetch"),
        sha256=f.sha256,
        content_sha256=f.content_sha256,
    )


def table(raw_dir: Path, section: Cinc2017Params) -> tuple[pa.Table, dict[str, Any]]:
    return build_cinc2017_table(raw_dir / ZIP_NAME, section.parquet)


def load_record(arc: Cinc2017Archive, rid: str, p: Cinc2017ParquetParams) -> np.ndarray:
    """One record as physical units (mV) at ``p.target_fs``, channels ``p.channels``: (C, L)."""
    hea_name, mat_name = arc.hea[rid], arc.mat[rid]
    where = f"{arc.path.name}:{hea_name}"
    header = parse_header(arc.read_text(hea_name), where)
    if header.record_name != rid:
        raise DataError(f"{where}: header names record {header.record_name!r}, file is {rid!r}")
    mat_where = f"{arc.path.name}:{mat_name}"
    val = read_mat_val(arc.read_member(mat_name), mat_where)
    check_against_header(val, header, f"{where} vs {mat_name.rsplit('/', 1)[-1]}")
    signal = select_channels(to_physical(val, header), header, p.channels, where)
    check_signal(signal, p.flat_std_mv, where)
    return resample(signal, header.fs, p.target_fs, where)


def _classify(arc: Cinc2017Archive) -> tuple[list[str], list[int], list[dict[str, str]]]:
    """(usable ids, their label index, rejections) from names and labels alone."""
    ids: list[str] = []
    labels: list[int] = []
    rejected: list[dict[str, str]] = []
    listed = set(arc.records) if arc.records is not None else None
    for rid in arc.record_ids():
        label = arc.labels.get(rid)
        missing = [ext for ext, have in ((".hea", arc.hea), (".mat", arc.mat)) if rid not in have]
        if label is None:
            reason = "no label in REFERENCE.csv"
        elif missing:
            reason = f"labelled in REFERENCE.csv but {' and '.join(missing)} missing from the archive"
        elif label not in CLASSES:
            reason = f"unknown label {label!r} in REFERENCE.csv (expected one of {list(CLASSES)})"
        elif listed is not None and rid not in listed:
            reason = "labelled and present but not listed in RECORDS"
        else:
            ids.append(rid)
            labels.append(CLASSES.index(label))
            continue
        rejected.append({"record_id": rid, "reason": reason})
    return ids, labels, rejected


def build_cinc2017_table(zip_path: Path, p: Cinc2017ParquetParams) -> tuple[pa.Table, dict[str, Any]]:
    """Windows table + metadata (``rejected`` included) for ``training2017.zip``."""
    with Cinc2017Archive.open(Path(zip_path)) as arc:
        for problem in arc.label_problems:
            logger.warning("%s", problem)
        ids, labels, rejected = _classify(arc)
        n_candidates = len(ids) + sum(1 for r in rejected if r["reason"] != "no label in REFERENCE.csv")
        if not ids:
            raise DataError(f"{zip_path}: no usable labelled record (rejected: {len(rejected)})")
        rec_split = assign_splits(np.asarray(labels), np.asarray(ids), "grouped", p.val_frac, p.test_frac, p.seed)
        tables: list[pa.Table] = []
        chunk: list[tuple[str, int, str, np.ndarray, np.ndarray, np.ndarray]] = []
        kept_records = 0
        for rid, lab, split in zip(ids, labels, rec_split):
            try:
                signal = load_record(arc, rid, p)
                windows, start, n_pad = cut_windows(signal, p.window, p.stride, p.pad, f"record {rid}")
            except DataError as exc:
                rejected.append({"record_id": rid, "reason": str(exc)})
                continue
            except Exception as exc:  # one odd record must not cost the other 8,527: reject it, say why
                reason = unexpected_reason(f"{arc.path.name}: record {rid}", exc)
                logger.warning("%s", reason)
                rejected.append({"record_id": rid, "reason": reason})
                continue
            chunk.append((rid, lab, str(split), windows, start, n_pad))
            kept_records += 1
            if len(chunk) >= p.chunk_records:
                tables.append(_chunk_table(chunk, p.target_fs))
                chunk = []
        if chunk:
            tables.append(_chunk_table(chunk, p.target_fs))
    rejected.sort(key=lambda r: r["record_id"])
    keep = kept_records / max(n_candidates, 1)
    if keep < p.min_keep_fraction or not tables:
        raise DataError(
            f"{zip_path}: only {kept_records} of {n_candidates} labelled records usable "
            f"({keep:.1%} < cinc2017.parquet.min_keep_fraction {p.min_keep_fraction:.0%}); "
            f"{len(rejected)} rejected, first: {rejected[:3]}"
        )
    if rejected:
        logger.warning("cinc2017: %d record(s) rejected (see rejected.json)", len(rejected))
    table = pa.concat_tables(tables)
    return table, _metadata(table, p, kept_records, n_candidates, rejected)


def _chunk_table(chunk: list[tuple[str, int, str, np.ndarray, np.ndarray, np.ndarray]], fs: float) -> pa.Table:
    counts = [c[3].shape[0] for c in chunk]
    rids = np.repeat([c[0] for c in chunk], counts)
    labels = np.repeat([c[1] for c in chunk], counts).astype(np.int64)
    starts = np.concatenate([c[4] for c in chunk])
    k = np.concatenate([np.arange(n) for n in counts])
    window_ids = np.char.add(np.char.add(rids.astype(str), "_"), np.char.zfill(k.astype(str), 3))
    return windows_frame(
        np.concatenate([c[3] for c in chunk]),
        window_id=window_ids,
        record_id=rids,
        subject_id=rids,
        split=np.repeat([c[2] for c in chunk], counts),
        label=labels,
        label_name=np.asarray(CLASSES)[labels],
        fs=fs,
        extra={"start": starts, "n_pad": np.concatenate([c[5] for c in chunk])},
    )


def _metadata(
    table: pa.Table, p: Cinc2017ParquetParams, kept: int, candidates: int, rejected: list[dict[str, str]]
) -> dict[str, Any]:
    split = table["split"].to_numpy(zero_copy_only=False)
    names, counts = np.unique(split, return_counts=True)
    return {
        "dataset": "cinc2017",
        "dataset_version": DATASET_VERSION,
        # the challenge score: mean F1 of N, A and O (noisy '~' is not scored)
        "tasks": {"af": {"column": "label", "classes": list(CLASSES), "score_classes": ["N", "A", "O"]}},
        "class_descriptions": CLASS_DESCRIPTIONS,
        "protocol": "grouped",
        "group": "record_id",
        "stratified_on": "record label",
        "seed": p.seed,
        "val_frac": p.val_frac,
        "test_frac": p.test_frac,
        "window": p.window,
        "stride": p.stride or p.window,
        "pad": p.pad,
        "fs": p.target_fs,
        "channels": p.channels,
        "units": "mV",
        "n_records": kept,
        "n_candidate_records": candidates,
        "n_windows": table.num_rows,
        "n_per_split": {s: 0 for s in ("train", "val", "test")} | {str(a): int(b) for a, b in zip(names, counts)},
        "subject_id_note": "CinC 2017 publishes no subject ids; subject_id = record_id",
        "record_prediction": "aggregate window predictions by record_id (e.g. mean probability)",
        "rejected": rejected,
    }


register(
    Dataset(
        name="cinc2017",
        description="PhysioNet/CinC 2017 single-lead ECG, 8,528 records, N/A/O/~",
        settings=Cinc2017Params,
        fetch=fetch,
        table=table,
    )
)
