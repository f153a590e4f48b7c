"""PhysioNet Sleep-EDF (sleep-cassette) EEG: the ``sleepedf`` dataset plugin.

30 s epochs of the EEG at 100 Hz, labelled W/N1/N2/N3/REM from the
hypnogram (task ``stage``), split by subject. The source (fetch, file names)
is :mod:`trls_core.datasets.sleepedf.source`. Building the windows table:
- Splits are drawn over *subjects* from the file names before any signal
  is read (seeded, ``val_frac``/``test_frac`` of the subjects), so both
  nights of a person stay in one split and a rejected night never moves
  anyone else.
- EDF and hypnogram are read with MNE (the reader PhysioNet's files are
  tested against); channels are picked by name, resampled to ``target_fs``
  where the file's rate differs.
- A bad night (missing channel or hypnogram, a hypnogram that does not
  cover the recording or names an unknown stage, NaN/flat signal) is
  skipped with its reason; the build fails only when fewer than
  ``min_keep_fraction`` of the nights remain.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import Field, field_validator

from trls_core.data.parquet import windows_frame
from trls_core.data.wfdb_mat import check_signal, resample
from trls_core.data.windows import assign_splits
from trls_core.datasets.registry import Dataset, DatasetSettings, data_mirror, register
from trls_core.datasets.sleepedf.source import (
    CLASSES,
    DATASET_VERSION,
    DROPPED,
    STAGE_MAP,
    Night,
    fetch_sleepedf,
    pair_files,
)
from trls_core.errors import DataError
from trls_core.settings.base import SpectrogramParams, SplitFractions, Strict

__all__ = ["SleepEdfFetchParams", "SleepEdfParams", "SleepEdfParquetParams", "build_sleepedf_table"]

logger = logging.getLogger(__name__)
UNLABELLED = -1


class SleepEdfFetchParams(Strict):
    """Which Sleep-EDF (sleep-cassette) recordings to fetch, and from where.

    ``subjects``/``recordings`` are MNE's ``sleep_physionet.age.fetch_data``
    arguments (subjects 0..82, nights 1 and 2; a few nights do not exist and
    are listed as missing in the manifest). ``mirror`` is a folder holding
    ``sleep-edfx/`` with the PhysioNet file names; without one the files are
    downloaded through MNE (needs internet). ``TRLS_DATA_MIRROR`` overrides it.
    """

    mirror: str | None
    subjects: list[int]
    recordings: list[int]
    timeout_s: float = Field(gt=0)  # reachability check before downloading

    @field_validator("subjects", "recordings")
    @classmethod
    def _non_empty(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("at least one value is required")
        return v


class SleepEdfParquetParams(SplitFractions):
    """30 s epochs of the EEG, labelled from the hypnogram, split by subject.

    ``epoch_s`` × ``target_fs`` samples per window (3000 at 100 Hz). Stages
    W/N1/N2/N3/REM (Rechtschaffen & Kales 3 and 4 merged into N3);
    ``Sleep stage ?`` and ``Movement time`` epochs are dropped.
    ``trim_wake_min``: keep at most this many minutes of wake before the
    first and after the last sleep epoch (None keeps all). A recording is
    rejected when its hypnogram covers less than ``min_hypnogram_coverage``
    of its epochs; the stage fails when fewer than ``min_keep_fraction`` of
    the recordings survive.
    """

    channels: list[str]
    target_fs: float = Field(gt=0)
    epoch_s: float = Field(gt=0)
    trim_wake_min: float | None = Field(ge=0)
    min_hypnogram_coverage: float = Field(ge=0, le=1)
    val_frac: float = Field(gt=0, lt=1)
    test_frac: float = Field(gt=0, lt=1)
    seed: int
    flat_std_uv: float = Field(ge=0)
    min_keep_fraction: float = Field(ge=0, le=1)


class SleepEdfParams(DatasetSettings):
    """Section ``sleepedf`` of params.yaml."""

    fetch: SleepEdfFetchParams
    parquet: SleepEdfParquetParams
    spectrogram: SpectrogramParams


def fetch(dest: Path, section: SleepEdfParams) -> dict[str, Any]:
    f = section.fetch
    return fetch_sleepedf(
        dest, mirror=data_mirror(f), subjects=f.subjects, recordings=f.recordings, timeout=f.timeout_s
    )


def table(raw_dir: Path, section: SleepEdfParams) -> tuple[pa.Table, dict[str, Any]]:
    return build_sleepedf_table(raw_dir, section.parquet)


def read_psg(path: Path, channels: list[str], target_fs: float, flat_std_uv: float) -> tuple[np.ndarray, Any]:
    """The ``channels`` of a PSG EDF in µV at ``target_fs``, (C, L) float32, and its start time."""
    import mne

    try:
        header = mne.io.read_raw_edf(path, preload=False, verbose="error")
        missing = [c for c in channels if c not in header.ch_names]
        if missing:
            raise DataError(f"{path.name}: channel(s) {missing} not in the record (channels: {header.ch_names})")
        # `include` (a header-only re-read) keeps MNE from upsampling the picked channels to the
        # rate of some other channel of the file; `include` silently skips absent names, hence the check.
        raw = mne.io.read_raw_edf(path, include=channels, preload=False, verbose="error")
        x = raw.get_data(picks=channels, units="uV").astype(np.float32)
    except DataError:
        raise
    except Exception as exc:  # MNE raises ValueError/RuntimeError/OSError on a bad EDF
        raise DataError(f"{path.name}: not a readable EDF ({type(exc).__name__}: {exc})") from None
    check_signal(x, flat_std_uv, path.name)
    return resample(x, float(raw.info["sfreq"]), target_fs), raw.info["meas_date"]


def epoch_labels(path: Path, n_epochs: int, epoch_s: float, min_coverage: float, psg_start: Any = None) -> np.ndarray:
    """Class index per epoch of the PSG (``UNLABELLED`` for ``?``/movement/unscored).

    Sleep-EDF hypnograms start at the PSG start (same EDF start time) and
    usually run past its end; the part past the signal is ignored. Where
    both files carry a start time, onsets are shifted to the PSG's. Fails on
    an unknown description, a stage annotation off the epoch grid, or coverage below
    ``min_coverage`` (the hypnogram, ``?``/movement included, must span
    that fraction of the recording's epochs).
    """
    import mne

    try:
        ann = mne.read_annotations(path)
    except Exception as exc:
        raise DataError(f"{path.name}: not a readable EDF+ hypnogram ({type(exc).__name__}: {exc})") from None
    labels = np.full(n_epochs, UNLABELLED, dtype=np.int64)
    covered = np.zeros(n_epochs, dtype=bool)
    shift = 0.0
    if ann.orig_time is not None and psg_start is not None:
        shift = (ann.orig_time - psg_start).total_seconds()
    for onset, duration, desc in zip(ann.onset + shift, ann.duration, ann.description):
        if desc in STAGE_MAP:
            value = CLASSES.index(STAGE_MAP[desc])
        elif desc in DROPPED:
            value = UNLABELLED
        else:
            raise DataError(
                f"{path.name}: unknown annotation {desc!r} at onset {onset:g} s "
                f"(expected one of {sorted(STAGE_MAP) + sorted(DROPPED)})"
            )
        first, stop = onset / epoch_s, (onset + duration) / epoch_s
        off_grid = abs(first - round(first)) > 1e-6 or abs(stop - round(stop)) > 1e-6
        if off_grid and value != UNLABELLED:  # a stage off the grid means another epoch length: not guessed
            raise DataError(
                f"{path.name}: annotation {desc!r} at onset {onset:g} s, duration {duration:g} s "
                f"is not on the {epoch_s:g} s epoch grid"
            )
        # ?/movement: every epoch it touches counts as covered and unlabelled
        lo, hi = max(int(np.floor(first + 1e-6)), 0), min(int(np.ceil(stop - 1e-6)), n_epochs)
        labels[lo:hi] = value
        covered[lo:hi] = True
    coverage = float(covered.mean()) if n_epochs else 0.0
    if coverage < min_coverage:
        raise DataError(
            f"{path.name}: hypnogram does not cover the recording ({covered.sum()} of {n_epochs} "
            f"epochs, {coverage:.0%} < sleepedf.parquet.min_hypnogram_coverage {min_coverage:.0%})"
        )
    return labels


def trim_wake(labels: np.ndarray, epoch_s: float, keep_min: float | None, where: str) -> np.ndarray:
    """Mask of epochs to keep: labelled ones, wake limited to ``keep_min`` minutes around sleep."""
    keep = labels != UNLABELLED
    if keep_min is None:
        return keep
    sleep = np.flatnonzero(keep & (labels != CLASSES.index("W")))
    if sleep.size == 0:
        raise DataError(f"{where}: no sleep epoch scored (only wake/unscored), nothing left after trim_wake_min")
    margin = int(round(keep_min * 60 / epoch_s))
    idx = np.arange(labels.size)
    return keep & (idx >= sleep[0] - margin) & (idx <= sleep[-1] + margin)


def load_night(night: Night, p: SleepEdfParquetParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(windows (K, C, epoch), labels (K,), epoch index (K,)) of one night."""
    if night.psg is None:
        hyp = night.hypnogram.name if night.hypnogram else "?"
        raise DataError(f"night {night.record_id}: hypnogram {hyp} has no PSG file (missing from the folder)")
    if night.hypnogram is None:
        raise DataError(f"{night.psg.name}: no hypnogram file for night {night.record_id} (missing from the folder)")
    signal, start = read_psg(night.psg, p.channels, p.target_fs, p.flat_std_uv)
    n = int(round(p.epoch_s * p.target_fs))
    n_epochs = signal.shape[1] // n
    if n_epochs == 0:
        raise DataError(f"{night.psg.name}: shorter than one window ({signal.shape[1]} samples < {n})")
    labels = epoch_labels(night.hypnogram, n_epochs, p.epoch_s, p.min_hypnogram_coverage, start)
    idx = np.flatnonzero(trim_wake(labels, p.epoch_s, p.trim_wake_min, night.hypnogram.name))
    if idx.size == 0:
        raise DataError(f"{night.hypnogram.name}: no scored W/N1/N2/N3/REM epoch")
    windows = signal[:, : n_epochs * n].reshape(signal.shape[0], n_epochs, n).transpose(1, 0, 2)[idx]
    return np.ascontiguousarray(windows, dtype=np.float32), labels[idx], idx


def subject_splits(subjects: list[str], p: SleepEdfParquetParams) -> dict[str, str]:
    """Seeded split of the subjects (``val_frac``/``test_frac`` of them), from names only."""
    uniq = np.asarray(sorted(set(subjects)))
    split = assign_splits(np.zeros(uniq.size, dtype=np.int64), uniq, "grouped", p.val_frac, p.test_frac, p.seed)
    return dict(zip(uniq.tolist(), split.tolist()))


def build_sleepedf_table(raw_dir: Path, p: SleepEdfParquetParams) -> tuple[pa.Table, dict[str, Any]]:
    """Windows table + metadata (``rejected`` included) for the nights under ``raw_dir``."""
    nights = pair_files(Path(raw_dir))
    if not nights:
        raise DataError(f"{raw_dir}: no Sleep-EDF file (SC4ssN*-PSG.edf / -Hypnogram.edf)")
    splits = subject_splits([n.subject_id for n in nights], p)
    tables: list[pa.Table] = []
    rejected: list[dict[str, str]] = []
    for night in nights:
        try:
            windows, labels, epoch = load_night(night, p)
        except DataError as exc:
            rejected.append({"record_id": night.record_id, "reason": str(exc)})
            continue
        tables.append(_night_table(night, splits[night.subject_id], windows, labels, epoch, p))
    kept = len(tables)
    keep = kept / len(nights)
    if keep < p.min_keep_fraction or not tables:
        raise DataError(
            f"{raw_dir}: only {kept} of {len(nights)} nights usable ({keep:.1%} < "
            f"sleepedf.parquet.min_keep_fraction {p.min_keep_fraction:.0%}); {len(rejected)} rejected, "
            f"first: {rejected[:3]}"
        )
    if rejected:
        logger.warning("sleepedf: %d night(s) rejected (see rejected.json)", len(rejected))
    table = pa.concat_tables(tables)
    return table, _metadata(table, p, kept, len(nights), rejected)


def _night_table(
    night: Night, split: str, windows: np.ndarray, labels: np.ndarray, epoch: np.ndarray, p: SleepEdfParquetParams
) -> pa.Table:
    k = len(labels)
    n = int(round(p.epoch_s * p.target_fs))
    return windows_frame(
        windows,
        window_id=[f"{night.record_id}_{e:04d}" for e in epoch],
        record_id=np.full(k, night.record_id),
        subject_id=np.full(k, night.subject_id),
        split=np.full(k, split),
        label=labels,
        label_name=np.asarray(CLASSES)[labels],
        fs=p.target_fs,
        extra={"epoch": epoch.astype(np.int64), "start": (epoch * n).astype(np.int64)},
    )


def _metadata(
    table: pa.Table, p: SleepEdfParquetParams, kept: int, candidates: int, rejected: list[dict[str, str]]
) -> dict[str, Any]:
    return {
        "dataset": "sleepedf",
        "dataset_version": DATASET_VERSION,
        "tasks": {"stage": {"column": "label", "classes": list(CLASSES)}},
        "label_mapping": {**STAGE_MAP, **{d: None for d in sorted(DROPPED)}},
        "protocol": "grouped",
        "group": "subject_id",
        "seed": p.seed,
        "val_frac": p.val_frac,
        "test_frac": p.test_frac,
        "window": int(round(p.epoch_s * p.target_fs)),
        "stride": int(round(p.epoch_s * p.target_fs)),
        "epoch_s": p.epoch_s,
        "trim_wake_min": p.trim_wake_min,
        "fs": p.target_fs,
        "channels": p.channels,
        "units": "uV",
        "n_records": kept,
        "n_candidate_records": candidates,
        "n_windows": table.num_rows,
        "subject_id_note": "subject_id = study + subject digits of the file name (SC4ss); record_id = night (SC4ssN)",
        "rejected": rejected,
    }


register(
    Dataset(
        name="sleepedf",
        description="PhysioNet Sleep-EDF (sleep-cassette) EEG, 30 s epochs, W/N1/N2/N3/REM",
        settings=SleepEdfParams,
        fetch=fetch,
        table=table,
    )
)
