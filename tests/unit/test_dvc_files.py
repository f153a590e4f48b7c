"""reports/dvc/: the compact results dvc.yaml declares (metrics, label-fraction and loss curves, comparisons).

The real `dvc metrics show` / `dvc plots show` over these files runs in
tests/integration/test_dvc_remote.py; here: what is written, and that
dvc.yaml's plot fields name columns the writers produce.
"""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from trls_core.config import load_params
from trls_core.dvc_files import (
    comparison_plot_file,
    fraction_key,
    fractions_plot_file,
    headline,
    loss_plot_file,
    metrics_file,
    write_comparison_plot,
    write_evaluation_files,
)

ROOT = Path(__file__).resolve().parents[2]


def _agg(mean: float, std: float = 0.01) -> dict:
    return {"mean": mean, "std": std, "min": mean - std, "max": mean + std, "n": 2, "values": [mean - std, mean + std]}


def fake_report(fractions: tuple[float, ...] = (0.1, 1.0)) -> dict:
    """A metrics.json-shaped report: probe, fine-tuning per fraction, the two controls."""
    block = {"accuracy": _agg(0.912345678), "macro_f1": _agg(0.876543219), "cohen_kappa": _agg(0.8)}
    return {
        "linear_probe": block,
        "finetune": {str(f): {"accuracy": _agg(0.8 + f / 10), "macro_f1": _agg(0.7 + f / 10)} for f in fractions},
        "controls": {"random_encoder_linear": block, "spectrogram_linear": block},
        "seeds": [0, 1],
        "pretrain_seeds": [0],
        "per_seed": [{"linear_probe": {"confusion_matrix": [[1, 0], [0, 1]]}}],
    }


def test_headline_is_compact_rounded_and_dot_free() -> None:
    h = headline(fake_report((0.005, 0.1, 1.0)))
    assert h["linear_probe"] == {"accuracy": {"mean": 0.9123, "std": 0.01}, "macro_f1": {"mean": 0.8765, "std": 0.01}}
    assert list(h["finetune"]) == ["0_5pct", "10pct", "100pct"]  # no '.', which DVC reads as nesting
    assert set(h["controls"]) == {"untrained_encoder", "spectrogram_pixels"}
    assert h["n_seeds"] == 2
    assert fraction_key(0.01) == "1pct"
    # the task's own score joins where the report has it (CinC 2017: challenge F1)
    rep = fake_report()
    rep["linear_probe"]["challenge_f1"] = _agg(0.5)
    assert "challenge_f1" in headline(rep)["linear_probe"]


def _pretrained(root: Path, encoder: str) -> None:
    """encoder.json of seed 0 with a 3-epoch pretraining history (what write_evaluation_files reads)."""
    mdir = root / "models" / "epilepsy" / f"{encoder}_seed0"
    mdir.mkdir(parents=True)
    history = [{"epoch": e, "loss": 1.0 / (e + 1), "lr": 1e-3, "tau": 0.99, "seconds": 1.5} for e in range(3)]
    (mdir / "encoder.json").write_text(json.dumps({"history": history}))


def test_write_evaluation_files(tmp_path: Path, tiny_params: Path) -> None:
    params = load_params(tiny_params)
    _pretrained(tmp_path, params.model.encoder)

    written = write_evaluation_files(tmp_path, params, fake_report())
    dvc = tmp_path / "reports" / "dvc"
    assert written == [
        dvc / "metrics/epilepsy/binary.json",
        dvc / "plots/label_fractions/epilepsy/binary.csv",
        dvc / f"plots/loss/epilepsy/{params.model.encoder}_seed0.csv",
    ]
    assert json.loads(written[0].read_text())["linear_probe"]["macro_f1"]["mean"] == 0.8765
    rows = list(csv.DictReader(written[1].open()))
    assert [float(r["fraction"]) for r in rows] == [0.1, 1.0]
    assert float(rows[0]["linear_probe_macro_f1"]) == 0.8765
    loss = list(csv.DictReader(written[2].open()))
    assert [r["epoch"] for r in loss] == ["1", "2", "3"] and float(loss[1]["loss"]) == 0.5
    assert not [p for p in dvc.rglob("*") if p.name.startswith(".")]  # atomic writes leave no temp

    # a transfer (pretrained on cinc2017, evaluated on epilepsy) has its own folder; a probe-only
    # evaluation has no label-fraction curve
    transfer = load_params(tiny_params, sets=["pretrain.dataset=cinc2017", "evaluate.task=five_set"])
    report = {**fake_report(), "finetune": {}}
    written = write_evaluation_files(tmp_path, transfer, report)
    assert written == [dvc / "metrics/epilepsy/from_cinc2017/five_set.json"]
    assert metrics_file(tmp_path, transfer) == written[0]
    assert fractions_plot_file(tmp_path, transfer).parent.name == "from_cinc2017"


def test_write_comparison_plot(tmp_path: Path) -> None:
    src = tmp_path / "comparison.csv"
    src.write_text(
        "method,setting,accuracy_mean,accuracy_std,macro_f1_mean,macro_f1_std\n"
        "trls,linear_probe,0.98123456,0.001,0.97,0.002\n"
        "simclr,finetune_0.1,0.9,0.01,0.85,\n"
    )
    out = write_comparison_plot(tmp_path, "epilepsy", "binary", src)
    assert out == comparison_plot_file(tmp_path, "epilepsy", "binary")
    rows = list(csv.DictReader(out.open()))
    assert [r["label"] for r in rows] == ["trls: linear_probe", "simclr: finetune_0.1"]
    assert rows[0]["accuracy"] == "0.9812" and rows[1]["macro_f1_std"] == ""


def test_dvc_yaml_declares_the_files_the_writers_write(tmp_path: Path, tiny_params: Path) -> None:
    """Every plot's x/y is a column its writer produces; metrics and params are declared."""
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    assert dvc["params"] == ["params.yaml"]
    assert dvc["metrics"] == ["reports/dvc/metrics"]
    plots = {path: props for entry in dvc["plots"] for path, props in entry.items()}
    assert set(plots) == {f"reports/dvc/plots/{k}" for k in ("label_fractions", "loss", "comparison")}

    params = load_params(tiny_params)
    _pretrained(tmp_path, params.model.encoder)
    comparison = tmp_path / "comparison.csv"
    comparison.write_text("method,setting,accuracy_mean,accuracy_std,macro_f1_mean,macro_f1_std\nm,s,1,0,1,0\n")
    written = write_evaluation_files(tmp_path, params, fake_report())
    files = {
        "reports/dvc/plots/label_fractions": written[1],
        "reports/dvc/plots/loss": loss_plot_file(tmp_path, "epilepsy", params.model.encoder, 0),
        "reports/dvc/plots/comparison": write_comparison_plot(tmp_path, "epilepsy", "binary", comparison),
    }
    for path, props in plots.items():
        assert files[path].is_relative_to(tmp_path / path), path
        columns = next(csv.reader(files[path].open()))
        ys = props["y"] if isinstance(props["y"], list) else [props["y"]]
        assert {props["x"], *ys} <= set(columns), (path, columns)


def test_git_keeps_reports_dvc_and_ignores_the_rest_of_reports() -> None:
    def ignored(path: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0

    if not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout")
    assert not ignored("reports/dvc/metrics/epilepsy/binary.json")
    assert not ignored("reports/dvc/plots/loss/epilepsy/tfrnn_seed0.csv")
    assert ignored("reports/epilepsy/metrics.json") and ignored("reports/epilepsy/units/binary/x.json")
