"""PhysioNet MIT-BIH Arrhythmia ECG: the ``mitdb`` dataset plugin.

48 two-lead records at 360 Hz; one beat-centred window per annotated beat,
AAMI classes N/S/V/F/Q (task ``aami``). The source (fetch, record files,
AAMI mapping) is :mod:`trls_core.datasets.mitdb.source`. Building the
windows table:
- Splits come from record names alone, before any signal is read:
  ``inter_patient`` (default) is de Chazal 2004 (test = DS2; DS1 split by
  record into train/val), ``grouped`` draws subjects at random. A rejected
  record never moves another one.
- One window per reference beat annotation, ``before``/``after`` samples
  around the R peak at ``target_fs``; beats too close to either end of the
  record are skipped (counted), non-beat annotations (rhythm, noise) skipped.
- A beat with a symbol that is neither an AAMI beat nor a known non-beat
  code is skipped and reported per record with counts (the record keeps its
  other beats); a record with no usable beat, a missing lead, NaN or a flat
  line is rejected. The build fails only when fewer than
  ``min_keep_fraction`` of the candidate records remain.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from trls_core.data.parquet import windows_frame
from trls_core.data.wfdb_mat import check_signal, resample
from trls_core.data.windows import assign_splits
from trls_core.datasets.mitdb.source import (
    AAMI,
    CLASS_DESCRIPTIONS,
    CLASSES,
    DATASET_VERSION,
    DS1,
    DS2,
    EXTENSIONS,
    NON_BEAT,
    fetch_mitdb,
    record_files,
)
from trls_core.datasets.registry import Dataset, DatasetSettings, data_mirror, register
from trls_core.errors import DataError
from trls_core.settings.base import SpectrogramParams, SplitFractions, Strict

__all__ = ["MitdbFetchParams", "MitdbParams", "MitdbParquetParams", "build_mitdb_table"]

logger = logging.getLogger(__name__)


class MitdbFetchParams(Strict):
    """Which MIT-BIH records to fetch (``None`` = all 48), from a mirror or PhysioNet.

    ``mirror`` holds ``mitdb/`` with the WFDB files (``100.hea``, ``100.dat``,
    ``100.atr``, ...); without one ``wfdb.dl_database`` downloads them.
    ``expected_records`` is checked when ``records`` is None (None skips it).
    ``TRLS_DATA_MIRROR`` overrides ``mirror``.
    """

    mirror: str | None
    records: list[str] | None
    expected_records: int | None = Field(gt=0)
    timeout_s: float = Field(gt=0)  # reachability check before downloading


class MitdbParquetParams(SplitFractions):
    """Beat-centred windows, AAMI classes, inter-patient (DS1/DS2) or grouped split.

    A window is ``before`` samples before to ``after`` samples after the
    annotated R peak, counted at ``target_fs``. ``protocol``:
    ``inter_patient`` (de Chazal 2004: test = DS2, train/val = DS1 with
    ``val_frac`` of its records in val) or ``grouped`` (records drawn at
    random into train/val/test by ``val_frac``/``test_frac``).
    ``exclude_records`` (the paced ones in params.yaml) are left out, not rejected.
    """

    leads: list[str]
    target_fs: float = Field(gt=0)
    before: int = Field(ge=0)
    after: int = Field(gt=0)
    protocol: Literal["inter_patient", "grouped"]
    exclude_records: list[str]
    val_frac: float = Field(gt=0, lt=1)
    test_frac: float = Field(gt=0, lt=1)
    seed: int
    flat_std_mv: float = Field(ge=0)
    min_keep_fraction: float = Field(ge=0, le=1)


class MitdbParams(DatasetSettings):
    """Section ``mitdb`` of params.yaml."""

    fetch: MitdbFetchParams
    parquet: MitdbParquetParams
    spectrogram: SpectrogramParams


def fetch(dest: Path, section: MitdbParams) -> dict[str, Any]:
    f = section.fetch
    return fetch_mitdb(
        dest, mirror=data_mirror(f), records=f.records, expected_records=f.expected_records, timeout=f.timeout_s
    )


def table(raw_dir: Path, section: MitdbParams) -> tuple[pa.Table, dict[str, Any]]:
    return build_mitdb_table(raw_dir, section.parquet)


#: Records 201 and 202 come from the same subject (MIT-BIH directory); other records are one subject each.
SAME_SUBJECT: dict[str, str] = {"202": "201"}


def subject_of(rid: str) -> str:
    return SAME_SUBJECT.get(rid, rid)


def read_record(
    folder: Path, rid: str, leads: list[str], target_fs: float, flat_std_mv: float
) -> tuple[np.ndarray, float]:
    """Leads ``leads`` of record ``rid`` in mV at ``target_fs`` (C, L), and the file's rate."""
    import wfdb

    where = f"record {rid} ({rid}.hea/.dat)"
    try:
        rec = wfdb.rdrecord(str(Path(folder) / rid))
    except Exception as exc:  # wfdb raises ValueError/IndexError/OSError on bad files
        raise DataError(f"{where}: unreadable ({type(exc).__name__}: {exc})") from None
    missing = [name for name in leads if name not in rec.sig_name]
    if missing:
        raise DataError(f"{where}: channel(s) {missing} not in the record (channels: {rec.sig_name})")
    x = np.asarray(rec.p_signal, dtype=np.float32).T[[rec.sig_name.index(n) for n in leads]]
    check_signal(x, flat_std_mv, where)
    return resample(x, float(rec.fs), target_fs), float(rec.fs)


