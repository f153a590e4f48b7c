"""metrics.json, summary.md and the figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from trls_core.metrics import aggregate, classification_metrics
from trls_core.plots import plot_confusion_matrix, plot_label_fraction_curve, plot_loss_curve, plot_tsne
from trls_core.reports import render_summary_md, write_metrics_json, write_summary_md

PNG = b"\x89PNG\r\n\x1a\n"


def _agg(acc: list[float], f1: list[float]) -> dict:
    return {
        "accuracy": aggregate(acc),
        "macro_f1": aggregate(f1),
        "cohen_kappa": aggregate(f1),
        "balanced_accuracy": aggregate(acc),
    }


def _results() -> dict:
    lp = classification_metrics([0, 0, 1, 1], [0, 0, 1, 0], ["normal", "seizure"])
    lp["C"] = 0.1
    return {
        "task": "epilepsy_binary",
        "protocol": "tstcc_random",
        "profile": "smoke",
        "dataset": "epilepsy",
        "linear_probe": _agg([0.9764, 0.9806], [0.95, 0.96]),
        "finetune": {"1.0": _agg([0.99, 0.98], [0.97, 0.98]), "0.01": _agg([0.80, 0.84], [0.70, 0.74])},
        "controls": {
            "spectrogram_linear": _agg([0.90], [0.85]),
            "random_encoder_linear": _agg([0.974, 0.978], [0.951, 0.961]),
        },
        "seeds": [0, 1],
        "fractions": ["0.01", "1.0"],
        "per_seed": [{"seed": 0, "linear_probe": lp, "finetune": {}, "controls": {}}],
    }


def test_summary_has_pm_percentages_and_verdicts() -> None:
    md = render_summary_md(_results())
    assert "epilepsy_binary" in md and "tstcc_random" in md and "smoke" in md and "seeds**: 0, 1" in md
    # mean of 0.9764 and 0.9806 = 97.85 %, sample std = 0.30 pp
    assert "97.85 ± 0.30" in md
    assert md.index("fine-tune 1 % labels") < md.index("fine-tune 100 % labels")  # sorted by fraction
    lines = md.splitlines()
    spec = next(line for line in lines if "`spectrogram_linear`" in line)
    rand = next(line for line in lines if "`random_encoder_linear`" in line)
    assert spec.endswith("**yes**")  # +10 pp >> std
    assert rand.endswith("**no**")  # -0.1 pp: within the seed std
    assert "| seizure | 100.00 | 50.00 | 66.67 | 2 |" in md  # per-class report of seed 0
    assert "Chosen C = 0.1" in md


def test_write_metrics_json_and_summary(tmp_path: Path) -> None:
    res = _results()
    res["extra"] = {"arr": np.arange(3), "scalar": np.float32(0.5), "nan": float("nan")}
    p = tmp_path / "out" / "metrics.json"
    write_metrics_json(res, p)
    back = json.loads(p.read_text())
    assert back["extra"] == {"arr": [0, 1, 2], "scalar": 0.5, "nan": None}
    assert back["linear_probe"]["accuracy"]["mean"] == pytest.approx(0.9785)
    s = tmp_path / "summary.md"
    write_summary_md(res, s)
    assert "±" in s.read_text()
    assert not [f for f in tmp_path.rglob("*.tmp")]  # no temp files left behind


def test_write_metrics_json_failure_leaves_old_file(tmp_path: Path) -> None:
    p = tmp_path / "metrics.json"
    p.write_text('{"ok": 1}')
    with pytest.raises(TypeError):
        write_metrics_json({"bad": object()}, p)
    assert json.loads(p.read_text()) == {"ok": 1}


def _is_png(p: Path) -> bool:
    return p.exists() and p.stat().st_size > 1000 and p.read_bytes()[:8] == PNG


def test_plots_write_png(tmp_path: Path) -> None:
    plot_confusion_matrix([[5, 1], [0, 4]], ["n", "s"], tmp_path / "cm.png", "Confusion")
    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    z = rng.normal(size=(60, 8)) + y[:, None]
    plot_tsne(z, y, ["a", "b", "c"], tmp_path / "tsne.png", max_points=40)
    hist = [{"epoch": e, "loss": 1.0 / e, "tau": 0.99 + e * 1e-3, "lr": 1e-3, "seconds": 0.1} for e in range(1, 6)]
    plot_loss_curve(hist, tmp_path / "loss.png")
    plot_label_fraction_curve(_results()["finetune"], tmp_path / "frac.png", reference=_results()["linear_probe"])
    for name in ("cm.png", "tsne.png", "loss.png", "frac.png"):
        assert _is_png(tmp_path / name), name
    assert not [f for f in tmp_path.iterdir() if f.suffix == ".tmp"]


def test_plot_confusion_matrix_rejects_wrong_shape(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="class names"):
        plot_confusion_matrix([[1, 2], [3, 4]], ["a", "b", "c"], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_summary_states_the_selection_rule_and_judges_the_task_score_too() -> None:
    res = _results()
    res["selected_by"] = "mean F1 of N, A, O"
    res["linear_probe"]["challenge_f1"] = aggregate([0.44, 0.45])
    res["controls"]["random_encoder_linear"]["challenge_f1"] = aggregate([0.40, 0.41])
    md = render_summary_md(res)
    assert "Chosen C = 0.1 (by validation mean F1 of N, A, O)." in md
    assert "model selection**: C and the fine-tuning epoch chosen by validation mean F1 of N, A, O" in md
    task = next(line for line in md.splitlines() if "`random_encoder_linear`" in line and "challenge F1" in line)
    assert "+4.00 pp challenge F1" in task and task.endswith("**yes**")
    assert "Chosen C = 0.1 (by validation macro-F1)." in render_summary_md(_results())
