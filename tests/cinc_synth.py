"""Synthetic CinC-2017-shaped archives for tests: real WFDB header + MATLAB v4 layout.

Records are written with ``scipy.io.savemat(format="4")`` and a hand-written
``.hea`` like the PhysioNet ones (``A00001.mat 16+24 1000/mV 16 0 <init> 0 0
ECG``), so the tests exercise the same reader as the real archive.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from scipy.io import savemat

FS = 300


def ecg_like(n: int, rng: np.random.Generator, fs: int = FS) -> np.ndarray:
    """int16 digital samples (gain 1000/mV): a ~1 mV spike train at ~70 bpm plus noise."""
    t = np.arange(n) / fs
    beat = np.exp(-(((t * 1.17) % 1.0 - 0.5) ** 2) / 0.0005)
    return np.round(1000 * (beat + 0.05 * rng.standard_normal(n))).astype(np.int16)


def mat_bytes(val: np.ndarray) -> bytes:
    """A MATLAB v4 file holding ``val`` (1 × n), as the challenge ships it."""
    buf = io.BytesIO()
    savemat(buf, {"val": np.atleast_2d(val)}, format="4")
    return buf.getvalue()


def hea_text(rid: str, n: int, init: int, fs: int = FS, desc: str = "ECG") -> str:
    return f"{rid} 1 {fs} {n} 05:05:15 1/05/2000\n{rid}.mat 16+24 1000/mV 16 0 {init} 0 0 {desc}\n"


def write_archive(
    path: Path,
    records: dict[str, tuple[str | None, bytes | None, str | None]],
    extra_labels: dict[str, str] | None = None,
) -> Path:
    """Write ``training2017.zip``: ``{rid: (label, mat bytes, hea text)}``; None leaves a piece out."""
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = {rid: lab for rid, (lab, _, _) in records.items() if lab is not None} | (extra_labels or {})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for rid, (_, mat, hea) in sorted(records.items()):
            if hea is not None:
                zf.writestr(f"training2017/{rid}.hea", hea)
            if mat is not None:
                zf.writestr(f"training2017/{rid}.mat", mat)
        zf.writestr("training2017/REFERENCE.csv", "".join(f"{r},{lab}\r\n" for r, lab in sorted(labels.items())))
        zf.writestr("training2017/RECORDS", "".join(f"{r}\n" for r in sorted(records)))
    return path


def good_records(
    n_records: int, seed: int = 0, length: int = 4500
) -> dict[str, tuple[str | None, bytes | None, str | None]]:
    """``n_records`` valid records with labels cycling N, N, O, A (every class but ~ present)."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(1, n_records + 1):
        rid = f"A{i:05d}"
        val = ecg_like(length, rng)
        out[rid] = ("NNOA"[i % 4], mat_bytes(val), hea_text(rid, length, int(val[0])))
    return out


def tiny_mirror(folder: Path, n_records: int = 40, seed: int = 0) -> Path:
    """``folder/cinc2017/training2017.zip`` with good records only; returns ``folder``."""
    write_archive(folder / "cinc2017" / "training2017.zip", good_records(n_records, seed))
    return folder
