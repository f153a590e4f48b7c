"""Model tier: pretrain -> evaluate through the real stage code on a tiny project."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from trls_core.cli import app
from trls_core.config import load_params
from trls_core.models.loading import load_encoder
from trls_core.paths import model_dir, report_dir
from trls_core.stages.evaluate import evaluate_all
from trls_core.stages.pretrain import pretrain_seed

pytestmark = pytest.mark.slow


def test_pretrain_then_evaluate(tiny_project: Path, tiny_params: Path) -> None:
    params = load_params(tiny_params)
    out = pretrain_seed(tiny_project, params, 0, progress=False)
    info = json.loads((out / "encoder.json").read_text())
    assert len(info["history"]) == params.pretrain.epochs
    assert all(h["loss"] == h["loss"] for h in info["history"])  # finite
    enc, _ = load_encoder(out)
    assert enc(torch.randn(2, *info["config"]["input_shape"])).shape == (2, params.model.tfrnn.rep_dim)
    assert (out / "loss_curve.png").stat().st_size > 0

    rdir = evaluate_all(tiny_project, params, progress=False)
    metrics = json.loads((rdir / "metrics.json").read_text())
    for key in ("linear_probe", "finetune", "controls", "task", "protocol", "profile", "seeds"):
        assert key in metrics
    assert set(metrics["finetune"]) == {"0.5", "1.0"}
    assert set(metrics["controls"]) == {"spectrogram_linear", "random_encoder_linear"}
    # floors a broken pipeline fails (the tiny binary task, S louder than the rest, is separable:
    # 1.0 everywhere when measured; shuffled labels or misaligned windows sit near 0.5 macro-F1)
    lp = metrics["linear_probe"]["macro_f1"]
    assert lp["mean"] >= 0.9 and len(lp["values"]) == 2, lp
    assert metrics["finetune"]["1.0"]["macro_f1"]["mean"] >= 0.9, metrics["finetune"]["1.0"]
    # the pretrained encoder is at least as good as its untrained init (0.973 there when measured)
    assert lp["mean"] >= metrics["controls"]["random_encoder_linear"]["macro_f1"]["mean"], metrics["controls"]
    assert metrics["task"] == "binary" and metrics["protocol"] == "random"
    # windows -> source segments are known: segment-level (voted) scores; no score-class subset here
    assert metrics["linear_probe"]["record_accuracy"]["mean"] >= 0.9
    assert "challenge_f1" not in metrics["linear_probe"]
    ft = params.evaluate.finetune  # the budget every fine-tuning unit ran under, stated in both reports
    assert metrics["finetune_budget"] == {
        "epochs": ft.epochs,
        "max_steps_per_epoch": ft.max_steps_per_epoch,
        "batch_size": ft.batch_size,
        "patience": ft.patience,
    }
    summary = (rdir / "summary.md").read_text()
    assert "±" in summary and "random" in summary
    assert f"**fine-tuning**: LP-FT, up to {ft.epochs} rounds of ≤ {ft.max_steps_per_epoch} batches" in summary
    for png in ("confusion_matrix.png", "tsne.png", "label_fractions.png"):
        assert (rdir / png).stat().st_size > 1000


def test_five_set_task_via_cli(tiny_project: Path, tiny_params: Path) -> None:
    runner = CliRunner()
    args = ["--params", str(tiny_params), "--root", str(tiny_project)]
    assert runner.invoke(app, ["pretrain", *args]).exit_code == 0
    res = runner.invoke(app, ["evaluate", *args, "--task", "five_set"])
    assert res.exit_code == 0, res.output
    m = json.loads((report_dir(tiny_project, "epilepsy") / "metrics_five_set.json").read_text())
    assert m["task"] == "five_set" and m["class_names"] == list("ZONFS")
    bad = runner.invoke(app, ["evaluate", *args, "--task", "seven_set"])
    assert bad.exit_code == 2 and "unknown task 'seven_set'" in bad.output


def test_killed_pretraining_resumes_from_checkpoint(tiny_project: Path, tiny_params: Path, tmp_path: Path) -> None:
    params = load_params(tiny_params)

    class Killed(Exception):
        pass

    def kill_in_second_epoch(rec: dict) -> None:
        if rec["epoch"] == 1:
            raise Killed

    with pytest.raises(Killed):
        pretrain_seed(tiny_project, params, 0, progress=False, on_epoch=kill_in_second_epoch)
    mdir = model_dir(tiny_project, "epilepsy", "tfrnn", 0)
    assert (mdir / "checkpoint.safetensors").is_file()
    assert not (mdir / "encoder.safetensors").exists()

    pretrain_seed(tiny_project, params, 0, progress=False)
    info = json.loads((mdir / "encoder.json").read_text())
    assert info["resumed_from_epoch"] == 2  # the checkpoint is saved before on_epoch: the epoch that raised is kept
    assert [h["epoch"] for h in info["history"]] == [0, 1, 2]

    # same weights as an uninterrupted run
    other = tmp_path / "other"
    other.mkdir()
    (other / "data").symlink_to(tiny_project / "data")
    ref = pretrain_seed(other, params, 0, progress=False)
    a, b = load_file(str(mdir / "encoder.safetensors")), load_file(str(ref / "encoder.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k])

    # a rerun with the same parameters does nothing; another parameter retrains
    before = (mdir / "encoder.safetensors").stat().st_mtime_ns
    pretrain_seed(tiny_project, params, 0, progress=False)
    assert (mdir / "encoder.safetensors").stat().st_mtime_ns == before


def test_evaluate_without_pretraining_is_a_clear_error(tiny_project: Path, tiny_params: Path) -> None:
    res = CliRunner().invoke(app, ["evaluate", "--params", str(tiny_params), "--root", str(tiny_project)])
    assert res.exit_code == 2
    assert "encoder.json not found" in res.output and "trls pretrain" in res.output
