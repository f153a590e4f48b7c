"""Shared pytest fixtures. Each fixture is self-contained; add new ones below."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

# --- tiny_bonn_mirror (owner: data layer, epilepsy) -------------------------
TINY_BONN_SEGMENTS = 3
TINY_BONN_SAMPLES = 4097


@pytest.fixture
def tiny_bonn_mirror(tmp_path: Path) -> Path:
    """A ``bonn-eeg`` folder with Z/O/N/F/S.zip in the real layout, 3 segments each.

    Like the real zips: flat members ``Z001.txt`` (set N upper-case
    ``N001.TXT``), 4097 integer samples, one per line, CRLF. Set S has a
    larger amplitude, as seizure EEG does. Returns ``<tmp>/mirror/bonn-eeg``
    (its parent is also a valid mirror argument).
    """
    folder = tmp_path / "mirror" / "bonn-eeg"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k, letter in enumerate("ZONFS"):
        scale = 400 if letter == "S" else 60
        ext = ".TXT" if letter == "N" else ".txt"
        with zipfile.ZipFile(folder / f"{letter}.zip", "w", zipfile.ZIP_DEFLATED) as zf:
            for i in range(1, TINY_BONN_SEGMENTS + 1):
                values = np.round(rng.normal(10 * k, scale, TINY_BONN_SAMPLES)).astype(int)
                zf.writestr(f"{letter}{i:03d}{ext}", "\r\n".join(map(str, values)) + "\r\n")
    return folder
