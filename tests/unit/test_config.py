"""Config tier: every profile instantiates; typos and wrong types name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from trls_core.config import deep_merge, flatten, load_params, read_raw_params, resolve_params
from trls_core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
PARAMS = ROOT / "params.yaml"


@pytest.mark.parametrize("profile", sorted(read_raw_params(PARAMS)["profiles"]))
def test_every_profile_instantiates(profile: str) -> None:
    p = load_params(PARAMS, profile=profile)
    assert p.profile == profile
    for name in p.datasets:
        assert p.dataset(name).parquet.window > 0
    from trls_core.augment import TwoViews
    from trls_core.models import build_encoder

    a, b = p.augment.as_dicts()
    TwoViews(a, b)
    build_encoder(p.model.encoder, in_channels=1, **p.model.encoder_kwargs())


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
