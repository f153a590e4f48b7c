"""Tiny MIT-BIH-shaped WFDB records for tests, written with ``wfdb.wrsamp``/``wrann``.

Like the real database: two leads (``MLII`` + ``V1``/``V5``), format 212,
360 Hz, a ``.atr`` reference annotation file with beat symbols and a few
non-beat codes (``+`` rhythm change, ``~`` noise).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

FS = 360
#: beat symbols cycled over the beats: every AAMI class appears (N, S, V, F, Q) plus L/R (-> N)
CYCLE = "NNLAVFN/RN"


def ecg(n: int, peaks: np.ndarray, rng: np.random.Generator, amp: float = 1.0) -> np.ndarray:
    """mV: narrow Gaussian spikes at ``peaks`` plus a little noise."""
    t = np.arange(n)
    x = 0.05 * rng.standard_normal(n)
    for p in peaks:
        x += amp * np.exp(-((t - p) ** 2) / 50.0)
    return x


def write_record(
    folder: Path,
    rid: str,
    rng: np.random.Generator,
    seconds: float = 20.0,
    fs: int = FS,
    leads: tuple[str, str] = ("MLII", "V1"),
    symbols: list[str] | None = None,
    custom: dict[str, str] | None = None,
) -> tuple[np.ndarray, list[str]]:
    """``<rid>.hea/.dat/.atr``; returns the annotation (samples, symbols) written.

    Beats every 0.8 s from 0.1 s (the first is too close to the start for a
    0.25 s pre-window), with ``+`` and ``~`` non-beat codes in between.
    ``custom`` maps extra symbols (e.g. ``{"Z": "unknown"}``) to
    descriptions, written as WFDB custom labels so they survive the round trip.
    """
    folder.mkdir(parents=True, exist_ok=True)
    n = int(seconds * fs)
    peaks = np.arange(int(0.1 * fs), n, int(0.8 * fs))
    # MLII ~1 mV spikes, other leads ~0.5 mV, so a test can tell which lead was picked
    sig = np.stack([ecg(n, peaks, rng, amp=1.0 if name == "MLII" else 0.5) for name in leads], axis=1)
    wfdb_write(folder, rid, fs, list(leads), sig)
    beat_syms = symbols if symbols is not None else [CYCLE[i % len(CYCLE)] for i in range(len(peaks))]
    samples = list(peaks[: len(beat_syms)]) + [int(peaks[1] + 40), int(peaks[3] + 40)]
    syms = list(beat_syms) + ["+", "~"]
    order = np.argsort(samples, kind="stable")
    samples_arr = np.asarray(samples)[order]
    syms = [syms[i] for i in order]
    import wfdb

    kw = {}
    if custom:
        kw["custom_labels"] = pd.DataFrame(
            {
                "label_store": list(range(42, 42 + len(custom))),
                "symbol": list(custom),
                "description": list(custom.values()),
            }
        )
    wfdb.wrann(rid, "atr", samples_arr, symbol=syms, write_dir=str(folder), **kw)
    return samples_arr, syms


def wfdb_write(folder: Path, rid: str, fs: float, leads: list[str], sig: np.ndarray) -> None:
    import wfdb

    wfdb.wrsamp(
        rid,
        fs=fs,
        units=["mV"] * len(leads),
        sig_name=leads,
        p_signal=sig,
        fmt=["212"] * len(leads),
        adc_gain=[200.0] * len(leads),
        baseline=[1024] * len(leads),
        write_dir=str(folder),
    )


def tiny_mirror(
    folder: Path, records: tuple[str, ...] = ("101", "106", "108", "109", "100", "103"), seed: int = 0
) -> Path:
    """``folder/mitdb/`` with good records (DS1: 101 106 108 109, DS2: 100 103); returns ``folder``."""
    rng = np.random.default_rng(seed)
    for rid in records:
        write_record(folder / "mitdb", rid, rng)
    return folder
