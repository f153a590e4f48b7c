"""The real CinC 2017 reader on the first 300 records of the mirror (read from the zip).

The full-size run (8,528 records) is a benchmark (bench/bench_cinc2017.py),
not a test. Skipped with a message where ../shared/data/cinc2017 is absent.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.settings import section
from trls_core.data.parquet import signals_array
from trls_core.data.wfdb_mat import parse_header
from trls_core.datasets.cinc2017 import build_cinc2017_table
from trls_core.datasets.cinc2017.source import fetch_cinc2017

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("TRLS_SHARED_DATA", ROOT.parent / "shared" / "data"))
MIRROR_ZIP = SHARED / "cinc2017" / "training2017.zip"
N = 300

pytestmark = [pytest.mark.realdata]


@pytest.fixture(scope="module")
def subset_mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not MIRROR_ZIP.is_file():
        pytest.skip(f"{MIRROR_ZIP} absent: the CinC 2017 mirror is needed for the real-reader test")
    out = tmp_path_factory.mktemp("cinc_real")
    with zipfile.ZipFile(MIRROR_ZIP) as src, zipfile.ZipFile(out / "training2017.zip", "w") as dst:
        ref = src.read("training2017/REFERENCE.csv").decode().splitlines()[:N]
        ids = [line.split(",")[0] for line in ref]
        for rid in ids:
            for ext in ("hea", "mat"):
                info = src.getinfo(f"training2017/{rid}.{ext}")
                dst.writestr(info, src.read(info))  # same bytes, same compression
        dst.writestr("training2017/REFERENCE.csv", "\r\n".join(ref) + "\r\n")
        dst.writestr("training2017/RECORDS", "\n".join(ids) + "\n")
    return out


def test_real_records_read_windowed_and_labelled(subset_mirror: Path, tmp_path: Path) -> None:
    manifest = fetch_cinc2017(tmp_path / "raw", subset_mirror, url="unused", expected_records=N)
    assert manifest["n_records"] == N and set(manifest["label_counts"]) <= {"N", "A", "O", "~"}
    table, meta = build_cinc2017_table(
        tmp_path / "raw" / "training2017.zip", section("cinc2017.parquet", pad="drop", target_fs=300.0)
    )
    assert meta["rejected"] == [] and meta["n_records"] == N

    with zipfile.ZipFile(MIRROR_ZIP) as z:
        headers = {
            rid: parse_header(z.read(f"training2017/{rid}.hea").decode(), rid)
            for rid in sorted(set(table["record_id"].to_pylist()))
        }
    assert {h.fs for h in headers.values()} == {300.0}
    expected_windows = sum(h.n_samples // 1500 for h in headers.values())
    assert table.num_rows == expected_windows

    x = signals_array(table)
    # gain applied: ECG in mV (QRS ~0.5-3 mV), not ADC units (~1000x larger)
    assert 0.05 < float(np.median(np.abs(x).max(axis=-1))) < 10
    label_of = dict(zip(table["record_id"].to_pylist(), table["label_name"].to_pylist()))
    with zipfile.ZipFile(MIRROR_ZIP) as z:
        ref = dict(line.split(",") for line in z.read("training2017/REFERENCE.csv").decode().split())
    assert all(ref[r] == lab for r, lab in label_of.items())
