"""The method registry of the compare flow and the comparison report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from trls_core.config import read_raw_params, resolve_params
from trls_core.errors import ConfigError, DataError
from trls_core.methods import Method, get_method, method_params, methods

RAW = read_raw_params(ROOT / "params.yaml")


@pytest.mark.parametrize("name", sorted(RAW["methods"]))
def test_every_registered_method_gives_valid_params(name: str) -> None:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for profile in ("small", "paper"):
        merged = method_params(raw, name, profile)
        p = resolve_params(merged, profile=profile)
        assert p.profile == profile
        if name == "trls_cnn":
            assert p.model.encoder == "cnn"
        if name == "trls_no_aug":
            assert p.augment.view_a == [] and p.augment.view_b == []


def test_method_overrides_apply_after_the_profile() -> None:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    p = resolve_params(method_params(raw, "trls_lstm", "paper"), profile="paper")
    assert p.model.tfrnn.rnn == "lstm" and p.model.tfrnn.dim == 64  # paper size kept, override on top
    assert p.pretrain.epochs == 40


def test_bad_override_and_unknown_method_fail_by_name() -> None:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    with pytest.raises(ConfigError, match="tfrnn.rnnn"):
        method_params(raw, Method("typo", "x", {"model": {"tfrnn": {"rnnn": "gru"}}}))
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        get_method("nope", resolve_params(raw))
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        method_params(raw, "nope")
    raw["compare"]["methods"] = ["trls", "nope"]
    with pytest.raises(ConfigError, match="compare.methods"):
        resolve_params(raw)


def test_the_registry_is_the_methods_section() -> None:
    """A method is a params.yaml entry: adding one is data, a malformed one fails naming its key."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert sorted(methods(resolve_params(raw))) == sorted(raw["methods"])
    raw["methods"]["trls_gelu"] = {"description": "x", "overrides": {"model": {"tfrnn": {"dropout": 0.1}}}}
    p = resolve_params(method_params(raw, "trls_gelu"))
    assert p.model.tfrnn.dropout == 0.1
    raw["methods"]["no_description"] = {"overrides": {}}
    with pytest.raises(ConfigError, match=r"methods\.no_description\.description"):
        resolve_params(raw)
    del raw["methods"]["no_description"]
    raw["methods"]["a/b"] = {"description": "x", "overrides": {}}
    with pytest.raises(ConfigError, match="method name 'a/b'"):
        resolve_params(raw)


def _report(acc: float, protocol: str = "random") -> dict:
    def agg(m: float) -> dict:
        return {"mean": m, "std": 0.01, "min": m, "max": m, "n": 2, "values": [m, m]}

    block = {"accuracy": agg(acc), "macro_f1": agg(acc - 0.02)}
    return {
        "dataset": "epilepsy",
        "task": "binary",
        "protocol": protocol,
        "seeds": [0, 1],
        "fractions": ["0.1", "1.0"],
        "parquet_sha256": "abc",
        "profile": "small",
        "linear_probe": block,
        "finetune": {"0.1": block, "1.0": block},
        "controls": {"spectrogram_linear": block},
    }


def test_comparison_files_and_protocol_mismatch(tmp_path: Path) -> None:
    from trls_core.comparison import write_comparison

    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_report(0.98)))
    b.write_text(json.dumps(_report(0.95)))
    files = write_comparison(
        tmp_path / "out", {"trls": a, "trls_cnn": b}, {"trls": "t", "trls_cnn": "c"}, {"trls": 10.0, "trls_cnn": 5.0}
    )
    lines = files["csv"].read_text().splitlines()
    assert lines[0].startswith("method,setting,accuracy_mean")
    assert len(lines) == 1 + 2 * 3 + 1  # 2 methods x (probe + 2 fractions) + pixel control
    md = files["md"].read_text()
    assert "| trls | linear_probe | 98.00 ± 1.00 | 96.00 ± 1.00 |" in md
    assert "| trls_cnn | linear_probe | 95.00 ± 1.00 |" in md
    b.write_text(json.dumps(_report(0.95, protocol="grouped")))
    with pytest.raises(DataError, match="protocol"):
        write_comparison(tmp_path / "out2", {"trls": a, "trls_cnn": b}, {}, {})
    assert not (tmp_path / "out2" / "comparison.md").exists()


def test_compare_cli_rejects_an_unknown_method_before_running_anything() -> None:
    from typer.testing import CliRunner

    from trls_core.cli import app

    res = CliRunner().invoke(app, ["compare", "--method", "trls", "--method", "moco"])
    assert res.exit_code == 2, res.output
    assert "--method 'moco': unknown" in res.output


