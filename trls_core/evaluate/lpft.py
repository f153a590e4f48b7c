"""The linear-probe half of LP-FT (Kumar et al. 2022): the classifier module and its probe-fitted head.

Why its own module: fine-tuning starts from the validation-tuned logistic
regression on frozen features, with the standardisation folded into the
linear head, so the model at "epoch 0" predicts exactly what the probe does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from trls_core.evaluate.embedding import embed
from trls_core.evaluate.probing import select_and_fit
from trls_core.pooling import Groups

__all__ = ["HEAD_NORMS", "Classifier", "head_logits", "init_head_from_probe", "make_head"]

HEAD_NORMS = ("folded", "batch_norm")


class Classifier(nn.Module):
    """Encoder + linear head; a named module so the state dict keys are stable."""

    def __init__(self, encoder: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def make_head(rep_dim: int, n_classes: int, norm: str) -> nn.Module:
    """The classifier head: ``folded`` a bare linear layer, ``batch_norm`` standardisation then linear.

    Why ``batch_norm``: the probe standardises each feature before its
    logistic regression. Folded into one linear layer, a feature with a tiny
    spread gets a weight of ``coef / std``, so when fine-tuning moves the
    encoder, a small drift in that feature swings the logits (measured on
    CinC 2017: a from-scratch TFRNN started at a training loss of 21.6 with
    the folded head). A ``BatchNorm1d`` without affine weights, started at
    the probe's mean and variance, predicts exactly what the probe does in
    eval mode and re-standardises with batch statistics while training.
    """
    if norm == "folded":
        return nn.Linear(rep_dim, n_classes)
    if norm == "batch_norm":
        return nn.Sequential(nn.BatchNorm1d(rep_dim, affine=False), nn.Linear(rep_dim, n_classes))
    raise ValueError(f"head norm must be one of {HEAD_NORMS}, got {norm!r}")


def _linear(head: nn.Module) -> nn.Linear:
    return head if isinstance(head, nn.Linear) else head[-1]


@torch.no_grad()
def head_logits(model: Classifier, z: np.ndarray, batch_size: int, device: str | torch.device) -> np.ndarray:
    """``model.head`` on features ``z`` = ``model.encoder(x)`` (eval mode), batch by batch like the full model.

    The same numbers as the full model on ``x``, without the encoder pass,
    when ``z`` came from ``embed`` of the same weights with the same batches.
    """
    model.eval()
    out = []
    for i in range(0, len(z), batch_size):
        zb = torch.tensor(z[i : i + batch_size], dtype=torch.float32, device=device)
        out.append(model.head(zb).float().cpu())
    return torch.cat(out).numpy()


@torch.no_grad()
def init_head_from_probe(
    model: Classifier,
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
    z_train: np.ndarray | None = None,
    z_val: np.ndarray | None = None,
) -> None:
    """Set ``model.head`` to the validation-tuned logistic regression on frozen features.

    With groups the probe is fitted on record means of the embeddings: a
    linear head applied to each window and averaged gives exactly the
    probe's record logits, so fine-tuning starts from the record-level probe.
    ``z_train`` / ``z_val``: the frozen features of ``x_train`` / ``x_val``
    when the caller already has them (``embed`` of the same weights, batch
    size and device), so they are not computed again.
    """
    from threadpoolctl import threadpool_limits

    z_tr = z_train if z_train is not None else embed(model.encoder, x_train, batch_size=batch_size, device=device)
    z_va = z_val if z_val is not None else embed(model.encoder, x_val, batch_size=batch_size, device=device)
    if train_groups is not None:
        z_tr, y_train = train_groups.mean(z_tr), train_groups.labels(y_train, "finetune train")
    if val_groups is not None:
        z_va, y_val = val_groups.mean(z_va), val_groups.labels(y_val, "finetune val")
    with threadpool_limits(limits=1):
        clf, scaler, _, _ = select_and_fit(
            z_tr, y_train, z_va, y_val, class_names, seed, [float(c) for c in grid], 2000, select_classes
        )
    linear = _linear(model.head)
    if linear is model.head:  # standardisation folded into the linear layer
        coef = clf.coef_ / scaler.scale_[None, :]
        bias = clf.intercept_ - (clf.coef_ * (scaler.mean_ / scaler.scale_)[None, :]).sum(axis=1)
    else:  # the BatchNorm holds the standardisation: sqrt(running_var + eps) == the scaler's scale
        norm = model.head[0]
        norm.running_mean.copy_(torch.as_tensor(scaler.mean_, dtype=norm.running_mean.dtype))
        var = np.maximum(scaler.scale_**2 - norm.eps, 0.0)
        norm.running_var.copy_(torch.as_tensor(var, dtype=norm.running_var.dtype))
        coef, bias = clf.coef_, clf.intercept_
    classes = np.asarray(clf.classes_)
    weight = np.zeros((n_classes, coef.shape[1]))
    b = np.full(n_classes, -20.0)  # classes absent from the subset start (almost) impossible
    if coef.shape[0] == 1:  # binary: sklearn keeps one row, logit(classes[1]) - logit(classes[0])
        weight[classes[1]], b[classes[1]] = coef[0], bias[0]
        weight[classes[0]], b[classes[0]] = 0.0, 0.0
    else:
        weight[classes], b[classes] = coef, bias
    linear.weight.copy_(torch.as_tensor(weight, dtype=linear.weight.dtype))
    linear.bias.copy_(torch.as_tensor(b, dtype=linear.bias.dtype))
