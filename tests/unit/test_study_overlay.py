"""Study overlays (experiments/*.yaml): every variant of every overlay validates against params.yaml,
the dry run prints them, and bad overlays fail naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from trls_core.cli import app
from trls_core.errors import ConfigError
from trls_core.study.overlay import load_study, nest, parse_metric
from trls_core.study.plan import plan_study

ROOT = Path(__file__).resolve().parents[2]
PARAMS = ROOT / "params.yaml"
OVERLAYS = sorted((ROOT / "experiments").glob("*.yaml"))


def test_the_validation_studies_are_overlays() -> None:
    names = {p.stem for p in OVERLAYS}
    assert {"cinc_views", "cinc_finetune", "cinc_select", "cinc_stft", "epilepsy_robustness", "paper_seeds"} <= names
    assert {"epilepsy_sweep_gpu", "epilepsy_sweep_cpu", "epilepsy_epochs"} <= names
    leftovers = [
        p.name for p in (ROOT / "bench").glob("*.py") if p.stem.endswith("_val") or p.stem in ("sweep", "paper_seeds")
    ]
    assert not leftovers, f"validation studies still in bench/: {leftovers}"


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.stem)
def test_every_variant_of_every_overlay_validates(overlay: Path) -> None:
    study, plan = plan_study(overlay, PARAMS)
    assert study.overlay.description.strip(), f"{overlay.name}: say what the study asks in `description`"
    assert len(plan) == len(study.variants) >= 1
    for rv in plan:
        assert rv.tasks and rv.params.evaluate.seeds
        # the overrides are what the resolved params hold
        flat = {k: v for k, v in _flat(nest(rv.variant.overrides, "test")).items()}
        dumped = _flat(rv.params.model_dump(mode="json"))
        for key, value in flat.items():
            if key in dumped:  # dataset sections live under the dataset's name
                assert dumped[key] == _jsonish(value), (rv.name, key)


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _jsonish(v: object) -> object:
    return yaml.safe_load(yaml.safe_dump(v)) if not isinstance(v, float) else v


def test_dry_run_prints_every_variant_resolved() -> None:
    overlay = ROOT / "experiments" / "epilepsy_epochs.yaml"
    res = CliRunner().invoke(app, ["study", str(overlay), "--dry-run", "--params", str(PARAMS)])
    assert res.exit_code == 0, res.output
    doc = yaml.safe_load(res.output)
    assert doc["study"] == "epilepsy_epochs" and doc["metric"] == "linear_probe.macro_f1"
    assert [v["name"] for v in doc["variants"]] == ["epochs=10", "epochs=20", "epochs=30"]
    assert doc["variants"][1]["settings_vs_params_yaml"]["pretrain.epochs"] == 20
    assert doc["variants"][1]["settings_vs_params_yaml"]["pretrain.seeds"] == [0, 1, 2]
    res = CliRunner().invoke(app, ["study", "--help"])
    assert res.exit_code == 0 and "--dry-run" in res.output


def _write(tmp_path: Path, doc: dict, name: str = "probe_study.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


GOOD = {"score": {"metric": "linear_probe.macro_f1"}, "variants": {"a": {}, "b": {"pretrain.lr": 0.002}}}


@pytest.mark.parametrize(
    ("doc", "key"),
    [
        ({**GOOD, "scroe": {}}, "'scroe'"),
        ({**GOOD, "base": {"profil": "small"}}, "'base.profil'"),
        ({**GOOD, "score": {"metric": "linear_probe.macro_f1", "task": ["binary"]}}, "'score.task'"),
    ],
)
def test_unknown_overlay_key_names_file_and_key(tmp_path: Path, doc: dict, key: str) -> None:
    path = _write(tmp_path, doc)
    with pytest.raises(ConfigError) as err:
        load_study(path)
    assert str(path) in str(err.value) and f"unknown key {key}" in str(err.value)


def test_unknown_setting_in_a_variant_names_file_variant_and_key(tmp_path: Path) -> None:
    path = _write(tmp_path, {**GOOD, "variants": {"a": {}, "typo": {"pretrain.epoch": 3}}})
    with pytest.raises(ConfigError) as err:
        plan_study(path, PARAMS)
    msg = str(err.value)
    assert str(path) in msg and "'typo'" in msg and "pretrain.epoch" in msg
    res = CliRunner().invoke(app, ["study", str(path), "--dry-run", "--params", str(PARAMS)])
    assert res.exit_code == 2 and "pretrain.epoch" in res.output


def test_bad_metric_and_missing_fraction_fail(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a metric"):
        load_study(_write(tmp_path, {**GOOD, "score": {"metric": "linear_probe.f1"}}))
    with pytest.raises(ConfigError, match="group linear_probe"):
        load_study(_write(tmp_path, {**GOOD, "score": {"metric": "probe.macro_f1"}}))
    path = _write(tmp_path, {**GOOD, "score": {"metric": "finetune.0.3.macro_f1"}})
    with pytest.raises(ConfigError, match=r"fraction 0\.3 in evaluate.fractions"):
        plan_study(path, PARAMS)
    assert parse_metric("finetune.1.challenge_f1") == (("finetune", "1.0"), "challenge_f1")
    assert parse_metric("controls.random_encoder_linear.accuracy") == (
        ("controls", "random_encoder_linear"),
        "accuracy",
    )


def test_variants_may_not_change_the_windows(tmp_path: Path) -> None:
    path = _write(tmp_path, {**GOOD, "variants": {"w": {"epilepsy.parquet.window": 100}}})
    with pytest.raises(ConfigError, match=r"epilepsy\.parquet\.window.*DVC"):
        plan_study(path, PARAMS)


def test_grid_crosses_variants_and_names_points(tmp_path: Path) -> None:
    doc = {
        **GOOD,
        "seeds": [3, 4],
        "grid": {"pretrain.epochs": [1, 2], "views": {"none": {"augment": {"view_a": [], "view_b": []}}}},
    }
    study, plan = plan_study(_write(tmp_path, doc), PARAMS, sets=["pretrain.batch_size=32"], only=None)
    assert [v.name for v in study.variants] == [
        "a+epochs=1+none",
        "a+epochs=2+none",
        "b+epochs=1+none",
        "b+epochs=2+none",
    ]
    last = plan[-1].params
    assert (last.pretrain.lr, last.pretrain.epochs, last.pretrain.batch_size) == (0.002, 2, 32)
    assert last.pretrain.seeds == last.evaluate.seeds == [3, 4] and last.augment.view_a == []
    with pytest.raises(ConfigError, match="no variant"):
        plan_study(_write(tmp_path, doc), PARAMS, only=["nope"])


def test_selection_split_windows_budget_and_records() -> None:
    from trls_core.stages.evaluate import budget_indices
    from trls_core.study.holdout import selection_split

    y = np.repeat([0, 1, 2], [40, 30, 30])
    sel, rest, how = selection_split(y, None, None, 0.5)
    assert len(sel) == 50 and len(set(sel) | set(rest)) == 100 and not set(sel) & set(rest)
    assert how["select"] == "windows"
    sel, rest, how = selection_split(y, None, 20, 0.5)
    assert np.array_equal(sel, budget_indices(y, 20)) and len(rest) == 80 and how["val_windows"] == 20
    records = np.repeat(np.arange(25), 4)  # 4 windows per record, one label per record
    sel, rest, how = selection_split(np.repeat(np.arange(25) % 3, 4), records, None, 0.4)
    assert not set(records[sel]) & set(records[rest]) and how["select"] == "records"


def test_bad_overlay_fails_before_anything_runs(tmp_path: Path) -> None:
    path = _write(tmp_path, {**GOOD, "variant": {"a": {}}})
    res = CliRunner().invoke(app, ["study", str(path), "--params", str(PARAMS), "--no-track"])
    assert res.exit_code == 2 and str(path) in res.output and "unknown key 'variant'" in res.output


def _agg(probe: list[float], untrained: list[float]) -> dict:
    from trls_core.metrics import aggregate_runs

    runs = [{"macro_f1": p} for p in probe]
    ctl = [{"macro_f1": u} for u in untrained]
    return {
        "linear_probe": aggregate_runs(runs, ("macro_f1",)),
        "controls": {
            "random_encoder_linear": aggregate_runs(ctl, ("macro_f1",)),
            "spectrogram_linear": aggregate_runs(ctl[:1], ("macro_f1",)),
        },
        "per_seed": [
            {"linear_probe": r, "controls": {"random_encoder_linear": c}} for r, c in zip(runs, ctl, strict=True)
        ],
    }


def test_summary_gain_and_table(tmp_path: Path) -> None:
    from trls_core.errors import DataError
    from trls_core.study.table import summarise, table_rows, write_table

    s = summarise(_agg([0.8, 0.9], [0.7, 0.7]), "linear_probe.macro_f1", "v")
    assert s["mean"] == pytest.approx(0.85) and s["untrained"] == pytest.approx(0.7)
    assert s["gain"] == pytest.approx(0.15) and s["gain_std"] == pytest.approx(0.0707, abs=1e-4) and s["n"] == 2
    with pytest.raises(DataError, match="no linear_probe.challenge_f1"):
        summarise(_agg([0.8], [0.7]), "linear_probe.challenge_f1", "v")
    variants = [
        {"name": "low", "overrides": {}, "store": "s1", "scores": {"binary": s | {"mean": 0.5}}},
        {"name": "high", "overrides": {"pretrain.lr": 0.002}, "store": "s1", "scores": {"binary": s}},
    ]
    rows = table_rows("linear_probe.macro_f1", ["binary"], variants)
    assert [(r["rank"], r["variant"]) for r in rows] == [(1, "high"), (2, "low")]
    assert rows[0]["overrides"] == "pretrain.lr=0.002" and rows[1]["overrides"] == "(base)"
    study = load_study(_write(tmp_path, GOOD))
    files = {"csv": tmp_path / "t.csv", "md": tmp_path / "t.md"}
    write_table(files, study, ["binary"], rows)
    assert files["csv"].read_text().splitlines()[0].startswith("rank,variant,binary:linear_probe.macro_f1,")
    assert "| 1 | `high` | 0.8500 ± 0.0707 | 0.7000 | 0.1500 ± 0.0707 | 0.7000 | 2 | `s1` |" in files["md"].read_text()
