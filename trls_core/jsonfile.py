"""Reading the JSON files the stages write (``meta.json``, ``encoder.json``, ``records.json``).

A file cut short by a full disk or edited by hand must fail naming the file
and what to rerun, not as a ``JSONDecodeError`` traceback from deep inside a
stage; and a file that parses but is not the expected mapping must fail the
same way rather than as a ``KeyError`` later.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trls_core.errors import DataError

__all__ = ["read_json_object"]


def read_json_object(path: Path, fix: str, keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON object in ``path``, with ``keys`` present; else a :class:`DataError` naming the file and ``fix``.

    ``fix`` says how to rebuild the file (e.g. "rebuild the spectrograms: dvc repro").
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} not found: {fix}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise DataError(f"{path}: unreadable JSON ({type(exc).__name__}: {exc}); truncated or edited? {fix}") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(data).__name__}; {fix}")
    missing = [k for k in keys if k not in data]
    if missing:
        raise DataError(f"{path}: missing key(s) {missing}; {fix}")
    return data
