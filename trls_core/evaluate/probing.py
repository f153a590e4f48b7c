"""The linear probe: standardise + logistic regression on frozen features, C chosen on validation."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from trls_core.arrays import check_pair, to_numpy_labels
from trls_core.errors import DataError
from trls_core.evaluate.memo import Memo, array_digest
from trls_core.metrics import classification_metrics, selection_score

__all__ = ["linear_probe", "logreg_path", "select_and_fit"]


def logreg_path(z: np.ndarray, y: np.ndarray, grid: Sequence[float], seed: int, max_iter: int):
    """Yield ``(C, fitted classifier)`` for ascending C, each fit warm-started from the previous one.

    Warm starting along the regularisation path (strong -> weak) roughly
    halves the lbfgs iterations of the larger Cs. Each yielded classifier is
    a copy, so callers may keep it.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    # lbfgs fits the multinomial (softmax) model for >2 classes in sklearn >= 1.5;
    # `multi_class` was removed, so it is not passed.
    clf = LogisticRegression(solver="lbfgs", max_iter=int(max_iter), random_state=seed, warm_start=True)
    for c in sorted(float(v) for v in grid):
        clf.set_params(C=c)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # reported via n_iter instead
            clf.fit(z, y)
        yield c, copy.deepcopy(clf)


def _holdout_split(y: np.ndarray, seed: int, frac: float = 0.2) -> tuple[np.ndarray, np.ndarray] | None:
    """Stratified (train, val) indices carved from the training set, or None if too small."""
    rng = np.random.default_rng(seed)
    tr, va = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        if len(idx) < 2:
            return None
        k = max(1, int(round(frac * len(idx))))
        va.append(idx[:k])
        tr.append(idx[k:])
    return np.concatenate(tr), np.concatenate(va)


def linear_probe(
    z_train: np.ndarray,
    y_train: np.ndarray | torch.Tensor,
    z_eval: np.ndarray,
    y_eval: np.ndarray | torch.Tensor,
    class_names: Sequence[str],
    seed: int = 0,
    c_grid: Sequence[float] = (0.01, 0.1, 1.0, 10.0),
    z_val: np.ndarray | None = None,
    y_val: np.ndarray | torch.Tensor | None = None,
    max_iter: int = 2000,
    blas_threads: int | None = 1,
    select_classes: Sequence[str] | None = None,
    return_model: bool = False,
) -> dict[str, Any]:
    """Standardise + multinomial logistic regression on frozen features.

    C is chosen by the validation score on ``(z_val, y_val)`` (ties -> the
    smaller C): macro-F1, or the mean F1 over ``select_classes`` when given
    (the task's own score, :func:`trls_core.metrics.selection_score`); the model
    fitted on the whole training set with that C is the one scored. Without a validation split a stratified 20 % of the
    *training* set is held out for the choice and the chosen C is then
    refitted on the whole training set (the grid value closest to 1 is used
    when a class has a single sample). The eval/test labels are used only
    to score the final model, never for the choice.

    Works on any features, e.g. flattened spectrogram pixels for the
    ``spectrogram_linear`` control (``x.reshape(N, -1)``).

    ``blas_threads`` caps BLAS threads during the fits (``None`` = library
    default). Measured on Epilepsy 5-class pixels (7,360 × 759) on the
    shared 2-core machine under load: one lbfgs fit took 55 s with default
    threads and 4.6 s with one thread (spinning BLAS threads fight each
    other and other processes); raise it on a dedicated many-core machine.

    Returns the metrics of :func:`classification_metrics` on the eval split
    plus ``C``, ``c_scores`` (validation selection score per C, keys ``str(C)``),
    ``n_iter``, ``n_features``, ``n_train``, ``fit_seconds`` and ``y_pred``
    (numpy; strip it before JSON) and, with ``return_model``, ``model``: a
    callable mapping features to predicted labels (the fitted scaler +
    classifier; record-level evaluation uses it to also score single windows).
    """
    from threadpoolctl import threadpool_limits

    if not c_grid:
        raise DataError("linear_probe: c_grid is empty")
    z_train = np.asarray(z_train).reshape(len(z_train), -1)
    z_eval = np.asarray(z_eval).reshape(len(z_eval), -1)
    y_train = to_numpy_labels(y_train, "linear_probe y_train")
    y_eval = to_numpy_labels(y_eval, "linear_probe y_eval")
    check_pair(z_train, y_train, "linear_probe train")
    check_pair(z_eval, y_eval, "linear_probe eval")
    if z_train.shape[1] != z_eval.shape[1]:
        raise DataError(f"linear_probe: train has {z_train.shape[1]} features, eval has {z_eval.shape[1]}")
    if len(np.unique(y_train)) < 2:
        raise DataError("linear_probe: the training split holds a single class")
    if z_val is not None and y_val is not None:
        z_val = np.asarray(z_val).reshape(len(z_val), -1)
        y_val = to_numpy_labels(y_val, "linear_probe y_val")
        check_pair(z_val, y_val, "linear_probe val")
        if z_val.shape[1] != z_train.shape[1]:
            raise DataError(f"linear_probe: train has {z_train.shape[1]} features, val has {z_val.shape[1]}")
    else:
        z_val = y_val = None

    t0 = time.perf_counter()
    with threadpool_limits(limits=blas_threads):
        clf, scaler, best_c, c_scores = select_and_fit(
            z_train,
            y_train,
            z_val,
            y_val,
            class_names,
            seed,
            [float(c) for c in c_grid],
            max_iter,
            select_classes,
        )
        y_pred = clf.predict(scaler.transform(z_eval)).astype(np.int64)
    out = classification_metrics(y_eval, y_pred, class_names)
    out.update(
        {
            "C": best_c,
            "c_scores": c_scores,
            "n_iter": int(np.max(clf.n_iter_)),
            "n_features": int(z_train.shape[1]),
            "n_train": int(len(y_train)),
            "fit_seconds": float(time.perf_counter() - t0),
            "y_pred": y_pred,
        }
    )
    if return_model:

        def predict(z: np.ndarray) -> np.ndarray:
            with threadpool_limits(limits=blas_threads):
                return clf.predict(scaler.transform(np.asarray(z).reshape(len(z), -1))).astype(np.int64)

        out["model"] = predict
    return out


