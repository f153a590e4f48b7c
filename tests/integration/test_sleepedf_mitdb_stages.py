"""sleepedf and mitdb through the generic stages (fetch -> parquet -> spectrogram) + `trls data describe`.

Tiny synthetic mirrors in the real layouts (``sleep-edfx/`` EDF files,
``mitdb/`` WFDB files) with one bad record each: the stages keep the good
ones, write rejected.json / summary.json, and the spectrogram stage (no
dataset-specific code) writes tensors the training loaders read with the
tasks ``stage`` and ``aami``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from tests.edf_synth import write_recording
from tests.mitdb_synth import tiny_mirror as mitdb_mirror
from tests.mitdb_synth import write_record
from trls_core.cli import app
from trls_core.data.tensors import load_meta, load_split, task_info
from trls_core.paths import parquet_dir, spectrogram_dir
from trls_core.stages._common import run_stage
from trls_core.stages.fetch import fetch
from trls_core.stages.parquet import build_parquet
from trls_core.stages.spectrogram import build_spectrograms

STAGES = (("fetch", fetch), ("parquet", build_parquet), ("spectrogram", build_spectrograms))


def _params(tiny_params: Path, tmp_path: Path, dataset: str, fetch_update: dict) -> Path:
    raw = yaml.safe_load(tiny_params.read_text())
    raw[dataset]["fetch"].update(fetch_update)
    raw[dataset]["parquet"]["min_keep_fraction"] = 0.8  # one bad record of six/eight in these mirrors
    path = tmp_path / f"params_{dataset}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _run_all(dataset: str, params: Path, root: Path) -> None:
    for name, fn in STAGES:
        assert run_stage(name, fn, [dataset, "--params", str(params), "--root", str(root)]) == 0, name


def test_sleepedf_stages_and_describe(tiny_params: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    src = tmp_path / "mirror" / "sleep-edfx"
    for subject in range(5):
        write_recording(src, subject, 1, "WW1122334R?RW", rng)
    write_recording(src, 5, 1, "WW12R", rng, channels=("EEG Pz-Oz",))  # no Fpz-Cz: rejected
    monkeypatch.setenv("TRLS_DATA_MIRROR", str(tmp_path / "mirror"))
    params = _params(tiny_params, tmp_path, "sleepedf", {"subjects": list(range(6)), "recordings": [1]})
    root = tmp_path / "proj"
    _run_all("sleepedf", params, root)

    pdir = parquet_dir(root, "sleepedf")
    rejected = json.loads((pdir / "rejected.json").read_text())
    assert [r["record_id"] for r in rejected] == ["SC4051"]
    summary = json.loads((pdir / "summary.json").read_text())
    assert summary["n_windows"] == 5 * 12 and summary["rejected_by_kind"] == {"missing_channel": 1}
    assert (
        summary["source_content_digest"]
        == json.loads((root / "data/raw/sleepedf/MANIFEST.json").read_text())["content_digest"]
    )
    assert sum(summary["records_per_split"].values()) == 5 and summary["protocol"] == "grouped"

    sdir = spectrogram_dir(root, "sleepedf")
    meta = load_meta(sdir)
    assert task_info(meta, "stage")["classes"] == ["W", "N1", "N2", "N3", "REM"]
    assert meta["shape"] == [1, 101, 31] and meta["fs"] == 100.0
    train = load_split(sdir, "train", "stage")
    assert train.x.shape[1:] == (1, 101, 31) and np.isfinite(train.x.numpy()).all()

    res = CliRunner().invoke(app, ["data", "describe", "sleepedf", "--params", str(params), "--root", str(root)])
    assert res.exit_code == 0, res.output
    assert "task stage: windows per class" in res.output and "SC4051:" in res.output


def test_mitdb_stages_and_describe(tiny_params: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = mitdb_mirror(tmp_path / "mirror")
    write_record(mirror / "mitdb", "112", np.random.default_rng(1), leads=("V1", "V2"))  # no MLII: rejected
    write_record(mirror / "mitdb", "107", np.random.default_rng(2))  # paced: excluded by default
    write_record(mirror / "mitdb", "115", np.random.default_rng(3), symbols=["N", "Z"] * 12, custom={"Z": "?"})
    monkeypatch.setenv("TRLS_DATA_MIRROR", str(mirror))
    params = _params(tiny_params, tmp_path, "mitdb", {"expected_records": None})
    root = tmp_path / "proj"
    _run_all("mitdb", params, root)

    pdir = parquet_dir(root, "mitdb")
    rejected = {r["record_id"]: r for r in json.loads((pdir / "rejected.json").read_text())}
    assert set(rejected) == {"112", "115"} and rejected["115"]["record_kept"] is True
    summary = json.loads((pdir / "summary.json").read_text())
    assert summary["excluded_records"] == ["107"] and summary["n_rejected_records"] == 1
    assert summary["n_partially_kept"] == 1 and summary["n_windows"] == 6 * 24 + 11
    assert summary["records_per_split"]["test"] == 2 and summary["protocol"] == "inter_patient"

    sdir = spectrogram_dir(root, "mitdb")
    meta = load_meta(sdir)
    assert task_info(meta, "aami")["classes"] == ["N", "S", "V", "F", "Q"]
    assert meta["shape"] == [1, 33, 32]
    test = load_split(sdir, "test", "aami")
    assert test.x.shape == (48, 1, 33, 32) and set(test.y.tolist()) <= set(range(5))

    res = CliRunner().invoke(app, ["data", "describe", "mitdb", "--params", str(params), "--root", str(root)])
    assert res.exit_code == 0, res.output
    assert "task aami: windows per class" in res.output and "1 kept with part skipped" in res.output


def test_default_params_do_not_fetch_the_new_datasets() -> None:
    """`dvc repro` runs `datasets:` only; sleepedf and mitdb cannot be fetched here."""
    root = Path(__file__).resolve().parents[2]
    params = yaml.safe_load((root / "params.yaml").read_text())
    assert "sleepedf" not in params["datasets"] and "mitdb" not in params["datasets"]
    assert {"sleepedf", "mitdb"} <= set(params)  # validated sections, ready to be named in `datasets:`


def test_too_many_rejections_fail_the_mitdb_stage(
    tiny_params: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    mirror = mitdb_mirror(tmp_path / "mirror", records=("100", "101", "106"))
    write_record(mirror / "mitdb", "112", np.random.default_rng(1), leads=("V1", "V2"))
    monkeypatch.setenv("TRLS_DATA_MIRROR", str(mirror))
    params = _params(tiny_params, tmp_path, "mitdb", {"expected_records": None})
    raw = yaml.safe_load(params.read_text())
    raw["mitdb"]["parquet"]["min_keep_fraction"] = 0.9
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    root = tmp_path / "proj"
    assert run_stage("fetch", fetch, ["mitdb", "--params", str(params), "--root", str(root)]) == 0
    assert run_stage("parquet", build_parquet, ["mitdb", "--params", str(params), "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert "only 3 of 4 records usable" in err and "min_keep_fraction" in err and "112" in err
    assert not parquet_dir(root, "mitdb").exists()
