"""Bad input at the stage level: one clear line naming file/key, exit 2, nothing half-written."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import yaml

from trls_core.config import load_params
from trls_core.data.parquet import read_windows, write_windows
from trls_core.errors import DataError
from trls_core.paths import parquet_file, spectrogram_dir
from trls_core.stages._common import run_stage
from trls_core.stages.fetch import fetch
from trls_core.stages.spectrogram import build_spectrograms


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_unknown_dataset_names_the_known_ones(tiny_params: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = run_stage("fetch", fetch, ["sleep-cassette", "--params", str(tiny_params)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'sleep-cassette'" in err and "epilepsy" in err


def test_params_typo_fails_the_stage(tmp_path: Path, tiny_params: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = yaml.safe_load(tiny_params.read_text())
    raw["epilepsy"]["spectrogram"]["hopp"] = 4
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    assert run_stage("spectrogram", build_spectrograms, ["epilepsy", "--params", str(bad)]) == 2
    assert "epilepsy.spectrogram.hopp: unknown key" in capsys.readouterr().err


def test_missing_mirror_set_leaves_raw_untouched(
    tiny_bonn_mirror: Path,
    tmp_path: Path,
    tiny_params: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    raw = tmp_path / "proj" / "data" / "raw" / "epilepsy"
    raw.mkdir(parents=True)
    (raw / "previous.txt").write_text("good earlier fetch")
    (tiny_bonn_mirror / "F.zip").unlink()
    monkeypatch.setenv("TRLS_DATA_MIRROR", str(tiny_bonn_mirror.parent))
    rc = run_stage("fetch", fetch, ["epilepsy", "--params", str(tiny_params), "--root", str(tmp_path / "proj")])
    assert rc == 2
    assert "F.zip" in capsys.readouterr().err
    assert [p.name for p in raw.iterdir()] == ["previous.txt"]


def test_nan_window_fails_and_keeps_previous_spectrograms(tiny_project: Path, tiny_params: Path) -> None:
    out = spectrogram_dir(tiny_project, "epilepsy")
    before = _digests(out)
    src = parquet_file(tiny_project, "epilepsy")
    import pyarrow.parquet as pq

    table = pq.read_table(src)
    _, meta = read_windows(src)
    sig = np.array(table.column("signal").combine_chunks().flatten().to_numpy(), dtype=np.float32)
    sig[5] = np.nan
    import pyarrow as pa

    width = table.schema.field("signal").type.list_size
    col = pa.FixedSizeListArray.from_arrays(pa.array(sig, pa.float32()), width)
    table = table.set_column(table.schema.get_field_index("signal"), "signal", col)
    write_windows(table, src, meta)
    bad_id = table.column("window_id")[0].as_py()
    with pytest.raises(DataError, match=rf"windows.parquet: window '{bad_id}' field 'signal' has NaN"):
        build_spectrograms(tiny_project, "epilepsy", load_params(tiny_params))
    assert _digests(out) == before
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp left behind
