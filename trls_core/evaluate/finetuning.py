"""Label-fraction fine-tuning of a copy of the encoder plus a linear head (LP-FT): :func:`finetune`."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from trls_core.arrays import as_tensor, check_pair, to_numpy_labels
from trls_core.errors import DataError
from trls_core.evaluate.lpft import HEAD_NORMS, Classifier, head_logits, init_head_from_probe, make_head
from trls_core.evaluate.record_batches import RecordBatches
from trls_core.metrics import classification_metrics, selection_score
from trls_core.pooling import Groups

__all__ = ["finetune", "fraction_key"]


def fraction_key(fraction: float) -> str:
    """The results key of a label fraction: ``str(float(f))`` -> "0.01", "0.1", "1.0".

    One function so that writers and readers (reports, plots, the lead's
    flows) agree on the spelling.
    """
    return str(float(fraction))


@torch.no_grad()
def _logits(model: nn.Module, x: torch.Tensor, batch_size: int, device: str | torch.device) -> np.ndarray:
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size].to(device=device, dtype=torch.float32)
        out.append(model(xb).float().cpu())
    return torch.cat(out).numpy()


def _predict(
    model: nn.Module,
    x: torch.Tensor,
    batch_size: int,
    device: str | torch.device,
    groups: Groups | None = None,
    features: np.ndarray | None = None,
) -> np.ndarray:
    """Predicted labels per window, or per record (argmax of the mean window logits) with ``groups``.

    ``features``: the encoder's frozen output on ``x`` when known (only the head is then applied).
    """
    logits = (
        _logits(model, x, batch_size, device) if features is None else head_logits(model, features, batch_size, device)
    )
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


def _freeze_batchnorm(module: nn.Module) -> None:
    """Put every BatchNorm layer of ``module`` in eval mode and stop its affine weights' gradients."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)


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
    loss: str = "window",
    batch_norm: str = "train",
    head_norm: str = "folded",
    probe_features: tuple[np.ndarray | None, np.ndarray | None] | None = None,
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
    - ``loss="record"`` (record level only) trains on what is scored: each
      batch is a set of training records with all their windows, and the
      cross-entropy is taken on each record's mean window logits against the
      record's label (class weights, if on, from the record labels). With
      ``"window"`` every window carries its record's label, which also
      punishes windows that do not show their record's rhythm (a paroxysmal
      AF episode, a noisy stretch) and, measured on CinC 2017, moves the
      record score *down* from the probe.

    - ``probe_features=(z_train, z_val)``: ``embed(encoder, x_train)`` and
      ``embed(encoder, x_val)`` (batch ``eval_batch_size``, same device) when
      the caller already has them (either may be None): the LP head is fitted
      on them and the epoch-0 validation score applies only the head to
      ``z_val``; the same numbers as computing them here, without the
      encoder passes.
    - ``batch_norm="frozen"`` keeps the encoder's BatchNorm layers in eval
      mode while fine-tuning (their running statistics and affine weights
      stay as pretrained). BYOL fitted those statistics on *augmented* views;
      in train mode fine-tuning replaces them with clean-window statistics
      in the first steps, which shifts every feature under the probe-fitted
      head (LP-FT then starts by undoing its own starting point).

    - ``head_norm``: ``folded`` (the probe's standardisation folded into
      one linear layer) or ``batch_norm`` (a BatchNorm1d without affine
      weights before the linear layer; see :func:`make_head`).

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
        as_tensor(x_train, "finetune x_train"),
        as_tensor(x_val, "finetune x_val"),
        as_tensor(x_test, "finetune x_test"),
    )
    ytr = to_numpy_labels(y_train, "finetune y_train")
    yva = to_numpy_labels(y_val, "finetune y_val")
    yte = to_numpy_labels(y_test, "finetune y_test")
    check_pair(x_train, ytr, "finetune train")
    check_pair(x_val, yva, "finetune val")
    check_pair(x_test, yte, "finetune test")
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
    if loss not in ("window", "record"):
        raise DataError(f"finetune: loss must be 'window' or 'record', got {loss!r} (evaluate.finetune.loss)")
    if loss == "record" and g_tr is None:
        raise DataError("finetune: loss 'record' needs record ids (evaluate.level: record), got window-level data")
    ytr_records = g_tr.labels(ytr, "finetune train") if (loss == "record" and g_tr is not None) else None
    if head_norm not in HEAD_NORMS:
        raise DataError(f"finetune: head_norm must be one of {HEAD_NORMS}, got {head_norm!r} (evaluate.finetune)")
    if batch_norm not in ("train", "frozen"):
        raise DataError(f"finetune: batch_norm must be 'train' or 'frozen', got {batch_norm!r} (evaluate.finetune)")

    device = torch.device(device)
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seed)
        enc = copy.deepcopy(encoder).to(device)
        with torch.no_grad():
            enc.eval()
            rep_dim = enc(x_train[:1].to(device=device, dtype=torch.float32)).shape[-1]
        model = Classifier(enc, make_head(rep_dim, n_classes, head_norm)).to(device)
        if head_init == "linear_probe":
            init_head_from_probe(
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
                *(probe_features or (None, None)),
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
        weight_of = ytr if ytr_records is None else ytr_records
        weight = _class_weights(weight_of, n_classes).to(device) if class_weight else None
        loss_fn = nn.CrossEntropyLoss(weight=weight)

        n = len(ytr)
        bs = min(int(batch_size), n)
        steps = max(math.ceil(n / bs), int(min_steps_per_epoch))
        batches = None
        if ytr_records is not None and g_tr is not None:
            # records per batch so that a batch holds about `batch_size` windows on average
            batches = RecordBatches(g_tr, max(1, round(bs * g_tr.n / n)), torch.as_tensor(ytr_records))
            steps = max(math.ceil(g_tr.n / batches.per_batch), int(min_steps_per_epoch))
        if max_steps_per_epoch is not None:
            steps = max(1, min(steps, int(max_steps_per_epoch)))
        gen = torch.Generator().manual_seed(seed)
        y_tr_t = torch.as_tensor(ytr)

        history: list[dict[str, Any]] = []
        best_f1, best_epoch, best_state, best_val = -1.0, 0, None, None
        since_best = 0
        if head_init == "linear_probe":  # the LP starting point competes as epoch 0
            z_val0 = probe_features[1] if probe_features is not None else None
            pred0 = _predict(model, x_val, eval_batch_size, device, g_va, features=z_val0)
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
            if batch_norm == "frozen":
                _freeze_batchnorm(model.encoder)
            order = torch.randperm(n, generator=gen)
            pos, total, count = 0, 0.0, 0
            if batches is not None:
                batches.shuffle(gen)
            for _ in range(steps):
                if batches is not None:  # record level: the loss of each record's mean window logits
                    idx, seg, yb = batches.next(gen)
                    xb = x_train[idx].to(device=device, dtype=torch.float32)
                    if augment is not None:
                        xb = augment(xb)
                    logits = model(xb)
                    seg = seg.to(device)
                    pooled = torch.zeros(len(yb), logits.shape[1], device=device, dtype=logits.dtype)
                    pooled.index_add_(0, seg, logits)
                    pooled = pooled / torch.bincount(seg, minlength=len(yb)).unsqueeze(1).to(logits.dtype)
                    batch_loss, size = loss_fn(pooled, yb.to(device)), len(yb)
                else:
                    if pos + bs > n:  # start a fresh permutation rather than a short last batch
                        order, pos = torch.randperm(n, generator=gen), 0
                    idx = order[pos : pos + bs]
                    pos += bs
                    xb = x_train[idx].to(device=device, dtype=torch.float32)
                    yb = y_tr_t[idx].to(device)
                    if augment is not None:
                        xb = augment(xb)
                    batch_loss, size = loss_fn(model(xb), yb), len(idx)
                opt.zero_grad(set_to_none=True)
                batch_loss.backward()
                opt.step()
                total += float(batch_loss.detach()) * size
                count += size
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
