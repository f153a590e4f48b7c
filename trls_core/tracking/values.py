"""Values as MLflow accepts them: safe keys, flattened parameters, cut strings, finite floats."""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["as_float", "flatten", "safe_key", "truncate"]

_BAD_KEY_CHARS = re.compile(r"[^/\w.\- :]")


def safe_key(key: str) -> str:
    """A valid MLflow param/metric/tag key: bad characters -> ``_``, no path tricks.

    MLflow allows only ``[/\\w.\\- :]``; DVC stage names contain ``@``.
    """
    k = _BAD_KEY_CHARS.sub("_", str(key)).strip("/") or "_"
    k = re.sub(r"/+", "/", k)
    parts = ["_" if p in (".", "..") else p for p in k.split("/")]
    return "/".join(parts)[:250]


def flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if hasattr(v, "model_dump"):  # pydantic sections of Params
            v = v.model_dump()
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def truncate(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."


def as_float(value: Any) -> float | None:
    """A finite float, or None for non-numeric / NaN / inf values."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            return None
        value = value.item()
    if isinstance(value, np.ndarray):
        if value.size != 1:
            return None
        value = value.item()
    if isinstance(value, (numbers.Real, np.generic)) and not isinstance(value, (str, bytes)):
        try:
            f = float(value)
        except (TypeError, ValueError):
            return None
        return f if math.isfinite(f) else None
    return None