def test_compare_settings_reach_every_method_before_its_overrides() -> None:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["compare"]["settings"] = {
        "pretrain": {"lr": 0.5, "subset_fraction": 0.25},
        "evaluate": {"finetune": {"encoder_lr": 0.2}},
    }
    trls = resolve_params(method_params(raw, "trls"))
    assert trls.pretrain.lr == 0.5 and trls.pretrain.subset_fraction == 0.25
    tstcc = resolve_params(method_params(raw, "ts_tcc"))
    assert tstcc.pretrain.lr == 3.0e-4 and tstcc.pretrain.subset_fraction == 0.25  # method override wins
    sup = resolve_params(method_params(raw, "supervised_tfrnn"))
    assert sup.evaluate.finetune.encoder_lr == 1.0e-3 and sup.pretrain.method == "none"
    raw["compare"]["settings"] = {"pretrain": {"epcohs": 3}}
    with pytest.raises(ConfigError, match="epcohs"):
        method_params(raw, "trls")


def test_compare_dataset_points_every_method_at_it_with_its_settings() -> None:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["compare"]["datasets"] = {"cinc2017": {"pretrain": {"subset_fraction": 0.05}, "evaluate": {"task": "af"}}}
    p = resolve_params(method_params(raw, "ts2vec", dataset="cinc2017"))
    assert (p.pretrain.dataset, p.evaluate.dataset, p.evaluate.task) == ("cinc2017", "cinc2017", "af")
    assert p.pretrain.subset_fraction == 0.05 and p.pretrain.lr == 1.0e-3  # dataset settings, then the method's
    home = resolve_params(method_params(raw, "trls"))  # default dataset: its settings only
    assert home.pretrain.dataset == "epilepsy" and home.evaluate.task == "binary"
    with pytest.raises(ConfigError, match="unknown dataset 'nope'"):
        method_params(raw, "trls", dataset="nope")
    raw["compare"]["datasets"] = {"cinc2017": {"evaluate": {"tsak": "af"}}}
    with pytest.raises(ConfigError, match="tsak"):
        method_params(raw, "trls", dataset="cinc2017")


def _task_report(f1_probe: float, f1_10: float, f1_100: float) -> dict:
    agg = lambda m: {"mean": m, "std": 0.01, "min": m, "max": m, "n": 2, "values": [m, m]}  # noqa: E731

    def block(c: float) -> dict:
        return {
            "accuracy": agg(0.8),
            "macro_f1": agg(0.6),
            "challenge_f1": agg(c),
            "record_challenge_f1": agg(c + 0.01),
        }

    rep = _report(0.8)
    rep.update(
        dataset="cinc2017",
        task="af",
        linear_probe=block(f1_probe),
        finetune={"0.1": block(f1_10), "1.0": block(f1_100)},
    )
    return rep


def test_comparison_reports_the_task_score_and_reads_it_at_10_and_100_percent(tmp_path: Path) -> None:
    from trls_core.comparison import write_comparison

    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_task_report(0.70, 0.60, 0.75)))
    b.write_text(json.dumps(_task_report(0.65, 0.62, 0.70)))
    files = write_comparison(tmp_path / "out", {"trls": a, "simclr": b}, {}, {"trls": 1.0, "simclr": 1.0})
    header = files["csv"].read_text().splitlines()[0]
    assert "challenge_f1_mean" in header and "record_challenge_f1_std" in header
    md = files["md"].read_text()
    assert "## Challenge F1 (windows) (%)" in md and "## Challenge F1 (records, majority vote) (%)" in md
    assert "| trls | 70.00 ± 1.00 | 60.00 ± 1.00 | 75.00 ± 1.00 |" in md  # challenge-F1 matrix row
    assert "linear probe challenge_f1: `trls` is at or above every other method's mean: **yes**" in md
    assert (
        "fine-tuning 10 % challenge_f1: `trls` is at or above every other method's mean: **no** (above it: simclr)"
        in md
    )
    assert "fine-tuning 100 % challenge_f1: `trls` is at or above every other method's mean: **yes**" in md
    # a dataset without a task score: no such table
    c = tmp_path / "c.json"
    c.write_text(json.dumps(_report(0.9)))
    md2 = write_comparison(tmp_path / "out2", {"trls": c}, {}, {"trls": 1.0})["md"].read_text()
    assert "Challenge" not in md2


