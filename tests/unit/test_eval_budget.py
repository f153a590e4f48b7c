"""The evaluation budget (``evaluate.label_pool`` / ``val_windows``): fixed stratified subsets, test untouched."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tests.settings import section
from trls_core.comparison import _budget_lines
from trls_core.settings.training import EvaluateParams
from trls_core.stages.evaluate import apply_budget, evaluation_budget


def _data(n_train: int = 1000, n_val: int = 400, n_test: int = 300) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    out = {}
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        y = torch.cat([torch.zeros(n * 7 // 10), torch.ones(n * 2 // 10), torch.full((n - n * 9 // 10,), 2)]).long()
        out[f"x_{split}"] = torch.randn(n, 1, 4, 5, generator=g)
        out[f"y_{split}"] = y
    return out


def test_no_budget_keeps_every_split_and_adds_nothing_to_the_fingerprint() -> None:
    data = _data()
    ev = section("evaluate")
    assert evaluation_budget(ev) == {}
    out = apply_budget(data, ev)
    assert all(out[k] is data[k] for k in data)


def test_pool_and_val_caps_are_stratified_fixed_and_leave_test_whole() -> None:
    data = _data()
    ev = section("evaluate", label_pool=200, val_windows=100)
    a, b = apply_budget(data, ev), apply_budget(data, ev)
    assert len(a["y_train"]) == 200 and len(a["y_val"]) == 100
    assert a["x_test"] is data["x_test"] and a["y_test"] is data["y_test"]
    # the class mix of the split is kept (70/20/10)
    assert np.bincount(a["y_train"].numpy()).tolist() == [140, 40, 20]
    assert np.bincount(a["y_val"].numpy()).tolist() == [70, 20, 10]
    # the same windows on every call (every method and seed sees the same pool)
    assert torch.equal(a["x_train"], b["x_train"]) and torch.equal(a["x_val"], b["x_val"])
    # rows stay paired: each kept x row is the original row of its label
    rows = {tuple(x.flatten().tolist()): int(y) for x, y in zip(data["x_train"], data["y_train"])}
    assert all(rows[tuple(x.flatten().tolist())] == int(y) for x, y in zip(a["x_train"], a["y_train"]))
    assert evaluation_budget(ev) == {"label_pool": 200, "val_windows": 100}


def test_a_cap_above_the_split_size_is_a_no_op() -> None:
    data = _data(n_train=50)
    out = apply_budget(data, section("evaluate", label_pool=10_000))
    assert out["x_train"] is data["x_train"]


@pytest.mark.parametrize("bad", [0, 1, -5])
def test_a_nonsense_cap_is_rejected_with_its_key(bad: int) -> None:
    with pytest.raises(Exception, match="label_pool"):
        section("evaluate", label_pool=bad)


def test_the_comparison_states_the_budget_only_when_set() -> None:
    assert _budget_lines({}) == []
    line = _budget_lines(
        {"budget": {"label_pool": 200, "val_windows": 100}, "n_windows": {"train": 200, "val": 100, "test": 8134}}
    )
    assert len(line) == 1 and "pool of 200" in line[0] and "100 validation" in line[0] and "8,134" in line[0]


def test_fingerprint_changes_with_the_budget_and_not_without_it() -> None:
    from trls_core.protocol import Unit
    from trls_core.stages.evaluate import EvalContext

    def fp(ev: EvaluateParams) -> str:
        params = SimpleNamespace(evaluate=ev, pretrain=SimpleNamespace(seeds=[0]), model=None)
        ctx = EvalContext(None, params, {}, ["a", "b"], {}, "cpu", {})  # type: ignore[arg-type]
        return ctx.fingerprint(Unit("spectrogram_linear", 0))

    base = fp(section("evaluate"))
    assert fp(section("evaluate", label_pool=None, val_windows=None)) == base
    assert fp(section("evaluate", label_pool=200)) != base
    assert fp(section("evaluate", val_windows=100)) != fp(section("evaluate", label_pool=100))


def test_selection_by_the_task_score_enters_the_fingerprint_only_where_the_task_has_score_classes() -> None:
    """Bonn results (no score classes) stay current; CinC's change when the selection rule changes."""
    from trls_core.protocol import Unit
    from trls_core.stages.evaluate import EvalContext, selection_rule

    def ctx(ev: EvaluateParams, score_classes: list[str] | None) -> EvalContext:
        params = SimpleNamespace(evaluate=ev, pretrain=SimpleNamespace(seeds=[0]), model=None)
        return EvalContext(
            None,
            params,
            {},
            ["N", "A", "O", "~"],
            {},
            "cpu",
            {},  # type: ignore[arg-type]
            score_classes=score_classes,
        )

    def fp(ev: EvaluateParams, sc: list[str] | None) -> str:
        return ctx(ev, sc).fingerprint(Unit("spectrogram_linear", 0))

    task, macro = section("evaluate", select_by="task_score"), section("evaluate", select_by="macro_f1")
    assert fp(task, None) == fp(macro, None) == fp(section("evaluate"), None)  # no score classes: one rule
    assert fp(task, ["N", "A", "O"]) != fp(macro, ["N", "A", "O"])
    assert fp(macro, ["N", "A", "O"]) == fp(macro, None)  # macro-F1 ignores the score classes
    assert ctx(task, ["N", "A", "O"]).select_classes == ["N", "A", "O"]
    assert ctx(macro, ["N", "A", "O"]).select_classes is None
    assert selection_rule(["N", "A", "O"]) == "mean F1 of N, A, O" and selection_rule(None) == "macro-F1"
    line = _budget_lines(
        {"budget": {"val_windows": 100}, "n_windows": {"val": 100}, "selected_by": "mean F1 of N, A, O"}
    )
    assert "chosen by mean F1 of N, A, O on" in line[0]
    with pytest.raises(ValueError, match="select_by"):
        section("evaluate", select_by="accuracy")  # type: ignore[arg-type]
