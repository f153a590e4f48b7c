"""A dataset is a plugin: one registered module is all the stages need (docs/datasets/adding.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import yaml
from pydantic import Field

from trls_core.config import load_params
from trls_core.data.parquet import windows_frame
from trls_core.data.windows import assign_splits
from trls_core.datasets import registry
from trls_core.datasets.registry import Dataset, DatasetSettings, plugin_of, plugins, register
from trls_core.errors import ConfigError
from trls_core.settings.base import SpectrogramParams, Strict


# ----------------------------------------------------- a whole dataset plugin, as a module would hold it
class ToyFetchParams(Strict):
    n_records: int = Field(gt=0)


class ToyParquetParams(Strict):
    window: int = Field(gt=0)
    seed: int


class ToyParams(DatasetSettings):
    fetch: ToyFetchParams
    parquet: ToyParquetParams
    spectrogram: SpectrogramParams


def fetch(dest: Path, section: ToyParams) -> dict[str, Any]:
    dest.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(0).standard_normal((section.fetch.n_records, 1, 256)).astype(np.float32)
    np.save(dest / "x.npy", x)
    return {"dataset": "toy", "source": "generated", "content_digest": "toy"}


def table(raw_dir: Path, section: ToyParams) -> tuple[pa.Table, dict[str, Any]]:
    p = section.parquet
    x = np.load(raw_dir / "x.npy")[:, :, : p.window]
    y = np.arange(len(x)) % 2
    x[y == 1] *= 3.0
    rid = np.asarray([f"r{i}" for i in range(len(x))])
    split = assign_splits(y, rid, "grouped", 0.2, 0.2, p.seed)
    names = np.asarray(["quiet", "loud"])
    tbl = windows_frame(x, rid, rid, rid, split, y, names[y], fs=100.0)
    return tbl, {"tasks": {"label": {"column": "label", "classes": list(names)}}, "rejected": []}


# -----------------------------------------------------------------------------------------------


@pytest.fixture
def toy_plugin(monkeypatch: pytest.MonkeyPatch) -> Dataset:
    monkeypatch.setattr(registry, "_REGISTRY", {**plugins()})  # registered for this test only
    return register(Dataset("toy", "a generated two-class toy", ToyParams, fetch, table))


def test_a_registered_module_is_all_a_dataset_needs(toy_plugin: Dataset, tiny_params: Path, tmp_path: Path) -> None:
    """No list, union or dvc.yaml entry to edit: a section and the plugin run through every stage."""
    from trls_core.data.tensors import load_meta, load_split
    from trls_core.stages._common import run_stage
    from trls_core.stages.fetch import fetch as fetch_stage
    from trls_core.stages.parquet import build_parquet
    from trls_core.stages.spectrogram import build_spectrograms

    raw = yaml.safe_load(tiny_params.read_text())
    raw["datasets"]["toy"] = {"code": "tests/unit/test_dataset_plugins.py"}
    raw["toy"] = {
        "fetch": {"n_records": 40},
        "parquet": {"window": 128, "seed": 0},
        "spectrogram": {**raw["epilepsy"]["spectrogram"], "n_fft": 16, "hop": 8},
    }
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    p = load_params(params)
    assert plugin_of(p.dataset("toy")) is toy_plugin and "toy" in p.known_datasets()
    root = tmp_path / "proj"
    for name, fn in (("fetch", fetch_stage), ("parquet", build_parquet), ("spectrogram", build_spectrograms)):
        assert run_stage(name, fn, ["toy", "--params", str(params), "--root", str(root)]) == 0
    assert load_meta(root / "data/spectrograms/toy")["tasks"]["label"]["classes"] == ["quiet", "loud"]
    assert load_split(root / "data/spectrograms/toy", "train", "label").x.shape[1:] == (1, 9, 17)
    assert json.loads((root / "data/parquet/toy/summary.json").read_text())["n_windows"] == 40

    raw["toy"]["parquet"]["windw"] = 64
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(ConfigError, match=r"toy\.parquet\.windw: unknown key"):
        load_params(params)


def test_a_name_is_registered_once(toy_plugin: Dataset) -> None:
    class Other(ToyParams):
        pass

    Other.__module__ = "somewhere.else"
    with pytest.raises(ConfigError, match="registered twice"):
        register(Dataset("toy", "another toy", Other, fetch, table))
    with pytest.raises(ConfigError, match="dataset plugin name"):
        register(Dataset("1toy", "a bad name", ToyParams, fetch, table))


def test_the_shipped_plugins_register_themselves() -> None:
    assert {"epilepsy", "cinc2017", "sleepedf", "mitdb", "custom"} <= set(plugins())
    for name, dataset in plugins().items():
        assert dataset.name == name and issubclass(dataset.settings, DatasetSettings)
        assert dataset.code.is_relative_to(Path(registry.__file__).parent)