def test_comparison_refuses_reports_with_different_evaluation_budgets(tmp_path: Path) -> None:
    """A pool-capped report next to a whole-split one would compare different label sets."""
    from trls_core.comparison import write_comparison

    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({**_report(0.98), "budget": {"label_pool": 100}}))
    b.write_text(json.dumps(_report(0.95)))  # no budget: whole splits
    with pytest.raises(DataError, match="budget"):
        write_comparison(tmp_path / "out", {"trls": a, "trls_cnn": b}, {}, {})
    b.write_text(json.dumps({**_report(0.95), "budget": {"label_pool": 100}}))
    files = write_comparison(
        tmp_path / "out", {"trls": a, "trls_cnn": b}, {"trls": "t", "trls_cnn": "c"}, {"trls": 1.0, "trls_cnn": 1.0}
    )
    assert "evaluation budget: labels drawn from a fixed stratified pool of 100" in files["md"].read_text()
    # an empty budget and none at all are the same protocol (reports written before the field existed)
    a.write_text(json.dumps({**_report(0.98), "budget": {}}))
    b.write_text(json.dumps(_report(0.95)))
    write_comparison(
        tmp_path / "out2", {"trls": a, "trls_cnn": b}, {"trls": "t", "trls_cnn": "c"}, {"trls": 1.0, "trls_cnn": 1.0}
    )


def test_comparison_states_and_matches_the_fine_tuning_budget(tmp_path: Path) -> None:
    """A capped fine-tuning next to full passes would compare a probe with fine-tuning (CinC 2017)."""
    from trls_core.comparison import write_comparison

    capped = {"epochs": 4, "max_steps_per_epoch": 4, "batch_size": 128, "patience": 5}
    full = {"epochs": 10, "max_steps_per_epoch": None, "batch_size": 128, "patience": 3}
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({**_report(0.98), "finetune_budget": full}))
    b.write_text(json.dumps({**_report(0.95), "finetune_budget": capped}))
    with pytest.raises(DataError, match="finetune_budget"):
        write_comparison(tmp_path / "out", {"trls": a, "trls_cnn": b}, {}, {})
    b.write_text(json.dumps({**_report(0.95), "finetune_budget": full}))
    md = write_comparison(tmp_path / "out", {"trls": a, "trls_cnn": b}, {}, {"trls": 1.0, "trls_cnn": 1.0})["md"]
    line = next(x for x in md.read_text().splitlines() if x.startswith("- fine-tuning:"))
    assert "up to 10 full passes over the labelled subset (batch 128)" in line
    assert "early stopping after 3 epochs without improvement" in line


def test_fine_tuning_budget_text_says_when_it_is_a_cap() -> None:
    from trls_core.reports import finetune_budget_text

    assert finetune_budget_text(None) is None and finetune_budget_text({}) is None  # older reports: no line
    text = finetune_budget_text({"epochs": 4, "max_steps_per_epoch": 4, "batch_size": 128, "patience": None})
    assert text is not None and "up to 4 rounds of ≤ 4 batches of 128 (a CPU cap, not full passes)" in text
    assert "early stopping" not in text


def test_compute_seconds_come_from_the_stored_results_not_from_this_run(tmp_path: Path) -> None:
    """A rerun reuses encoders and units; the comparison must still state what the results cost."""
    from trls_core.comparison import stored_compute_seconds, write_comparison

    dirs = []
    for seed, secs in ((0, [10.0, 12.5]), (1, [11.0])):
        d = tmp_path / f"tfrnn_seed{seed}"
        d.mkdir()
        (d / "encoder.json").write_text(
            json.dumps({"history": [{"epoch": i, "seconds": s} for i, s in enumerate(secs)]})
        )
        dirs.append(d)
    none_dir = tmp_path / "supervised"  # method "none": an untrained encoder, empty history
    none_dir.mkdir()
    (none_dir / "encoder.json").write_text(json.dumps({"history": []}))
    rep = tmp_path / "metrics.json"
    rep.write_text(json.dumps({**_report(0.98), "unit_seconds": 40.25}))
    assert stored_compute_seconds(dirs, rep) == pytest.approx(10.0 + 12.5 + 11.0 + 40.25)
    assert stored_compute_seconds([none_dir], rep) == pytest.approx(40.25)
    files = write_comparison(tmp_path / "out", {"trls": rep}, {"trls": "t"}, {"trls": 3.0}, {"trls": 73.75})
    md = files["md"].read_text()
    assert "wall time per method (pretraining + evaluation): trls 3 s" in md
    assert "reused stored results): trls 74 s; total 1.2 min" in md
    (dirs[1] / "encoder.json").write_text("{not json")
    with pytest.raises(DataError, match="tfrnn_seed1/encoder.json"):
        stored_compute_seconds(dirs, rep)
