"""Tiny Sleep-EDF-shaped files for tests: a PSG EDF and an EDF+ hypnogram.

Neither ``edfio`` (what ``mne.export`` needs) nor ``pyedflib`` is installed in
this venv, so this is a minimal writer of the EDF / EDF+ layout (256-byte
header + 256 bytes per signal, int16 little-endian data records; the
hypnogram's annotations as EDF+ TALs in an ``EDF Annotations`` signal), the
same layout PhysioNet's ``SC4001E0-PSG.edf`` / ``SC4001EC-Hypnogram.edf``
use. MNE reads these with the very reader the pipeline uses on real files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FS = 100
EPOCH_S = 30
STAGE = {
    "W": "Sleep stage W",
    "1": "Sleep stage 1",
    "2": "Sleep stage 2",
    "3": "Sleep stage 3",
    "4": "Sleep stage 4",
    "R": "Sleep stage R",
    "?": "Sleep stage ?",
    "M": "Movement time",
}


def _field(value: object, width: int) -> bytes:
    text = str(value)
    if len(text) > width:
        text = text[:width]
    return text.ljust(width).encode("ascii")


def _num(value: float, width: int = 8) -> bytes:
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return _field(text[:width], width)


def _header(n_records: int, duration: float, signals: list[dict], edf_plus: bool) -> bytes:
    ns = len(signals)
    out = _field("0", 8) + _field("X X X X", 80) + _field("Startdate 24-APR-1989 X X X", 80)
    out += _field("24.04.89", 8) + _field("16.13.00", 8) + _num(256 * (ns + 1))
    out += _field("EDF+C" if edf_plus else "", 44) + _num(n_records) + _num(duration) + _field(ns, 4)
    for key, width in (
        ("label", 16),
        ("transducer", 80),
        ("unit", 8),
        ("pmin", 8),
        ("pmax", 8),
        ("dmin", 8),
        ("dmax", 8),
        ("prefilter", 80),
        ("n", 8),
        ("reserved", 32),
    ):
        for s in signals:
            out += _num(s[key], width) if isinstance(s[key], (int, float)) else _field(s[key], width)
    return out


def write_psg(path: Path, channels: dict[str, np.ndarray], fs: float = FS, record_s: int = EPOCH_S) -> Path:
    """EDF with one signal per ``channels`` item (µV, same rate ``fs``), data records of ``record_s`` s.

    Signals are cut to whole data records (EDF has no partial record).
    """
    n_per = int(round(fs * record_s))
    length = min(len(v) for v in channels.values())
    n_records = length // n_per
    signals, digital = [], []
    for name, x in channels.items():
        x = np.asarray(x, dtype=np.float64)[: n_records * n_per]
        pmax = float(np.ceil(np.abs(x).max() + 1.0))
        signals.append(
            {
                "label": name,
                "transducer": "Ag-AgCl electrodes",
                "unit": "uV",
                "pmin": -pmax,
                "pmax": pmax,
                "dmin": -32768,
                "dmax": 32767,
                "prefilter": "HP:0.5Hz",
                "n": n_per,
                "reserved": "",
            }
        )
        digital.append(np.round((x + pmax) / (2 * pmax) * 65535 - 32768).astype("<i2"))
    body = b"".join(d[r * n_per : (r + 1) * n_per].tobytes() for r in range(n_records) for d in digital)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_header(n_records, float(record_s), signals, edf_plus=False) + body)
    return path


def write_hypnogram(path: Path, stages: list[tuple[float, float, str]]) -> Path:
    """EDF+ annotations file: ``stages`` = (onset s, duration s, description) as in Sleep-EDF."""
    tals = b"+0\x14\x14\x00"  # time-keeping TAL of the one data record
    for onset, duration, desc in stages:
        tals += f"+{onset:g}\x15{duration:g}\x14{desc}\x14\x00".encode("latin-1")
    n_bytes = len(tals) + (-len(tals)) % 2
    tals = tals.ljust(n_bytes, b"\x00")
    sig = {
        "label": "EDF Annotations",
        "transducer": "",
        "unit": "",
        "pmin": -1,
        "pmax": 1,
        "dmin": -32768,
        "dmax": 32767,
        "prefilter": "",
        "n": n_bytes // 2,
        "reserved": "",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_header(1, 0, [sig], edf_plus=True) + tals)
    return path


def runs(labels: str, epoch_s: int = EPOCH_S) -> list[tuple[float, float, str]]:
    """Hypnogram annotations from one character per epoch (``W1234R?M``), merged into runs."""
    out: list[tuple[float, float, str]] = []
    i = 0
    while i < len(labels):
        j = i
        while j < len(labels) and labels[j] == labels[i]:
            j += 1
        out.append((i * epoch_s, (j - i) * epoch_s, STAGE[labels[i]]))
        i = j
    return out


def eeg_like(n: int, rng: np.random.Generator, fs: float = FS, amp: float = 30.0) -> np.ndarray:
    """µV noise with a 10 Hz rhythm, so every epoch has signal (no flat line)."""
    t = np.arange(n) / fs
    return amp * np.sin(2 * np.pi * 10 * t) + amp * 0.5 * rng.standard_normal(n)


def write_recording(
    folder: Path,
    subject: int,
    night: int,
    labels: str,
    rng: np.random.Generator,
    channels: tuple[str, ...] = ("EEG Fpz-Cz", "EEG Pz-Oz"),
    fs: float = FS,
    hyp_letter: str = "C",
    hypnogram: list[tuple[float, float, str]] | None = None,
) -> tuple[Path, Path]:
    """``SC4<ss><n>E0-PSG.edf`` + ``SC4<ss><n>E<letter>-Hypnogram.edf`` with one epoch per label."""
    n = int(len(labels) * EPOCH_S * fs)
    stem = f"SC4{subject:02d}{night}"
    psg = write_psg(folder / f"{stem}E0-PSG.edf", {c: eeg_like(n, rng, fs) for c in channels}, fs=fs)
    hyp = write_hypnogram(
        folder / f"{stem}E{hyp_letter}-Hypnogram.edf", hypnogram if hypnogram is not None else runs(labels)
    )
    return psg, hyp
