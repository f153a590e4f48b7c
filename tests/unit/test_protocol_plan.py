"""The protocol's unit plan and its aggregation over evaluation seeds (trls_core/protocol.py), on plain dicts."""

from __future__ import annotations

import numpy as np
import pytest

from trls_core.errors import DataError
from trls_core.protocol import Unit, aggregate_units, plan_units


def test_plan_has_every_unit_of_every_seed_in_order() -> None:
    units = plan_units([0.1, 1.0], [3, 7])
    assert [u.name for u in units] == [
        "linear_probe/seed=3",
        "finetune/0.1/seed=3",
        "finetune/1.0/seed=3",
        "controls/spectrogram_linear/seed=3",  # seed-independent: once, with the first seed
        "controls/random_encoder_linear/seed=3",
        "linear_probe/seed=7",
        "finetune/0.1/seed=7",
        "finetune/1.0/seed=7",
        "controls/random_encoder_linear/seed=7",
    ]
    assert units[1] == Unit("finetune", 3, 0.1) and units[1].slug == "finetune_0.1_seed3"
    assert units[3].slug == "spectrogram_linear_seed3" and units[0].slug == "linear_probe_seed3"
    bare = plan_units([0.5], [0], random_control=False, spectrogram_control=False)
    assert [u.name for u in bare] == ["linear_probe/seed=0", "finetune/0.5/seed=0"]
    assert [u.name for u in plan_units([], [1], True, False)] == [
        "linear_probe/seed=1",
        "controls/random_encoder_linear/seed=1",
    ]
    with pytest.raises(DataError, match="no seeds"):
        plan_units([1.0], [])
    with pytest.raises(DataError, match="duplicate fractions"):
        plan_units([0.1, 0.10], [0])
    with pytest.raises(DataError, match="duplicate seeds"):
        plan_units([0.1], [0, 0])


def _result(score: float, **extra: float) -> dict:
    return {
        "accuracy": score,
        "macro_f1": score / 2,
        "cohen_kappa": score / 4,
        "balanced_accuracy": score / 8,
        "y_pred": np.zeros(3),
        **extra,
    }


def test_aggregate_units_over_seeds() -> None:
    results = {
        Unit("linear_probe", 0): _result(0.6, challenge_f1=0.5),
        Unit("linear_probe", 1): _result(0.8, challenge_f1=0.7),
        Unit("finetune", 0, 0.5): _result(0.2),
        Unit("finetune", 1, 0.5): _result(0.4, challenge_f1=0.1),  # not in every run: not aggregated
        Unit("spectrogram_linear", 0): _result(0.3),
        Unit("random_encoder_linear", 1): _result(0.1),
    }
    out = aggregate_units(results, [0, 1], [0.5])
    lp = out["linear_probe"]
    assert lp["accuracy"]["mean"] == pytest.approx(0.7) and lp["accuracy"]["values"] == [0.6, 0.8]
    assert lp["macro_f1"]["mean"] == pytest.approx(0.35) and lp["balanced_accuracy"]["n"] == 2
    assert lp["challenge_f1"]["mean"] == pytest.approx(0.6)
    assert set(out["finetune"]) == {"0.5"} and "challenge_f1" not in out["finetune"]["0.5"]
    assert out["finetune"]["0.5"]["accuracy"]["values"] == [0.2, 0.4]
    assert out["controls"]["spectrogram_linear"]["accuracy"]["n"] == 1
    assert out["controls"]["random_encoder_linear"]["accuracy"]["values"] == [0.1]
    assert out["seeds"] == [0, 1] and out["fractions"] == ["0.5"]
    assert [e["seed"] for e in out["per_seed"]] == [0, 1]
    assert "y_pred" not in out["per_seed"][0]["linear_probe"]  # arrays stripped
    assert out["per_seed"][1]["finetune"]["0.5"]["accuracy"] == 0.4
    assert set(out["per_seed"][0]["controls"]) == {"spectrogram_linear"}
    assert set(out["per_seed"][1]["controls"]) == {"random_encoder_linear"}
    protocol_only = {u: r for u, r in results.items() if u.method in ("linear_probe", "finetune")}
    no_controls = aggregate_units(protocol_only, [0, 1], [0.5])
    assert no_controls["controls"] == {}
    del results[Unit("finetune", 1, 0.5)]
    with pytest.raises(DataError, match=r"finetune/0.5/seed=1"):
        aggregate_units(results, [0, 1], [0.5])
