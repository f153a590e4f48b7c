"""Downstream evaluation: embedding, linear probe, label-fraction fine-tuning.

Pure functions on tensors/arrays: no MLflow, no Prefect, no file I/O. The
caller (a stage or a flow) passes data in, gets plain dicts back (JSON-able
except where a docstring says otherwise) and logs them wherever it likes
through the optional callbacks.

Model selection only ever looks at the *validation* split (the C of the
linear probe, the best fine-tuning epoch); the test split is touched once,
at the end, to report. That is what makes the numbers comparable with
published ones.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from trls_core.errors import DataError
from trls_core.metrics import classification_metrics, selection_score
from trls_core.pooling import Groups

#: Fractions of the labelled training set of DESIGN.md §1.5.
DEFAULT_FRACTIONS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.5, 1.0)


def fraction_key(fraction: float) -> str:
    """The results key of a label fraction: ``str(float(f))`` -> "0.01", "0.1", "1.0".

    One function so that writers and readers (reports, plots, the lead's
    flows) agree on the spelling.
    """
    return str(float(fraction))


# --------------------------------------------------------------------------- helpers


def _to_numpy_labels(y: torch.Tensor | np.ndarray | Sequence[int], name: str) -> np.ndarray:
    arr = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if arr.ndim != 1:
        raise DataError(f"{name}: labels must be 1-D, got shape {tuple(arr.shape)}")
    return arr.astype(np.int64)


def _as_tensor(x: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.ndim < 2:
        raise DataError(f"{name}: expected a batch (N, ...), got shape {tuple(t.shape)}")
    return t


def _check_pair(x: Any, y: Any, name: str) -> None:
    if len(x) != len(y):
        raise DataError(f"{name}: {len(x)} inputs but {len(y)} labels")
    if len(x) == 0:
        raise DataError(f"{name}: empty split")


def _strip_arrays(d: dict[str, Any]) -> dict[str, Any]:
    """Drop numpy arrays (predictions) so the dict is JSON-serialisable."""
    return {k: v for k, v in d.items() if not isinstance(v, np.ndarray)}


# --------------------------------------------------------------------------- embed


@torch.no_grad()
def embed(
    encoder: nn.Module,
    x: torch.Tensor | np.ndarray,
    batch_size: int = 512,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Frozen representations (N, R) of ``x`` (N, ...) as float32 numpy.

    Runs in eval mode (no dropout, BatchNorm running stats) and restores the
    module's previous train/eval mode afterwards, so probing an encoder in
    the middle of pretraining does not silently switch it to eval.
    Inputs stay on the CPU and move to ``device`` batch by batch, so a whole
    split never has to fit in accelerator memory. The encoder is moved to
    ``device`` (in place): encoders are loaded from their safetensors on the
    CPU, and on a GPU host the probe would otherwise fail on CUDA inputs
    against CPU weights.
    """
    x = _as_tensor(x, "embed")
    encoder.to(device)
    was_training = encoder.training
    encoder.eval()
    try:
        out = []
        for i in range(0, len(x), max(1, int(batch_size))):
            xb = x[i : i + batch_size].to(device=device, dtype=torch.float32, non_blocking=True)
            z = encoder(xb)
            if z.ndim != 2:
                raise DataError(f"embed: encoder must return (B, R), got shape {tuple(z.shape)}")
            out.append(z.float().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)
    finally:
        encoder.train(was_training)


# --------------------------------------------------------------------------- linear probe


