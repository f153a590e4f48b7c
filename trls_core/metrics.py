"""Classification metrics and their aggregation over seeds.

All scores are fractions of 1 (0.9785, not 97.85): the JSON results hold
fractions and only the human-facing report converts to percent, so nobody
has to guess which unit a number is in.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from trls_core.errors import DataError

#: Scalar metrics aggregated over seeds by default (the report's columns).
DEFAULT_KEYS: tuple[str, ...] = ("accuracy", "macro_f1", "cohen_kappa", "balanced_accuracy")

#: Aggregated too when every run of a group has them: the task's own score
#: (``challenge_f1``: mean F1 over the task's ``score_classes``, e.g. N/A/O of
#: CinC 2017) and record-level scores (window predictions voted per record).
EXTRA_KEYS: tuple[str, ...] = (
    "challenge_f1",
    "record_accuracy",
    "record_macro_f1",
    "record_challenge_f1",
    "window_accuracy",
    "window_macro_f1",
    "window_challenge_f1",
)


def classification_metrics(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    class_names: Sequence[str],
) -> dict[str, Any]:
    """Accuracy, macro-F1, Cohen's kappa, balanced accuracy, confusion matrix, per-class scores.

    Labels are the integers ``0 .. len(class_names) - 1``. Every class is
    always reported (``labels=range(K)``) even if absent from this split, so
    confusion matrices of different seeds/fractions have the same shape and
    can be averaged; an absent class gets zero precision/recall/F1 (sklearn's
    ``zero_division=0``) rather than a warning. Macro-F1 is averaged over the
    classes present in ``y_true`` or ``y_pred`` (sklearn's convention), so a
    class missing from a tiny test set does not drag it to zero.
    """
    yt = np.asarray(y_true).astype(np.int64).ravel()
    yp = np.asarray(y_pred).astype(np.int64).ravel()
    if yt.shape != yp.shape:
        raise DataError(f"classification_metrics: y_true has {yt.size} labels but y_pred has {yp.size}")
    if yt.size == 0:
        raise DataError("classification_metrics: empty label arrays")
    k = len(class_names)
    bad = (yt < 0) | (yt >= k) | (yp < 0) | (yp >= k)
    if bad.any():
        raise DataError(
            f"classification_metrics: labels must lie in [0, {k}) for class_names {list(class_names)}; "
            f"got y_true range [{yt.min()}, {yt.max()}], y_pred range [{yp.min()}, {yp.max()}]"
        )
    labels = list(range(k))
    present = sorted(set(yt.tolist()) | set(yp.tolist()))
    prec, rec, f1, support = precision_recall_fscore_support(yt, yp, labels=labels, zero_division=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined kappa (one class only) is handled below
        kappa = float(cohen_kappa_score(yt, yp, labels=labels))
    if not math.isfinite(kappa):  # one class only in both arrays: agreement is trivial
        kappa = 1.0 if np.array_equal(yt, yp) else 0.0
    return {
        "accuracy": float(accuracy_score(yt, yp)),
        "macro_f1": float(f1_score(yt, yp, labels=present, average="macro", zero_division=0)),
        "cohen_kappa": float(kappa),
        "balanced_accuracy": float(_balanced_accuracy(yt, yp)),
        "n": int(yt.size),
        "confusion_matrix": confusion_matrix(yt, yp, labels=labels).astype(int).tolist(),
        "per_class": {
            str(name): {
                "precision": float(prec[i]),
                "recall": float(rec[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(class_names)
        },
    }


def _balanced_accuracy(yt: np.ndarray, yp: np.ndarray) -> float:
    """Mean recall over the classes present in ``y_true`` (sklearn, without its warning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true" is expected on tiny splits
        return float(balanced_accuracy_score(yt, yp))


def aggregate(values: Iterable[float]) -> dict[str, Any]:
    """Mean, std, min, max over seeds (plus the raw values and their count).

    ``std`` is the *sample* standard deviation (``ddof=1``), the usual
    "mean ± std over n runs" in papers, and 0.0 for a single run (where it
    is undefined) so the report never shows NaN.
    """
    vals = [float(v) for v in values]
    if not vals:
        raise DataError("aggregate: no values to aggregate")
    arr = np.asarray(vals, dtype=np.float64)
    return {
        "mean": float(arr.mean()),
        "std": float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
        "min": float(arr.min()),
        "max": float(arr.max()),
        "n": int(arr.size),
        "values": vals,
    }


def aggregate_runs(runs: Sequence[Mapping[str, Any]], keys: Sequence[str] = DEFAULT_KEYS) -> dict[str, dict[str, Any]]:
    """Aggregate each scalar metric in ``keys`` over a list of per-run metric dicts."""
    if not runs:
        raise DataError("aggregate_runs: no runs to aggregate")
    out: dict[str, dict[str, Any]] = {}
    for key in keys:
        missing = [i for i, r in enumerate(runs) if key not in r]
        if missing:
            raise DataError(f"aggregate_runs: metric {key!r} missing from run(s) {missing}")
        out[key] = aggregate(r[key] for r in runs)
    return out


def subset_f1(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    class_names: Sequence[str],
    score_classes: Sequence[str],
) -> float:
    """Mean F1 over ``score_classes`` only: the PhysioNet/CinC 2017 score is the mean F1 of N, A, O.

    Predictions of an unscored class (CinC's noisy ``~``) still count as
    errors of the scored classes, as in the challenge's own scoring.
    """
    missing = [c for c in score_classes if c not in class_names]
    if missing:
        raise DataError(f"subset_f1: score classes {missing} are not among the task's classes {list(class_names)}")
    idx = [list(class_names).index(c) for c in score_classes]
    f1 = f1_score(np.asarray(y_true), np.asarray(y_pred), labels=idx, average=None, zero_division=0)
    return float(np.mean(f1))


def selection_score(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    class_names: Sequence[str],
    select_classes: Sequence[str] | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> float:
    """The validation score that picks the probe's C and the fine-tuning epoch.

    ``metrics``: :func:`classification_metrics` of these same predictions,
    where the caller has them already (fine-tuning scores every epoch), so
    the macro-F1 rule does not compute them a second time.

    Macro-F1 over all classes, or, with ``select_classes``, the mean F1 over
    those classes only (:func:`subset_f1`), i.e. the score a task reports.
    Why both: on CinC 2017 the reported score ignores the noise class, which
    has ~9 of the 2,000 selection windows; choosing by 4-class macro-F1 let
    those few windows decide a quarter of the choice, and choosing by the
    reported score gave better probes on held-out validation windows
    (``experiments/cinc_select.yaml``; ``bench/results/cinc_select_val.json``).
    """
    if select_classes:
        return subset_f1(y_true, y_pred, class_names, select_classes)
    return float((metrics or classification_metrics(y_true, y_pred, class_names))["macro_f1"])


def vote_by_group(
    y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, n_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Record-level labels and predictions: each record's windows vote (majority, ties -> lower class index).

    The true label of a record is the majority of its windows' labels (all
    equal in the datasets here: labels are per record/segment). Returns
    ``(y_true_records, y_pred_records)`` ordered by group id.
    """
    yt, yp, g = (np.asarray(a).astype(np.int64).ravel() for a in (y_true, y_pred, groups))
    if not (yt.size == yp.size == g.size):
        raise DataError(f"vote_by_group: {yt.size} labels, {yp.size} predictions, {g.size} group ids")
    uniq, inv = np.unique(g, return_inverse=True)
    true_votes = np.zeros((uniq.size, n_classes), dtype=np.int64)
    pred_votes = np.zeros((uniq.size, n_classes), dtype=np.int64)
    np.add.at(true_votes, (inv, yt), 1)
    np.add.at(pred_votes, (inv, yp), 1)
    return true_votes.argmax(axis=1), pred_votes.argmax(axis=1)


def task_scores(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    class_names: Sequence[str],
    score_classes: Sequence[str] | None = None,
    groups: np.ndarray | None = None,
) -> dict[str, float]:
    """The :data:`EXTRA_KEYS` that apply: ``challenge_f1`` when the task has score classes,
    ``record_*`` when window -> record ids are known."""
    out: dict[str, float] = {}
    if score_classes:
        out["challenge_f1"] = subset_f1(y_true, y_pred, class_names, score_classes)
    if groups is not None:
        rt, rp = vote_by_group(y_true, y_pred, groups, len(class_names))
        rec = classification_metrics(rt, rp, class_names)
        out["record_accuracy"] = rec["accuracy"]
        out["record_macro_f1"] = rec["macro_f1"]
        out["n_records"] = int(rt.size)
        if score_classes:
            out["record_challenge_f1"] = subset_f1(rt, rp, class_names, score_classes)
    return out


def record_level_scores(
    y_records: np.ndarray,
    pred_records: np.ndarray,
    y_windows: np.ndarray,
    pred_windows: np.ndarray | None,
    class_names: Sequence[str],
    score_classes: Sequence[str] | None = None,
) -> dict[str, float]:
    """The :data:`EXTRA_KEYS` of a record-level unit: ``record_*`` (the headline, also as
    ``challenge_f1``) and, when window predictions are given, ``window_*`` beside them."""
    rec = classification_metrics(y_records, pred_records, class_names)
    out: dict[str, float] = {
        "record_accuracy": rec["accuracy"],
        "record_macro_f1": rec["macro_f1"],
        "n_records": int(np.asarray(y_records).size),
    }
    if score_classes:
        out["record_challenge_f1"] = out["challenge_f1"] = subset_f1(
            y_records, pred_records, class_names, score_classes
        )
    if pred_windows is not None:
        win = classification_metrics(y_windows, pred_windows, class_names)
        out["window_accuracy"], out["window_macro_f1"] = win["accuracy"], win["macro_f1"]
        if score_classes:
            out["window_challenge_f1"] = subset_f1(y_windows, pred_windows, class_names, score_classes)
    return out
