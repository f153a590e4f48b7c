"""Input checks shared by the evaluation code: label vectors, batches, JSON-able results."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from trls_core.errors import DataError

__all__ = ["as_tensor", "check_pair", "strip_arrays", "to_numpy_labels"]


def to_numpy_labels(y: torch.Tensor | np.ndarray | Sequence[int], name: str) -> np.ndarray:
    arr = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if arr.ndim != 1:
        raise DataError(f"{name}: labels must be 1-D, got shape {tuple(arr.shape)}")
    return arr.astype(np.int64)


def as_tensor(x: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.ndim < 2:
        raise DataError(f"{name}: expected a batch (N, ...), got shape {tuple(t.shape)}")
    return t


def check_pair(x: Any, y: Any, name: str) -> None:
    if len(x) != len(y):
        raise DataError(f"{name}: {len(x)} inputs but {len(y)} labels")
    if len(x) == 0:
        raise DataError(f"{name}: empty split")


def strip_arrays(result: Mapping[str, Any]) -> dict[str, Any]:
    """A result without numpy arrays (predictions, embeddings): what goes to JSON and MLflow."""
    return {k: v for k, v in result.items() if not isinstance(v, np.ndarray)}
