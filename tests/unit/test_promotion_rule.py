"""The promotion rule (tracking/promotion.py's compare-and-set) against an in-memory registry.

The decision only: which version ends as champion and which tags it leaves.
The real store, the lock and concurrent promoters are in
tests/integration/test_tracking.py and test_promotion_concurrency.py.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, RESOURCE_DOES_NOT_EXIST

from trls_core.tracking.promotion import _compare_and_set, _parse_float
from trls_core.tracking.registry import CHAMPION, DIGEST_TAG, REASON_TAG, SCORE_TAG

NAME = "trls-x-encoder"


class FakeRegistry:
    """Versions with tags and one alias map: the calls _compare_and_set makes on an MlflowClient."""

    def __init__(self, versions: dict[str, dict[str, str]], champion: str | None = None) -> None:
        self.tags = {v: dict(t) for v, t in versions.items()}
        self.champion = champion
        self.alias_error: MlflowException | None = None

    def get_model_version(self, name: str, version: str) -> SimpleNamespace:
        assert name == NAME
        return SimpleNamespace(version=version, tags=dict(self.tags[version]))

    def set_model_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        self.tags[version][key] = value

    def get_model_version_by_alias(self, name: str, alias: str) -> SimpleNamespace:
        assert alias == CHAMPION
        if self.alias_error is not None:
            raise self.alias_error
        if self.champion is None:
            raise MlflowException("no alias", error_code=RESOURCE_DOES_NOT_EXIST)
        return self.get_model_version(name, self.champion)

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        assert alias == CHAMPION
        self.champion = version


def _scored(score: float | str, digest: str = "d1") -> dict[str, str]:
    return {SCORE_TAG: str(score), DIGEST_TAG: digest}


def test_first_version_is_promoted_and_tagged():
    reg = FakeRegistry({"1": {}})
    promoted, reason = _compare_and_set(reg, NAME, "1", 0.5, "d1")
    assert promoted and reg.champion == "1"
    assert reason.startswith("v1 promoted: no champion yet")
    assert reg.tags["1"] == {DIGEST_TAG: "d1", SCORE_TAG: "0.5", REASON_TAG: reason}


def test_higher_score_on_the_same_split_wins_ties_and_lower_keep_the_champion():
    reg = FakeRegistry({"1": _scored(0.6), "2": {}, "3": {}, "4": {}}, champion="1")
    assert _compare_and_set(reg, NAME, "2", 0.6, "d1")[0] is False  # a tie keeps the champion
    assert reg.champion == "1"
    promoted, reason = _compare_and_set(reg, NAME, "3", 0.5, "d1")
    assert not promoted and reg.champion == "1" and "<= champion v1" in reason and "challenger" in reason
    promoted, reason = _compare_and_set(reg, NAME, "4", 0.61, "d1")
    assert promoted and reg.champion == "4" and "0.6100 > champion v1 0.6000" in reason
    assert reg.tags["4"][REASON_TAG] == reason and reg.tags["4"][SCORE_TAG] == "0.61"


def test_another_split_or_no_champion_score_keeps_the_champion():
    reg = FakeRegistry({"1": _scored(0.2, "other"), "2": {}}, champion="1")
    promoted, reason = _compare_and_set(reg, NAME, "2", 0.9, "d1")
    assert not promoted and reg.champion == "1" and "another test split" in reason
    reg = FakeRegistry({"1": {DIGEST_TAG: "d1", SCORE_TAG: "n/a"}, "2": {}}, champion="1")
    promoted, reason = _compare_and_set(reg, NAME, "2", 0.9, "d1")
    assert not promoted and reg.champion == "1" and "no recorded" in reason


def test_the_champion_itself_and_a_non_finite_score_are_not_promoted():
    reg = FakeRegistry({"1": _scored(0.6)}, champion="1")
    assert _compare_and_set(reg, NAME, "1", 0.9, "d1") == (False, "v1 is already the champion")
    assert reg.tags["1"][SCORE_TAG] == "0.9"  # the score it was given is recorded
    reg = FakeRegistry({"1": {}})
    promoted, reason = _compare_and_set(reg, NAME, "1", float("nan"), "d1")
    assert not promoted and reg.champion is None and "not a finite number" in reason
    assert SCORE_TAG not in reg.tags["1"] and reg.tags["1"][DIGEST_TAG] == "d1"


def test_split_digest_from_the_version_and_mismatches():
    reg = FakeRegistry({"1": {DIGEST_TAG: "d1"}})
    assert _compare_and_set(reg, NAME, "1", 0.4, None)[0]  # its own tag is the split
    assert reg.tags["1"][DIGEST_TAG] == "d1"
    reg = FakeRegistry({"1": {}})
    with pytest.raises(ValueError, match="no test_split_digest"):
        _compare_and_set(reg, NAME, "1", 0.4, None)
    reg = FakeRegistry({"1": {DIGEST_TAG: "d1"}})
    with pytest.raises(ValueError, match="scored on split d2"):
        _compare_and_set(reg, NAME, "1", 0.4, "d2")
    assert reg.champion is None and REASON_TAG not in reg.tags["1"]


def test_a_store_error_other_than_no_alias_is_raised():
    reg = FakeRegistry({"1": {}})
    reg.alias_error = MlflowException("boom", error_code=INTERNAL_ERROR)
    with pytest.raises(MlflowException, match="boom"):
        _compare_and_set(reg, NAME, "1", 0.4, "d1")
    assert reg.champion is None


def test_parse_float():
    assert _parse_float(None) is None
    assert _parse_float("0.25") == 0.25
    assert _parse_float("x") is None