def read_beats(folder: Path, rid: str) -> tuple[np.ndarray, list[str]]:
    """(sample, symbol) of every annotation in ``<rid>.atr``."""
    import wfdb

    try:
        ann = wfdb.rdann(str(Path(folder) / rid), "atr")
    except Exception as exc:
        raise DataError(f"record {rid} ({rid}.atr): unreadable annotations ({type(exc).__name__}: {exc})") from None
    return np.asarray(ann.sample, dtype=np.int64), list(ann.symbol)


def beat_windows(
    signal: np.ndarray, samples: np.ndarray, symbols: list[str], scale: float, before: int, after: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Counter[str], dict[str, Any]]:
    """Windows (K, C, before + after) around AAMI beats.

    Returns windows, class index, R-peak sample at the target rate,
    annotation index, skipped counts (``non_beat``, ``edge``, ``unknown``)
    and the unknown symbols (counts, first sample).
    """
    length = signal.shape[1]
    peaks = np.round(samples * scale).astype(np.int64)
    skipped: Counter[str] = Counter()
    unknown: Counter[str] = Counter()
    first_unknown: int | None = None
    keep: list[int] = []
    for i, sym in enumerate(symbols):
        if sym in AAMI:
            if peaks[i] - before < 0 or peaks[i] + after > length:
                skipped["edge"] += 1
            else:
                keep.append(i)
        elif sym in NON_BEAT:
            skipped["non_beat"] += 1
        else:
            skipped["unknown"] += 1
            unknown[sym] += 1
            first_unknown = int(samples[i]) if first_unknown is None else first_unknown
    idx = np.asarray(keep, dtype=np.int64)
    offsets = np.arange(-before, after, dtype=np.int64)
    windows = (
        signal[:, peaks[idx, None] + offsets].transpose(1, 0, 2)
        if idx.size
        else np.zeros((0, signal.shape[0], before + after), np.float32)
    )
    labels = np.asarray([CLASSES.index(AAMI[symbols[i]]) for i in keep], dtype=np.int64)
    return (
        np.ascontiguousarray(windows, dtype=np.float32),
        labels,
        peaks[idx],
        idx,
        skipped,
        {"symbols": dict(unknown), "first_sample": first_unknown},
    )


def record_splits(records: list[str], p: MitdbParquetParams) -> tuple[dict[str, str], list[dict[str, str]]]:
    """Split per record from names alone, and rejections for records outside the protocol's lists."""
    rejected: list[dict[str, str]] = []
    if p.protocol == "inter_patient":
        ds1 = [r for r in records if r in DS1]
        rejected = [
            {"record_id": r, "reason": f"record {r} is in neither DS1 nor DS2 (protocol inter_patient)"}
            for r in records
            if r not in DS1 and r not in DS2
        ]
        out = {r: "test" for r in records if r in DS2}
        if ds1:
            split = assign_splits(np.zeros(len(ds1), np.int64), np.asarray(ds1), "grouped", p.val_frac, 0.0, p.seed)
            out |= dict(zip(ds1, split.tolist()))
        return out, rejected
    subjects = sorted({subject_of(r) for r in records})
    split = assign_splits(
        np.zeros(len(subjects), np.int64), np.asarray(subjects), "grouped", p.val_frac, p.test_frac, p.seed
    )
    by_subject = dict(zip(subjects, split.tolist()))
    return {r: by_subject[subject_of(r)] for r in records}, rejected


