"""Loading the spectrogram stage's outputs (safetensors + meta.json, no pickle)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from trls_core.errors import ConfigError, DataError
from trls_core.jsonfile import read_json_object


@dataclass
class SplitTensors:
    x: torch.Tensor  # (N, C, F, T) float32
    y: torch.Tensor  # (N,) int64 labels of the chosen task


def load_meta(directory: Path) -> dict[str, Any]:
    """The spectrogram stage's ``meta.json``; a missing, truncated or non-object file fails naming it."""
    return read_json_object(Path(directory) / "meta.json", "run `dvc repro` to build the spectrograms first")


def task_info(meta: dict[str, Any], task: str) -> dict[str, Any]:
    """Key and class names of ``task``; an unknown task lists the known ones."""
    tasks = meta.get("tasks", {})
    if not isinstance(tasks, dict):
        raise DataError(
            f"meta.json of dataset {meta.get('dataset')!r}: 'tasks' is not a mapping; rebuild (`dvc repro`)"
        )
    if task not in tasks:
        raise ConfigError(
            f"evaluate.task: unknown task {task!r} for dataset {meta.get('dataset')!r}; known: {sorted(tasks)}"
        )
    info = tasks[task]
    if not isinstance(info, dict) or not {"key", "classes"} <= set(info):
        raise DataError(
            f"meta.json of dataset {meta.get('dataset')!r}: task {task!r} lacks 'key'/'classes'; rebuild (`dvc repro`)"
        )
    return info


def load_split(directory: Path, split: str, task: str | None = None) -> SplitTensors:
    """Load one split; labels from ``task`` (default: the ``y`` column)."""
    path = Path(directory) / f"{split}.safetensors"
    if not path.is_file():
        raise DataError(f"{path} not found: run `dvc repro` to build the spectrograms first")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable safetensors file ({exc})") from exc
    key = "y" if task is None else task_info(load_meta(directory), task)["key"]
    for field in ("x", key):
        if field not in tensors:
            raise DataError(f"{path}: field {field!r} is missing")
    return SplitTensors(x=tensors["x"].float(), y=tensors[key].long())


def load_labels(directory: Path, split: str, task: str | None = None) -> torch.Tensor:
    """Only the labels of one split (``task`` as in :func:`load_split`), without reading the spectrograms.

    Raw-window methods need the split's labels, not its (much larger) spectrogram tensor.
    """
    from safetensors import safe_open

    path = Path(directory) / f"{split}.safetensors"
    if not path.is_file():
        raise DataError(f"{path} not found: run `dvc repro` to build the spectrograms first")
    key = "y" if task is None else task_info(load_meta(directory), task)["key"]
    try:
        with safe_open(str(path), framework="pt") as fh:
            if key not in fh.keys():
                raise DataError(f"{path}: field {key!r} is missing")
            return fh.get_tensor(key).long()
    except (SafetensorError, OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable safetensors file ({exc})") from exc


def load_normaliser(directory: Path) -> dict[str, torch.Tensor]:
    path = Path(directory) / "normaliser.safetensors"
    if not path.is_file():
        raise DataError(f"{path} not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable safetensors file ({exc}); rebuild the spectrograms (`dvc repro`)") from exc


def load_records(directory: Path, split: str) -> tuple[torch.Tensor, list[str]]:
    """Per-window record index of ``split`` and the record ids it indexes.

    ``ids[idx[i]]`` is the record of window ``i``: average window
    predictions over equal indices for record-level predictions (CinC 2017
    is scored per record).
    """
    directory = Path(directory)
    path = directory / "records.json"
    if not path.is_file():
        raise DataError(f"{path} not found: rebuild the spectrograms (`dvc repro`) to get record ids")
    ids = read_json_object(path, "rebuild the spectrograms (`dvc repro`)").get(split)
    if not isinstance(ids, list):
        raise DataError(f"{path}: no list of record ids for split {split!r}")
    from safetensors import safe_open

    tpath = directory / f"{split}.safetensors"
    try:  # only this field: the split's spectrograms (325 MB for CinC's train split) are not read
        with safe_open(str(tpath), framework="pt") as fh:
            if "record_idx" not in fh.keys():
                raise DataError(f"{tpath}: field 'record_idx' is missing")
            return fh.get_tensor("record_idx").long(), list(ids)
    except (SafetensorError, OSError, ValueError) as exc:
        raise DataError(f"{tpath}: unreadable safetensors file ({exc})") from exc
