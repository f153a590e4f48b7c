"""The dataset registry: every dataset is a plugin that registers itself.

A plugin is a module or package in ``trls_core/datasets/`` that, on import,
calls :func:`register` with a :class:`Dataset`: its name, the settings model
of its params.yaml section (``fetch``, ``parquet``, ``spectrogram``), its
fetch and its table builder. The package is scanned for plugins, so there
is no list to edit elsewhere: a new dataset is one new module, its test and
its params.yaml section (docs/datasets/adding.md).

A params.yaml section is read by the plugin of its ``kind`` key when it has
one (``ecg200: {kind: custom, ...}``: a user dataset read by the ``custom``
plugin), else by the plugin of its own name (``epilepsy:``).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import BaseModel

from trls_core.errors import ConfigError
from trls_core.settings.base import SpectrogramParams, Strict

__all__ = [
    "Dataset",
    "DatasetSettings",
    "data_mirror",
    "get_dataset",
    "plugin_for",
    "plugin_of",
    "plugins",
    "register",
]

PACKAGE = "trls_core.datasets"


class DatasetSettings(Strict):
    """A dataset's params.yaml section; a plugin narrows ``fetch`` and ``parquet`` to its own models."""

    fetch: BaseModel
    parquet: BaseModel
    spectrogram: SpectrogramParams


@dataclass(frozen=True)
class Dataset:
    """How one dataset goes from its source to the windows Parquet contract (``trls_core.data.parquet``).

    ``fetch(dest, section)`` fills ``data/raw/<name>/`` and returns its
    manifest; ``table(raw_dir, section)`` returns the windows table and its
    metadata (``rejected``: the records left out, with the reason).
    """

    name: str
    description: str
    settings: type[DatasetSettings]
    fetch: Callable[[Path, Any], dict[str, Any]]
    table: Callable[[Path, Any], tuple[pa.Table, dict[str, Any]]]

    @property
    def code(self) -> Path:
        """The plugin's module, or its package folder: what the dataset's DVC stages depend on."""
        file = Path(sys.modules[self.settings.__module__].__file__ or "")
        return file.parent if file.name == "__init__.py" else file


_REGISTRY: dict[str, Dataset] = {}
_SCANNED: list[bool] = []


def register(dataset: Dataset) -> Dataset:
    """Add a plugin (called by the plugin module on import); a name registered by another module fails."""
    name = dataset.name
    if not name or not name.replace("_", "").isalnum() or not name[0].isalpha():
        raise ConfigError(f"dataset plugin name {name!r}: letters, digits and '_', starting with a letter")
    old = _REGISTRY.get(name)
    if old is not None and old.settings.__module__ != dataset.settings.__module__:
        raise ConfigError(
            f"dataset {name!r} is registered twice ({old.settings.__module__}, {dataset.settings.__module__})"
        )
    _REGISTRY[name] = dataset
    return dataset


def _scan() -> None:
    """Import every module and package of ``trls_core.datasets`` once: each registers itself."""
    if _SCANNED:
        return
    _SCANNED.append(True)
    package = importlib.import_module(PACKAGE)
    for info in pkgutil.iter_modules(package.__path__):
        if info.name != "registry" and not info.name.startswith("_"):
            importlib.import_module(f"{PACKAGE}.{info.name}")


def plugins() -> dict[str, Dataset]:
    """Every registered dataset plugin by name."""
    _scan()
    return dict(sorted(_REGISTRY.items()))


def get_dataset(name: str) -> Dataset:
    """The plugin called ``name``; an unknown name fails listing the known ones."""
    found = plugins().get(name)
    if found is None:
        raise ConfigError(f"unknown dataset plugin {name!r} (plugins: {', '.join(plugins())})")
    return found


def plugin_for(key: str, section: Any) -> Dataset | None:
    """The plugin that reads the params.yaml section ``key`` (by its ``kind``, else its name), if any."""
    kind = section.get("kind") if isinstance(section, dict) else None
    return plugins().get(kind if isinstance(kind, str) else key)


def plugin_of(section: DatasetSettings) -> Dataset:
    """The plugin whose settings model ``section`` is."""
    for dataset in plugins().values():
        if type(section) is dataset.settings:
            return dataset
    raise ConfigError(f"no dataset plugin reads {type(section).__name__}")


def data_mirror(fetch: Any) -> Path | None:
    """The local mirror folder of a fetch section: ``TRLS_DATA_MIRROR`` wins over its ``mirror``."""
    value = os.environ.get("TRLS_DATA_MIRROR") or fetch.mirror
    return Path(value).expanduser() if value else None