def build_mitdb_table(raw_dir: Path, p: MitdbParquetParams) -> tuple[pa.Table, dict[str, Any]]:
    """Windows table + metadata (``rejected`` included) for the WFDB records under ``raw_dir``."""
    raw_dir = Path(raw_dir)
    files = record_files(raw_dir)
    rejected: list[dict[str, Any]] = []
    for rid in sorted(files):
        missing = [e for e in EXTENSIONS if e not in files[rid]]
        if missing:
            reason = f"record {rid}: {' and '.join(missing)} missing from the folder"
            rejected.append({"record_id": rid, "reason": reason})
    present = [r for r in sorted(files) if all(e in files[r] for e in EXTENSIONS)]
    excluded = [r for r in present if r in p.exclude_records]
    candidates = [r for r in present if r not in p.exclude_records]
    n_candidates = len(candidates) + len(rejected)
    if not candidates:
        raise DataError(
            f"{raw_dir}: no complete MIT-BIH record (.hea + .dat + .atr) outside exclude_records {p.exclude_records}"
        )
    splits, out_of_protocol = record_splits(candidates, p)
    rejected += out_of_protocol
    tables: list[pa.Table] = []
    skipped_per_record: dict[str, dict[str, int]] = {}
    for rid in candidates:
        if rid not in splits:
            continue
        try:
            signal, fs = read_record(raw_dir, rid, p.leads, p.target_fs, p.flat_std_mv)
            samples, symbols = read_beats(raw_dir, rid)
            windows, labels, peaks, ann_idx, skipped, unknown = beat_windows(
                signal, samples, symbols, p.target_fs / fs, p.before, p.after
            )
            if not len(labels):
                raise DataError(
                    f"record {rid}: no usable beat window ({len(symbols)} annotations; skipped {dict(skipped)})"
                )
        except DataError as exc:
            rejected.append({"record_id": rid, "reason": str(exc)})
            continue
        skipped_per_record[rid] = dict(skipped)
        if unknown["symbols"]:
            n = sum(unknown["symbols"].values())
            rejected.append(
                {
                    "record_id": rid,
                    "reason": f"record {rid}.atr: unknown annotation symbol(s) {unknown['symbols']} (first at sample "
                    f"{unknown['first_sample']}): {n} beat(s) skipped, record kept",
                    "record_kept": True,
                    "n_beats_skipped": n,
                }
            )
        kept_symbols = [symbols[i] for i in ann_idx]
        tables.append(_record_table(rid, splits[rid], windows, labels, peaks, ann_idx, kept_symbols, p))
    kept = len(tables)
    keep = kept / max(n_candidates, 1)
    if keep < p.min_keep_fraction or not tables:
        whole = [r for r in rejected if not r.get("record_kept")]
        raise DataError(
            f"{raw_dir}: only {kept} of {n_candidates} records usable ({keep:.1%} < "
            f"mitdb.parquet.min_keep_fraction {p.min_keep_fraction:.0%}); {len(whole)} rejected, first: {whole[:3]}"
        )
    rejected.sort(key=lambda r: r["record_id"])
    if rejected:
        logger.warning("mitdb: %d rejection(s) (see rejected.json)", len(rejected))
    table = pa.concat_tables(tables)
    return table, _metadata(table, p, kept, n_candidates, excluded, skipped_per_record, rejected)


def _record_table(
    rid: str,
    split: str,
    windows: np.ndarray,
    labels: np.ndarray,
    peaks: np.ndarray,
    ann_idx: np.ndarray,
    symbols: list[str],
    p: MitdbParquetParams,
) -> pa.Table:
    k = len(labels)
    return windows_frame(
        windows,
        window_id=[f"{rid}_{i:06d}" for i in ann_idx],
        record_id=np.full(k, rid),
        subject_id=np.full(k, subject_of(rid)),
        split=np.full(k, split),
        label=labels,
        label_name=np.asarray(CLASSES)[labels],
        fs=p.target_fs,
        extra={"r_peak": peaks, "symbol": np.asarray(symbols, dtype=str)},
    )


def _metadata(
    table: pa.Table,
    p: MitdbParquetParams,
    kept: int,
    candidates: int,
    excluded: list[str],
    skipped: dict[str, dict[str, int]],
    rejected: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "dataset": "mitdb",
        "dataset_version": DATASET_VERSION,
        "tasks": {"aami": {"column": "label", "classes": list(CLASSES)}},
        "class_descriptions": CLASS_DESCRIPTIONS,
        "aami_mapping": AAMI,
        "protocol": p.protocol,
        "protocol_note": (
            "de Chazal 2004 inter-patient: test = DS2, train/val = DS1 split by record"
            if p.protocol == "inter_patient"
            else "subjects drawn at random into train/val/test"
        ),
        "group": "record_id" if p.protocol == "inter_patient" else "subject_id",
        "seed": p.seed,
        "val_frac": p.val_frac,
        "test_frac": p.test_frac if p.protocol == "grouped" else None,
        "window": p.before + p.after,
        "before": p.before,
        "after": p.after,
        "fs": p.target_fs,
        "channels": p.leads,
        "units": "mV",
        "excluded_records": excluded,
        "n_records": kept,
        "n_candidate_records": candidates,
        "n_windows": table.num_rows,
        "beats_skipped": skipped,
        "subject_id_note": "subject_id = record_id, except 202 -> 201 (same subject); DS1/DS2 share that subject",
        "rejected": rejected,
    }


register(
    Dataset(
        name="mitdb",
        description="PhysioNet MIT-BIH Arrhythmia ECG, beat-centred windows, AAMI N/S/V/F/Q",
        settings=MitdbParams,
        fetch=fetch,
        table=table,
    )
)
