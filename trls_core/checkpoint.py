"""Checkpoints as safetensors: no pickle, atomic, with JSON metadata.

A checkpoint holds named groups of tensors -- ``{"model": state_dict,
"optimizer": optimizer_state_to_tensors(opt.state_dict())}`` -- flattened to
``"<group>/<key>"`` in one safetensors file, plus a JSON ``meta`` dict (epoch,
params, data digests) in the file's metadata under ``"trls"``. Loading never
executes code, so a checkpoint from anywhere is safe to open.

An optimizer's state dict mixes tensors (AdamW moments, step counts) with
plain values (lr, betas, flags); the plain part travels as JSON bytes in a
uint8 tensor so the optimizer group is self-contained.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from trls_core.errors import DataError
from trls_core.io import atomic_path
from trls_core.litter import remove_litter

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "optimizer_state_to_tensors",
    "tensors_to_optimizer_state",
]

_SEP = "/"
_META_KEY = "trls"
_GROUPS_KEY = "trls_groups"
_OPT_JSON = "__json__"


def save_checkpoint(path: str | os.PathLike[str], tensors: dict[str, dict[str, Tensor]], meta: dict[str, Any]) -> None:
    """Write ``tensors`` (groups of named tensors) and ``meta`` to ``path`` atomically.

    Tensors are detached, moved to the CPU, made contiguous and cloned:
    safetensors refuses tensors that share storage (tied weights, views).
    """
    path = Path(path)
    flat: dict[str, Tensor] = {}
    for group, tdict in tensors.items():
        if not group or _SEP in group:
            raise ValueError(f"checkpoint {path}: group name {group!r} must be non-empty and contain no {_SEP!r}")
        for key, t in tdict.items():
            if not isinstance(t, Tensor):
                raise TypeError(
                    f"checkpoint {path}: {group}{_SEP}{key} is {type(t).__name__}, not a tensor "
                    "(optimizer state: use optimizer_state_to_tensors)"
                )
            flat[f"{group}{_SEP}{key}"] = t.detach().to("cpu").contiguous().clone()
    try:
        meta_json = json.dumps(meta, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise TypeError(f"checkpoint {path}: meta is not JSON-serialisable: {e}") from e
    metadata = {_META_KEY: meta_json, _GROUPS_KEY: json.dumps(list(tensors))}
    remove_litter(path.parent, path.name)  # a killed run's half-written checkpoint (logged), never a live writer's
    with atomic_path(path) as tmp:
        save_file(flat, str(tmp), metadata=metadata)


def load_checkpoint(
    path: str | os.PathLike[str], device: str = "cpu"
) -> tuple[dict[str, dict[str, Tensor]], dict[str, Any]]:
    """Read a checkpoint written by ``save_checkpoint``: (groups of tensors, meta).

    Raises FileNotFoundError for a missing file and DataError (naming the
    file) for a truncated, corrupt or foreign one.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path}: no such file")
    try:
        with safe_open(str(path), framework="pt", device=device) as f:
            metadata = f.metadata() or {}
            flat = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise DataError(f"checkpoint {path}: corrupt or truncated safetensors file ({e})") from e
    if _META_KEY not in metadata:
        raise DataError(f"checkpoint {path}: no {_META_KEY!r} metadata; not a trls checkpoint")
    try:
        meta = json.loads(metadata[_META_KEY])
        groups: list[str] = json.loads(metadata.get(_GROUPS_KEY, "[]"))
    except json.JSONDecodeError as e:
        raise DataError(f"checkpoint {path}: metadata is not valid JSON ({e})") from e
    out: dict[str, dict[str, Tensor]] = {g: {} for g in groups}
    for k, t in flat.items():
        group, sep, key = k.partition(_SEP)
        if not sep:
            raise DataError(f"checkpoint {path}: tensor key {k!r} has no group prefix")
        out.setdefault(group, {})[key] = t
    return out, meta


def optimizer_state_to_tensors(state_dict: dict[str, Any]) -> dict[str, Tensor]:
    """Flatten ``optimizer.state_dict()`` to named tensors for ``save_checkpoint``.

    Per-parameter state becomes ``state.<param index>.<name>`` (AdamW:
    ``step``, ``exp_avg``, ``exp_avg_sq``); Python numbers in the state are
    stored as float64 scalars and remembered, and ``param_groups`` (lr,
    betas, flags) travel as JSON bytes under ``__json__``.
    """
    out: dict[str, Tensor] = {}
    scalars: list[list[Any]] = []
    for idx, pstate in state_dict.get("state", {}).items():
        for name, v in pstate.items():
            key = f"state.{idx}.{name}"
            if isinstance(v, Tensor):
                out[key] = v
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                out[key] = torch.tensor(float(v), dtype=torch.float64)
                scalars.append([key, "int" if isinstance(v, int) else "float"])
            else:
                raise TypeError(f"optimizer state {key}: cannot store {type(v).__name__} as a tensor")
    blob = json.dumps({"param_groups": state_dict.get("param_groups", []), "scalars": scalars})
    out[_OPT_JSON] = torch.frombuffer(bytearray(blob.encode("utf-8")), dtype=torch.uint8).clone()
    return out


def tensors_to_optimizer_state(tensors: dict[str, Tensor]) -> dict[str, Any]:
    """Inverse of ``optimizer_state_to_tensors``: a dict for ``optimizer.load_state_dict``."""
    if _OPT_JSON not in tensors:
        raise DataError(f"optimizer tensors lack {_OPT_JSON!r}; not written by optimizer_state_to_tensors")
    info = json.loads(bytes(tensors[_OPT_JSON].to("cpu").numpy().tobytes()).decode("utf-8"))
    kinds = {k: kind for k, kind in info["scalars"]}
    state: dict[int, dict[str, Any]] = {}
    for key, t in tensors.items():
        if key == _OPT_JSON:
            continue
        prefix, idx, name = key.split(".", 2)
        if prefix != "state":
            raise DataError(f"optimizer tensors: unexpected key {key!r}")
        if key in kinds:
            v: Any = int(t.item()) if kinds[key] == "int" else float(t.item())
        else:
            v = t
        state.setdefault(int(idx), {})[name] = v
    groups = info["param_groups"]
    for g in groups:  # JSON turned tuples into lists; torch expects tuples for betas
        for k, v in list(g.items()):
            if k != "params" and isinstance(v, list):
                g[k] = tuple(v)
    return {"state": state, "param_groups": groups}
