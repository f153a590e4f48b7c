"""cinc2017 through the generic stages (fetch -> parquet -> spectrogram) + `trls data describe`.

A tiny synthetic mirror (real WFDB/.mat layout) with a few bad records: the
stages must keep the good ones, write rejected.json and summary.json next to
the Parquet, and produce spectrograms + meta.json that the training code's
loaders (`task_info`, `load_split`) read with the task `af`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from tests.cinc_synth import good_records, write_archive
from trls_core.cli import app
from trls_core.config import load_params
from trls_core.data.tensors import load_meta, load_records, load_split, task_info
from trls_core.paths import parquet_dir, spectrogram_dir
from trls_core.stages._common import run_stage
from trls_core.stages.fetch import fetch
from trls_core.stages.parquet import build_parquet
from trls_core.stages.spectrogram import build_spectrograms


@pytest.fixture
def cinc_project(tmp_path: Path, tiny_params: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    recs = good_records(30)
    recs["A00004"] = (recs["A00004"][0], recs["A00004"][1][:64], recs["A00004"][2])  # truncated .mat
    write_archive(tmp_path / "mirror" / "cinc2017" / "training2017.zip", recs, extra_labels={"A09999": "A"})
    raw = yaml.safe_load(tiny_params.read_text())
    raw["cinc2017"]["fetch"]["expected_records"] = None
    params = tmp_path / "params_cinc.yaml"
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.setenv("TRLS_DATA_MIRROR", str(tmp_path / "mirror"))
    return tmp_path / "proj", params


def test_cinc2017_stages_and_describe(cinc_project: tuple[Path, Path]) -> None:
    root, params = cinc_project
    for name, fn in (("fetch", fetch), ("parquet", build_parquet), ("spectrogram", build_spectrograms)):
        assert run_stage(name, fn, ["cinc2017", "--params", str(params), "--root", str(root)]) == 0

    pdir = parquet_dir(root, "cinc2017")
    rejected = json.loads((pdir / "rejected.json").read_text())
    assert {r["record_id"] for r in rejected} == {"A00004", "A09999"}
    summary = json.loads((pdir / "summary.json").read_text())
    # 15-s records at 150 Hz, 10-s windows, pad "end": [0, 10 s) and [5 s, 15 s)
    assert summary["n_windows"] == 29 * 2 and summary["n_rejected"] == 2
    assert summary["rejected_by_kind"] == {"missing_files": 1, "unreadable_mat": 1}
    assert sum(summary["records_per_split"].values()) == 29
    assert sum(sum(c.values()) for c in summary["class_counts"]["af"].values()) == 58

    sdir = spectrogram_dir(root, "cinc2017")
    meta = load_meta(sdir)
    assert task_info(meta, "af")["classes"] == ["N", "A", "O", "~"]
    assert meta["shape"] == [1, 43, 94] and meta["parquet_sha256"] == summary["parquet_sha256"]
    train = load_split(sdir, "train", "af")
    assert train.x.shape[1:] == (1, 43, 94) and set(train.y.tolist()) <= {0, 1, 2, 3}
    assert np.isfinite(train.x.numpy()).all()
    # window -> record mapping for record-level predictions, in Parquet row order
    idx, ids = load_records(sdir, "test")
    import pyarrow.parquet as pq

    tab = pq.read_table(pdir / "windows.parquet", columns=["record_id", "split"]).to_pandas()
    assert [ids[i] for i in idx.tolist()] == tab.loc[tab["split"] == "test", "record_id"].tolist()
    assert len(ids) == summary["records_per_split"]["test"]

    res = CliRunner().invoke(app, ["data", "describe", "cinc2017", "--params", str(params), "--root", str(root)])
    assert res.exit_code == 0, res.output
    assert "task af: windows per class" in res.output and "A00004:" in res.output
    assert summary["parquet_sha256"] in res.output


def test_describe_before_parquet_says_what_to_run(cinc_project: tuple[Path, Path]) -> None:
    root, params = cinc_project
    res = CliRunner().invoke(app, ["data", "describe", "cinc2017", "--params", str(params), "--root", str(root)])
    assert res.exit_code == 2 and "dvc repro parquet@cinc2017" in res.output


def test_too_many_rejections_fail_the_stage(
    cinc_project: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root, params = cinc_project
    raw = yaml.safe_load(params.read_text())
    raw["cinc2017"]["parquet"]["min_keep_fraction"] = 1.0
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert run_stage("fetch", fetch, ["cinc2017", "--params", str(params), "--root", str(root)]) == 0
    assert run_stage("parquet", build_parquet, ["cinc2017", "--params", str(params), "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert "only 29 of 31 labelled records usable" in err and "min_keep_fraction" in err
    assert not parquet_dir(root, "cinc2017").exists()


def test_params_typo_in_cinc_section_names_the_key(tiny_params: Path, tmp_path: Path) -> None:
    from trls_core.errors import ConfigError

    raw = yaml.safe_load(tiny_params.read_text())
    raw["cinc2017"]["parquet"]["windw"] = 100
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"cinc2017\.parquet\.windw: unknown key"):
        load_params(bad)
    with pytest.raises(ConfigError, match=r"unknown dataset 'ptbxl'.*cinc2017.*epilepsy"):
        load_params(tiny_params).dataset("ptbxl")


@pytest.mark.slow
def test_cinc2017_trains_and_reports_the_challenge_score(cinc_project: tuple[Path, Path]) -> None:
    """Downstream of the stages nothing is dataset-specific: pretraining and the protocol run on
    task `af`, and the report adds the challenge F1 (N, A, O) and record-level (voted) scores."""
    from trls_core.stages.evaluate import evaluate_all
    from trls_core.stages.pretrain import pretrain_seed

    root, params_path = cinc_project
    for name, fn in (("fetch", fetch), ("parquet", build_parquet), ("spectrogram", build_spectrograms)):
        assert run_stage(name, fn, ["cinc2017", "--params", str(params_path), "--root", str(root)]) == 0
    raw = yaml.safe_load(params_path.read_text())
    raw["pretrain"]["dataset"] = raw["evaluate"]["dataset"] = "cinc2017"
    raw["evaluate"].update({"task": "af", "fractions": [1.0], "seeds": [0, 1]})
    params_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    params = load_params(params_path)
    assert task_info(load_meta(spectrogram_dir(root, "cinc2017")), "af")["score_classes"] == ["N", "A", "O"]
    pretrain_seed(root, params, 0, progress=False)
    rdir = evaluate_all(root, params, progress=False)
    m = json.loads((rdir / "metrics_af.json").read_text())
    assert m["task"] == "af" and m["class_names"] == ["N", "A", "O", "~"]
    lp = m["linear_probe"]
    for key in ("challenge_f1", "record_accuracy", "record_macro_f1", "record_challenge_f1"):
        assert 0.0 <= lp[key]["mean"] <= 1.0 and lp[key]["n"] == 2, key
    assert "challenge_f1" in m["finetune"]["1.0"] and "record_accuracy" in m["controls"]["random_encoder_linear"]
    first = m["per_seed"][0]["linear_probe"]
    assert first["n_records"] == len(load_records(spectrogram_dir(root, "cinc2017"), "test")[1])
    assert "challenge F1 (score classes)" in (rdir / "summary_af.md").read_text()
