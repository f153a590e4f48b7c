"""Metrics against hand-computed values; aggregation over seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trls_core.errors import DataError
from trls_core.metrics import aggregate, aggregate_runs, classification_metrics

# true:  0 0 0 1 1 2
# pred:  0 0 1 1 1 0
Y_TRUE = [0, 0, 0, 1, 1, 2]
Y_PRED = [0, 0, 1, 1, 1, 0]
NAMES = ["a", "b", "c"]


def test_classification_metrics_hand_computed() -> None:
    m = classification_metrics(Y_TRUE, Y_PRED, NAMES)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]
    # per class: a P=R=F1=2/3; b P=2/3 R=1 F1=0.8; c never predicted -> 0
    assert m["per_class"]["a"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3})
    assert m["per_class"]["b"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert m["per_class"]["c"] == pytest.approx({"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1})
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 0.0) / 3)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1.0 + 0.0) / 3)
    # po = 4/6, pe = (3*3 + 2*3 + 1*0) / 36 = 15/36 -> kappa = 3/7
    assert m["cohen_kappa"] == pytest.approx(3 / 7)
    assert m["n"] == 6


def test_classification_metrics_reports_absent_class_with_fixed_shape() -> None:
    m = classification_metrics([0, 1, 0, 1], [0, 1, 1, 1], ["x", "y", "z"])
    assert np.asarray(m["confusion_matrix"]).shape == (3, 3)
    assert m["per_class"]["z"]["support"] == 0
    # macro-F1 is averaged over present classes only, not dragged down by absent "z"
    f1_x, f1_y = 2 / 3, 0.8
    assert m["macro_f1"] == pytest.approx((f1_x + f1_y) / 2)


def test_single_class_perfect_agreement_has_finite_kappa() -> None:
    m = classification_metrics([1, 1, 1], [1, 1, 1], ["n", "s"])
    assert m["accuracy"] == 1.0 and math.isfinite(m["cohen_kappa"]) and m["cohen_kappa"] == 1.0


def test_classification_metrics_rejects_bad_labels() -> None:
    with pytest.raises(DataError, match="labels must lie"):
        classification_metrics([0, 3], [0, 1], ["a", "b"])
    with pytest.raises(DataError, match="y_pred has"):
        classification_metrics([0, 1], [0], ["a", "b"])


def test_aggregate_sample_std() -> None:
    a = aggregate([1.0, 2.0, 3.0, 4.0])
    assert a["mean"] == pytest.approx(2.5)
    assert a["std"] == pytest.approx(math.sqrt(5 / 3))  # ddof=1
    assert (a["min"], a["max"], a["n"], a["values"]) == (1.0, 4.0, 4, [1.0, 2.0, 3.0, 4.0])
    single = aggregate([0.7])
    assert single["std"] == 0.0 and single["mean"] == pytest.approx(0.7)
    with pytest.raises(DataError):
        aggregate([])


def test_aggregate_runs_keys_and_missing_metric() -> None:
    runs = [{"accuracy": 0.9, "macro_f1": 0.8}, {"accuracy": 0.7, "macro_f1": 0.6}]
    out = aggregate_runs(runs, keys=("accuracy", "macro_f1"))
    assert set(out) == {"accuracy", "macro_f1"}
    assert out["accuracy"]["mean"] == pytest.approx(0.8)
    assert out["macro_f1"]["std"] == pytest.approx(math.sqrt(0.02))
    with pytest.raises(DataError, match="cohen_kappa"):
        aggregate_runs(runs)


def test_subset_f1_is_the_cinc2017_score_by_hand() -> None:
    from trls_core.metrics import subset_f1

    names = ["N", "A", "O", "~"]
    yt = np.array([0, 0, 1, 1, 2, 2, 3])
    yp = np.array([0, 1, 1, 1, 2, 3, 3])
    # N: tp1 fp0 fn1 -> 2/3; A: tp2 fp1 fn0 -> 4/5; O: tp1 fp0 fn1 -> 2/3; '~' is not scored
    assert subset_f1(yt, yp, names, ["N", "A", "O"]) == pytest.approx((2 / 3 + 4 / 5 + 2 / 3) / 3)
    with pytest.raises(DataError, match=r"\['X'\]"):
        subset_f1(yt, yp, names, ["N", "X"])


def test_vote_by_group_and_record_scores() -> None:
    from trls_core.metrics import task_scores, vote_by_group

    groups = np.array([5, 5, 5, 9, 9, 7])
    yt = np.array([1, 1, 1, 0, 0, 0])
    yp = np.array([1, 0, 1, 0, 1, 1])  # record 5 -> 1 (2 of 3); record 9 -> tie 0/1 -> 0; record 7 -> 1
    rt, rp = vote_by_group(yt, yp, groups, 2)
    assert rt.tolist() == [1, 0, 0] and rp.tolist() == [1, 1, 0]  # ordered by record id 5, 7, 9
    s = task_scores(yt, yp, ["a", "b"], None, groups)
    assert s["record_accuracy"] == pytest.approx(2 / 3) and s["n_records"] == 3
    assert "challenge_f1" not in s and "record_challenge_f1" not in s
    with pytest.raises(DataError, match="group ids"):
        vote_by_group(yt, yp, groups[:3], 2)


def test_selection_score_is_macro_f1_or_the_mean_f1_of_the_given_classes() -> None:
    from trls_core.metrics import selection_score

    y_true = [0, 0, 1, 1, 2, 2]
    y_pred = [0, 0, 1, 0, 1, 2]
    # per-class F1: a = 2*2/(2*2+1) = 0.8, b = 2*1/(2*1+1+1) = 0.5, c = 2*1/(2*1+1) = 2/3
    assert selection_score(y_true, y_pred, ["a", "b", "c"]) == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert selection_score(y_true, y_pred, ["a", "b", "c"], ["a", "b"]) == pytest.approx((0.8 + 0.5) / 2)


def test_one_label_is_enough_and_the_class_count_is_exclusive() -> None:
    m = classification_metrics([1], [1], ["a", "b"])
    assert m["n"] == 1 and m["accuracy"] == 1.0 and m["confusion_matrix"] == [[0, 0], [0, 1]]
    with pytest.raises(DataError, match="empty"):
        classification_metrics([], [], ["a", "b"])
    for yt, yp in (([0, 2], [0, 1]), ([0, 1], [2, 1]), ([-1, 1], [0, 1]), ([0, 1], [0, -1])):
        with pytest.raises(DataError, match=r"labels must lie in \[0, 2\)"):
            classification_metrics(yt, yp, ["a", "b"])


def test_challenge_f1_counts_an_absent_score_class_as_zero() -> None:
    from trls_core.metrics import subset_f1

    names = ["N", "A", "O", "~"]
    yt = np.array([0, 0, 2, 3])
    yp = np.array([0, 0, 2, 3])  # no A at all: its F1 is 0, not a free 1
    assert subset_f1(yt, yp, names, ["N", "A", "O"]) == pytest.approx(2 / 3)


def test_record_level_scores_with_and_without_window_predictions() -> None:
    from trls_core.metrics import record_level_scores

    names = ["N", "A", "O", "~"]
    y_rec, p_rec = np.array([0, 1, 2, 3]), np.array([0, 1, 1, 3])
    y_win, p_win = np.array([0, 0, 1, 2, 3]), np.array([0, 1, 1, 2, 3])
    out = record_level_scores(y_rec, p_rec, y_win, p_win, names, ["N", "A", "O"])
    assert out["record_accuracy"] == pytest.approx(0.75) and out["n_records"] == 4
    # N: 1; A: tp1 fp1 -> 2/3; O: tp0 -> 0
    assert out["challenge_f1"] == out["record_challenge_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert out["record_macro_f1"] == pytest.approx((1 + 2 / 3 + 0 + 1) / 4)
    assert out["window_accuracy"] == pytest.approx(0.8)
    # windows: N tp1 fn1 -> 2/3; A tp1 fp1 -> 2/3; O 1
    assert out["window_challenge_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert out["window_macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1 + 1) / 4)
    bare = record_level_scores(y_rec, p_rec, y_win, None, names)
    assert set(bare) == {"record_accuracy", "record_macro_f1", "n_records"}


def test_task_scores_with_score_classes_and_groups() -> None:
    from trls_core.metrics import task_scores

    names = ["N", "A", "O"]
    groups = np.array([1, 1, 2, 2, 3])
    yt = np.array([0, 0, 1, 1, 2])
    yp = np.array([0, 1, 1, 1, 0])  # records: 1 -> tie 0/1 -> 0 (right), 2 -> 1 (right), 3 -> 0 (wrong)
    s = task_scores(yt, yp, names, ["N", "A"], groups)
    assert s["challenge_f1"] == pytest.approx((0.5 + 0.8) / 2)  # windows: N tp1 fp1 fn1 -> 1/2, A 4/5
    assert s["record_accuracy"] == pytest.approx(2 / 3) and s["n_records"] == 3
    assert s["record_challenge_f1"] == pytest.approx((2 / 3 + 1) / 2)  # records: N tp1 fp1 -> 2/3; A 1
    assert set(task_scores(yt, yp, names)) == set()