def _logreg_path(z: np.ndarray, y: np.ndarray, grid: Sequence[float], seed: int, max_iter: int):
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
    y_train = _to_numpy_labels(y_train, "linear_probe y_train")
    y_eval = _to_numpy_labels(y_eval, "linear_probe y_eval")
    _check_pair(z_train, y_train, "linear_probe train")
    _check_pair(z_eval, y_eval, "linear_probe eval")
    if z_train.shape[1] != z_eval.shape[1]:
        raise DataError(f"linear_probe: train has {z_train.shape[1]} features, eval has {z_eval.shape[1]}")
    if len(np.unique(y_train)) < 2:
        raise DataError("linear_probe: the training split holds a single class")
    if z_val is not None and y_val is not None:
        z_val = np.asarray(z_val).reshape(len(z_val), -1)
        y_val = _to_numpy_labels(y_val, "linear_probe y_val")
        _check_pair(z_val, y_val, "linear_probe val")
        if z_val.shape[1] != z_train.shape[1]:
            raise DataError(f"linear_probe: train has {z_train.shape[1]} features, val has {z_val.shape[1]}")
    else:
        z_val = y_val = None

    t0 = time.perf_counter()
    with threadpool_limits(limits=blas_threads):
        clf, scaler, best_c, c_scores = _select_and_fit(
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
    """(classifier fitted on all of z_train, its scaler, chosen C, {str(C): selection score})."""
    from sklearn.preprocessing import StandardScaler

    def best_on(a, ya, b, yb):  # type: ignore[no-untyped-def]
        scores: dict[str, float] = {}
        best = (-1.0, None, None)
        for c, clf in _logreg_path(a, ya, grid, seed, max_iter):
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
    _, clf = next(_logreg_path(a, y_train, [best_c], seed, max_iter))
    return clf, scaler, best_c, scores


# --------------------------------------------------------------------------- fine-tuning


class _Classifier(nn.Module):
    """Encoder + linear head; a named module so the state dict keys are stable."""

    def __init__(self, encoder: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


@torch.no_grad()
def _logits(model: nn.Module, x: torch.Tensor, batch_size: int, device: str | torch.device) -> np.ndarray:
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size].to(device=device, dtype=torch.float32)
        out.append(model(xb).float().cpu())
    return torch.cat(out).numpy()


def _predict(
    model: nn.Module, x: torch.Tensor, batch_size: int, device: str | torch.device, groups: Groups | None = None
) -> np.ndarray:
    """Predicted labels per window, or per record (argmax of the mean window logits) with ``groups``."""
    logits = _logits(model, x, batch_size, device)
    if groups is not None:
        logits = groups.mean(logits)
    return logits.argmax(axis=1).astype(np.int64)


def _class_weights(y: np.ndarray, n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights (sklearn's "balanced"); absent classes get weight 0."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    w = np.zeros(n_classes)
    present = counts > 0
    w[present] = len(y) / (present.sum() * counts[present])
    return torch.as_tensor(w, dtype=torch.float32)


@torch.no_grad()
def _init_head_from_probe(
    model: _Classifier,
    x_train: torch.Tensor,
    y_train: np.ndarray,
    x_val: torch.Tensor,
    y_val: np.ndarray,
    n_classes: int,
    class_names: Sequence[str],
    seed: int,
    grid: Sequence[float],
    batch_size: int,
    device: str | torch.device,
    select_classes: Sequence[str] | None = None,
    train_groups: Groups | None = None,
    val_groups: Groups | None = None,
) -> None:
    """Set ``model.head`` to the validation-tuned logistic regression on frozen features.

    With groups the probe is fitted on record means of the embeddings: a
    linear head applied to each window and averaged gives exactly the
    probe's record logits, so fine-tuning starts from the record-level probe.
    """
    from threadpoolctl import threadpool_limits

    z_tr = embed(model.encoder, x_train, batch_size=batch_size, device=device)
    z_va = embed(model.encoder, x_val, batch_size=batch_size, device=device)
    if train_groups is not None:
        z_tr, y_train = train_groups.mean(z_tr), train_groups.labels(y_train, "finetune train")
    if val_groups is not None:
        z_va, y_val = val_groups.mean(z_va), val_groups.labels(y_val, "finetune val")
    with threadpool_limits(limits=1):
        clf, scaler, _, _ = _select_and_fit(
            z_tr, y_train, z_va, y_val, class_names, seed, [float(c) for c in grid], 2000, select_classes
        )
    coef = clf.coef_ / scaler.scale_[None, :]
    bias = clf.intercept_ - (clf.coef_ * (scaler.mean_ / scaler.scale_)[None, :]).sum(axis=1)
    classes = np.asarray(clf.classes_)
    weight = np.zeros((n_classes, coef.shape[1]))
    b = np.full(n_classes, -20.0)  # classes absent from the subset start (almost) impossible
    if coef.shape[0] == 1:  # binary: sklearn keeps one row, logit(classes[1]) - logit(classes[0])
        weight[classes[1]], b[classes[1]] = coef[0], bias[0]
        weight[classes[0]], b[classes[0]] = 0.0, 0.0
    else:
        weight[classes], b[classes] = coef, bias
    model.head.weight.copy_(torch.as_tensor(weight, dtype=model.head.weight.dtype))
    model.head.bias.copy_(torch.as_tensor(b, dtype=model.head.bias.dtype))


def finetune(
    encoder: nn.Module,
    n_classes: int,
    x_train: torch.Tensor,
    y_train: torch.Tensor | np.ndarray,
    x_val: torch.Tensor,
    y_val: torch.Tensor | np.ndarray,
    x_test: torch.Tensor,
    y_test: torch.Tensor | np.ndarray,
    class_names: Sequence[str],
    epochs: int,
    batch_size: int,
    lr: float,
    encoder_lr: float | None,
    weight_decay: float,
    seed: int,
    device: str | torch.device = "cpu",
    augment: nn.Module | None = None,
    progress: bool = True,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    class_weight: bool = False,
    patience: int | None = None,
    min_steps_per_epoch: int = 4,
    eval_batch_size: int = 512,
    return_model: bool = False,
    max_steps_per_epoch: int | None = None,
    head_init: str = "linear_probe",
    probe_c_grid: Sequence[float] = (0.01, 0.1, 1.0, 10.0),
    select_classes: Sequence[str] | None = None,
    train_records: np.ndarray | None = None,
    val_records: np.ndarray | None = None,
    test_records: np.ndarray | None = None,
) -> dict[str, Any]:
    """Fine-tune a *copy* of ``encoder`` plus a linear head; report the best-validation epoch on test.

    - The encoder is deep-copied: the caller's pretrained weights are never
      modified, so one pretrained encoder serves every fraction and seed.
    - AdamW with two parameter groups: head at ``lr``, encoder at
      ``encoder_lr`` (``None`` = ``lr``; ``0`` freezes the encoder's weights
      while BatchNorm/dropout still run in train mode).
    - Tiny labelled subsets (1 % of 7,360 = 74 windows) still train: the
      batch size is capped at the subset size and each epoch makes at least
      ``min_steps_per_epoch`` optimisation steps (reshuffling as needed),
      so "an epoch" is never a single step. ``max_steps_per_epoch`` caps
      it from above: on a CPU budget a 100 % fraction then trains for a
      bounded number of steps between validation checks instead of full
      passes (a "round" of at most that many batches, fresh samples each).
    - ``head_init="linear_probe"`` (LP-FT, Kumar et al. 2022): the head
      starts as the logistic regression fitted on the frozen features of the
      *same labelled subset* (C chosen on validation, the standardisation
      folded into the weights), and that starting point is scored on
      validation as "epoch 0". Fine-tuning from a random head on
      unstandardised features distorts the pretrained features in the first
      steps and, on a CPU step budget, never catches up with the probe.
      ``"random"`` is the plain alternative.
    - After every epoch the model is scored on the validation split; the
      state with the best validation score (macro-F1, or the mean F1 over
      ``select_classes``: the same rule that picks the probe's C; ties ->
      earlier epoch) is kept and, at the end, evaluated once on the test split. ``patience``
      stops after that many epochs without improvement (``None`` = never).
    - ``augment`` (an ``nn.Module`` on (B, C, F, T) batches, e.g. a kornia
      pipeline) is applied to training batches only.
    - Randomness (head init, shuffling, dropout, augmentation) is seeded by
      ``seed`` inside a forked RNG, so the caller's global RNG is untouched.
    - Record level (``*_records``: the record of each window of that split,
      all three or none): windows train with their record's label; the head
      starts as the probe on record-mean embeddings; validation and test are
      scored per record on the mean of each record's window logits, so the
      epoch is chosen on the same record-level score that is reported.
      ``y_pred`` is then per record (ordered by record id) and
      ``y_pred_windows`` holds the per-window argmax.

    Returns the test metrics (:func:`classification_metrics`) plus
    ``best_epoch`` (1-based), ``best_val_score`` (the selection score),
    ``best_val_macro_f1``, ``val`` (validation
    metrics of the kept state, without per-class detail), ``n_train``,
    ``history`` (one dict per epoch: epoch, train_loss, val_accuracy,
    val_macro_f1, val_score, lr, encoder_lr, seconds), ``y_pred`` (numpy) and, if
    ``return_model``, ``model`` (the kept encoder+head on the CPU).
    """
    if epochs < 1:
        raise DataError(f"finetune: epochs must be >= 1, got {epochs}")
    if batch_size < 1:
        raise DataError(f"finetune: batch_size must be >= 1, got {batch_size}")
    if len(class_names) != n_classes:
        raise DataError(f"finetune: n_classes={n_classes} but {len(class_names)} class_names")
    x_train, x_val, x_test = (
        _as_tensor(x_train, "finetune x_train"),
        _as_tensor(x_val, "finetune x_val"),
        _as_tensor(x_test, "finetune x_test"),
    )
    ytr = _to_numpy_labels(y_train, "finetune y_train")
    yva = _to_numpy_labels(y_val, "finetune y_val")
    yte = _to_numpy_labels(y_test, "finetune y_test")
    _check_pair(x_train, ytr, "finetune train")
    _check_pair(x_val, yva, "finetune val")
    _check_pair(x_test, yte, "finetune test")
    if ytr.min() < 0 or ytr.max() >= n_classes:
        raise DataError(f"finetune: y_train labels must lie in [0, {n_classes}), got [{ytr.min()}, {ytr.max()}]")
    given = [r is not None for r in (train_records, val_records, test_records)]
    if any(given) and not all(given):
        raise DataError("finetune: record-level scoring needs train_records, val_records and test_records")
    g_tr = Groups.of(train_records, "finetune train records") if train_records is not None else None
    g_va = Groups.of(val_records, "finetune val records") if val_records is not None else None
    g_te = Groups.of(test_records, "finetune test records") if test_records is not None else None
    yva_windows = yva  # the probe that initialises the head pools them itself
    if g_va is not None and g_te is not None:  # all three or none (checked above)
        yva, yte = g_va.labels(yva, "finetune val"), g_te.labels(yte, "finetune test")

    device = torch.device(device)
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seed)
        enc = copy.deepcopy(encoder).to(device)
        with torch.no_grad():
            enc.eval()
            rep_dim = enc(x_train[:1].to(device=device, dtype=torch.float32)).shape[-1]
        model = _Classifier(enc, nn.Linear(rep_dim, n_classes)).to(device)
        if head_init == "linear_probe":
            _init_head_from_probe(
                model,
                x_train,
                ytr,
                x_val,
                yva_windows,
                n_classes,
                class_names,
                seed,
                probe_c_grid,
                eval_batch_size,
                device,
                select_classes,
                g_tr,
                g_va,
            )
        elif head_init != "random":
            raise DataError(f"finetune: head_init must be 'linear_probe' or 'random', got {head_init!r}")
        if augment is not None:
            augment = augment.to(device)

        enc_lr = lr if encoder_lr is None else float(encoder_lr)
        groups = [{"params": list(model.head.parameters()), "lr": float(lr)}]
        if enc_lr > 0:
            groups.append({"params": [p for p in model.encoder.parameters() if p.requires_grad], "lr": enc_lr})
        else:
            for p in model.encoder.parameters():
                p.requires_grad_(False)
        opt = torch.optim.AdamW(groups, weight_decay=float(weight_decay))
        weight = _class_weights(ytr, n_classes).to(device) if class_weight else None
        loss_fn = nn.CrossEntropyLoss(weight=weight)

        n = len(ytr)
        bs = min(int(batch_size), n)
        steps = max(math.ceil(n / bs), int(min_steps_per_epoch))
        if max_steps_per_epoch is not None:
            steps = max(1, min(steps, int(max_steps_per_epoch)))
        gen = torch.Generator().manual_seed(seed)
        y_tr_t = torch.as_tensor(ytr)

        history: list[dict[str, Any]] = []
        best_f1, best_epoch, best_state, best_val = -1.0, 0, None, None
        since_best = 0
        if head_init == "linear_probe":  # the LP starting point competes as epoch 0
            pred0 = _predict(model, x_val, eval_batch_size, device, g_va)
            vm0 = classification_metrics(yva, pred0, class_names)
            best_f1, best_epoch = selection_score(yva, pred0, class_names, select_classes, vm0), 0
            best_val = {k: v for k, v in vm0.items() if k != "per_class"}
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        epoch_iter = range(1, epochs + 1)
        if progress:
            from tqdm.auto import tqdm

            epoch_iter = tqdm(epoch_iter, desc=f"finetune n={n} seed={seed}", leave=False)
        for epoch in epoch_iter:
            t0 = time.perf_counter()
            model.train()
            order = torch.randperm(n, generator=gen)
            pos, total, count = 0, 0.0, 0
            for _ in range(steps):
                if pos + bs > n:  # start a fresh permutation rather than a short last batch
                    order, pos = torch.randperm(n, generator=gen), 0
                idx = order[pos : pos + bs]
                pos += bs
                xb = x_train[idx].to(device=device, dtype=torch.float32)
                yb = y_tr_t[idx].to(device)
                if augment is not None:
                    xb = augment(xb)
                loss = loss_fn(model(xb), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
                count += len(idx)
            val_pred = _predict(model, x_val, eval_batch_size, device, g_va)
            vm = classification_metrics(yva, val_pred, class_names)
            score = selection_score(yva, val_pred, class_names, select_classes, vm)
            rec = {
                "epoch": epoch,
                "train_loss": total / max(count, 1),
                "val_accuracy": vm["accuracy"],
                "val_macro_f1": vm["macro_f1"],
                "val_score": score,
                "lr": float(lr),
                "encoder_lr": enc_lr,
                "seconds": time.perf_counter() - t0,
            }
            history.append(rec)
            if on_epoch is not None:
                on_epoch(dict(rec))
            if score > best_f1:
                best_f1, best_epoch, since_best = score, epoch, 0
                best_val = {k: v for k, v in vm.items() if k != "per_class"}
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            else:
                since_best += 1
                if patience is not None and since_best >= patience:
                    break

        assert best_state is not None and best_val is not None  # at least one epoch ran
        model.load_state_dict(best_state)
        test_logits = _logits(model, x_test, eval_batch_size, device)
        y_pred_windows = test_logits.argmax(axis=1).astype(np.int64)
        y_pred = g_te.mean(test_logits).argmax(axis=1).astype(np.int64) if g_te is not None else y_pred_windows

    out = classification_metrics(yte, y_pred, class_names)
    out.update(
        {
            "best_epoch": best_epoch,
            "best_val_score": best_f1,
            "best_val_macro_f1": best_val["macro_f1"],
            "val": best_val,
            "n_train": n,
            "epochs_run": len(history),
            "history": history,
            "y_pred": y_pred,
        }
    )
    if g_te is not None:
        out["y_pred_windows"] = y_pred_windows
        out["n_records"] = g_te.n
    if return_model:
        out["model"] = model.cpu().eval()
    return out