#: Fits already made in this process (trls_core.evaluate.memo): the probe of every evaluation seed and the
#: head of the 100 % fine-tuning fraction solve the same problem on the same features.
_FITS = Memo(max_bytes=64 * 2**20)


def select_and_fit(
    z_train,
    y_train,
    z_val,
    y_val,
    class_names,
    seed,
    grid,
    max_iter,  # type: ignore[no-untyped-def]
    select_classes=None,
):
    """(classifier fitted on all of z_train, its scaler, chosen C, {str(C): selection score}).

    Memoised on the exact inputs (:mod:`trls_core.evaluate.memo`) and the
    BLAS thread setting: a repeat returns a copy of the first fit. The seed
    is part of the key only without a validation split (it draws the
    held-out part); lbfgs itself does not use it (sklearn uses
    ``random_state`` for the sag/saga/liblinear solvers only).
    """
    from threadpoolctl import threadpool_info

    blas = tuple(sorted((i.get("internal_api", ""), int(i.get("num_threads") or 0)) for i in threadpool_info()))
    key = (
        "select_and_fit",
        array_digest(z_train, y_train, z_val, y_val),
        tuple(class_names),
        tuple(float(c) for c in grid),
        int(max_iter),
        tuple(select_classes) if select_classes else None,
        None if z_val is not None else int(seed),
        blas,
    )

    def fit():  # type: ignore[no-untyped-def]
        return _select_and_fit(z_train, y_train, z_val, y_val, class_names, seed, grid, max_iter, select_classes)

    return copy.deepcopy(_FITS.get_or_compute(key, fit))


def _select_and_fit(
    z_train,
    y_train,
    z_val,
    y_val,
    class_names,
    seed,
    grid,
    max_iter,  # type: ignore[no-untyped-def]
    select_classes=None,
):
    from sklearn.preprocessing import StandardScaler

    def best_on(a, ya, b, yb):  # type: ignore[no-untyped-def]
        scores: dict[str, float] = {}
        best = (-1.0, None, None)
        for c, clf in logreg_path(a, ya, grid, seed, max_iter):
            scores[str(c)] = selection_score(yb, clf.predict(b), class_names, select_classes)
            if scores[str(c)] > best[0]:  # strict: ties keep the smaller C
                best = (scores[str(c)], c, clf)
        return best[1], best[2], scores

    scaler = StandardScaler().fit(z_train)
    a = scaler.transform(z_train)
    if z_val is not None:
        # selection fits already use all of z_train: the chosen fit is the final model
        best_c, clf, scores = best_on(a, y_train, scaler.transform(z_val), y_val)
        return clf, scaler, best_c, scores
    scores = {}
    split = _holdout_split(y_train, seed) if len(grid) > 1 else None
    if split is not None and len(np.unique(y_train[split[0]])) > 1:
        tr, va = split
        sub_scaler = StandardScaler().fit(z_train[tr])
        best_c, _, scores = best_on(
            sub_scaler.transform(z_train[tr]), y_train[tr], sub_scaler.transform(z_train[va]), y_train[va]
        )
    else:
        best_c = min(grid, key=lambda c: abs(math.log10(c)))
    _, clf = next(logreg_path(a, y_train, [best_c], seed, max_iter))
    return clf, scaler, best_c, scores
