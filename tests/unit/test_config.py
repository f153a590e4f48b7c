"""Config tier: params.yaml is the one source of values; every profile and section instantiates; typos name the key."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from trls_core.config import Params, deep_merge, flatten, load_params, read_raw_params, resolve_params
from trls_core.datasets.registry import DatasetSettings, plugin_for, plugin_of, plugins
from trls_core.errors import ConfigError
from trls_core.settings.augment import AUGMENT_OPS
from trls_core.settings.base import Strict

ROOT = Path(__file__).resolve().parents[2]
PARAMS = ROOT / "params.yaml"


@pytest.mark.parametrize("profile", sorted(read_raw_params(PARAMS)["profiles"]))
def test_every_profile_instantiates(profile: str) -> None:
    """lightning-hydra style: every overlay of params.yaml builds what it configures."""
    p = load_params(PARAMS, profile=profile)
    assert p.profile == profile
    for name in p.datasets:
        assert p.dataset(name).parquet.window > 0
    for name in p.known_datasets():  # every dataset section, in `datasets` or not, with its plugin's model
        assert isinstance(p.dataset(name), plugin_for(name, read_raw_params(PARAMS)[name]).settings)
    from trls_core.augment import TwoViews
    from trls_core.augment_raw import RawTwoViews
    from trls_core.models import build_encoder

    TwoViews(p.augment.view_a, p.augment.view_b)
    RawTwoViews(p.augment.raw.weak.model_dump(), p.augment.raw.strong.model_dump())
    for encoder in ("tfrnn", "cnn", "timeconv", "tstcc", "ts2vec"):
        build_encoder(encoder, in_channels=1, **getattr(p.model, encoder).model_dump())
    assert Params.model_validate(p.model_dump()) == p  # a dump (`trls params`) is a valid params file


def _models(root: type[BaseModel]) -> set[type[BaseModel]]:
    """``root`` and every settings model reachable from its fields (unions and containers included)."""
    seen: set[type[BaseModel]] = set()
    todo = [root]
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        for f in model.model_fields.values():
            stack = [f.annotation]
            while stack:
                t = stack.pop()
                if isinstance(t, type) and issubclass(t, Strict):
                    todo.append(t)
                stack.extend(typing.get_args(t))
    return seen


SETTINGS_MODELS = sorted(
    _models(Params) | {m for d in plugins().values() for m in _models(d.settings)} | set(AUGMENT_OPS),
    key=lambda m: m.__qualname__,
)


@pytest.mark.parametrize("model", SETTINGS_MODELS, ids=lambda m: m.__qualname__)
def test_settings_models_hold_no_values(model: type[BaseModel]) -> None:
    """params.yaml is the only place a value is written: no field of a settings model has a default."""
    with_default = [name for name, f in model.model_fields.items() if not f.is_required()]
    assert with_default == [], f"{model.__qualname__}: defaults for {with_default} (write them in params.yaml)"
    if model is not DatasetSettings:
        with pytest.raises(ValidationError) as err:
            model.model_validate({})
        missing = {e["loc"][0] for e in err.value.errors() if e["type"] == "missing"}
        assert missing == set(model.model_fields) - {"sections"}


def test_params_without_params_yaml_demand_every_section() -> None:
    with pytest.raises(ConfigError) as err:
        resolve_params({"profiles": {"small": {}}})
    for key in ("datasets", "model", "augment", "pretrain", "evaluate", "compare", "methods"):
        assert f"  {key}: Field required" in str(err.value)
    raw = _raw()
    del raw["epilepsy"]["spectrogram"]["center"], raw["pretrain"]["tau_base"]
    with pytest.raises(ConfigError) as err:
        resolve_params(raw)
    assert "epilepsy.spectrogram.center: Field required" in str(err.value)
    assert "pretrain.tau_base: Field required" in str(err.value)


def test_each_dataset_stage_depends_on_its_own_plugin() -> None:
    """dvc.yaml's fetch/parquet stages depend on `datasets.<name>.code`: it must be the plugin's own code."""
    p = load_params(PARAMS)
    for name, stage in p.datasets.items():
        assert (ROOT / stage.code).resolve() == plugin_of(p.dataset(name)).code.resolve(), name
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    for stage in ("fetch", "parquet"):
        deps = dvc["stages"][stage]["do"]["deps"]
        assert "${item.code}" in deps  # its own plugin, and no other dataset's
        assert [d for d in deps if d.startswith("trls_core/datasets/")] == ["trls_core/datasets/registry.py"]


def test_dataset_sections_are_read_by_their_plugin() -> None:
    raw = _raw()
    raw["bonn_grouped"] = {**raw["epilepsy"], "kind": "nope"}
    with pytest.raises(ConfigError, match=r"bonn_grouped\.kind: unknown dataset kind 'nope'"):
        resolve_params(raw)
    raw["bonn_grouped"] = raw["epilepsy"]  # neither a plugin's name nor a kind: a typo
    with pytest.raises(ConfigError, match=r"bonn_grouped: unknown key"):
        resolve_params(raw)
    del raw["bonn_grouped"]
    raw["datasets"]["ecg300"] = {"code": "trls_core/datasets/custom"}
    with pytest.raises(ConfigError, match=r"unknown dataset\(s\) \['ecg300'\] in `datasets`"):
        resolve_params(raw)


def test_augment_ops_are_typed_and_name_the_op_and_key() -> None:
    raw = _raw()
    raw["augment"]["view_b"][1]["max_width"] = 1.5
    with pytest.raises(ConfigError, match=r"augment\.view_b\.1\.time_mask\.max_width: Input should be less"):
        resolve_params(raw)
    raw = _raw()
    raw["augment"]["view_a"][0]["scales"] = [0.3, 1.0]
    with pytest.raises(ConfigError, match=r"augment\.view_a\.0\.resized_crop\.scales: unknown key"):
        resolve_params(raw)


def test_paper_profile_overrides_small() -> None:
    small, paper = load_params(PARAMS, "small"), load_params(PARAMS, "paper")
    assert (small.pretrain.epochs, paper.pretrain.epochs) == (10, 40)
    assert paper.pretrain.batch_size == 128
    # untouched keys survive the deep merge
    assert paper.model.tfrnn.rnn == small.model.tfrnn.rnn


def test_env_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRLS_PROFILE", "paper")
    assert load_params(PARAMS).profile == "paper"


def _raw() -> dict:
    return yaml.safe_load(PARAMS.read_text())


def test_typo_names_the_key() -> None:
    raw = _raw()
    raw["pretrain"]["epcohs"] = 3
    with pytest.raises(ConfigError, match=r"pretrain\.epcohs: unknown key"):
        resolve_params(raw)


def test_wrong_type_names_the_key() -> None:
    raw = _raw()
    raw["epilepsy"]["spectrogram"]["n_fft"] = "big"
    with pytest.raises(ConfigError, match=r"epilepsy\.spectrogram\.n_fft"):
        resolve_params(raw)


def test_bad_choice_names_the_key() -> None:
    raw = _raw()
    raw["epilepsy"]["parquet"]["protocol"] = "shuffled"
    with pytest.raises(ConfigError, match=r"epilepsy\.parquet\.protocol"):
        resolve_params(raw)


def test_fraction_out_of_range() -> None:
    raw = _raw()
    raw["evaluate"]["fractions"] = [0.0, 1.0]
    with pytest.raises(ConfigError, match=r"evaluate\.fractions"):
        resolve_params(raw)


def test_unknown_profile_and_dataset() -> None:
    with pytest.raises(ConfigError, match="unknown profile 'gpu'"):
        resolve_params(_raw(), profile="gpu")
    with pytest.raises(ConfigError, match="unknown dataset 'sleep'"):
        load_params(PARAMS).dataset("sleep")


def test_missing_params_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")


def test_merge_and_flatten() -> None:
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}}) == {"a": {"b": 1, "c": 3}}
    assert flatten({"a": {"b": 1}, "c": [1]}) == {"a.b": 1, "c": [1]}
