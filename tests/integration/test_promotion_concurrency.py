"""Eight promotions at once against a real MLflow sqlite store end with the highest score as champion.

A few repetitions here; the fault benchmark runs the same function 20+ times
(``bench/faults/promotions.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,  # ~25 s on 2 busy cores: the forkserver imports MLflow's stores once, then ~2.5 s a repetition
    pytest.mark.filterwarnings("ignore::FutureWarning:mlflow.*"),
]


def test_eight_concurrent_promotions_leave_the_best_as_champion(tmp_path: Path) -> None:
    from bench.faults.promotions import concurrent_promotions

    figures = concurrent_promotions(tmp_path, n=8, reps=3, seed=19)
    bad = [c for c in figures["cases"] if not c["ok"]]
    assert figures["champion_correct"] == 3 and not bad, bad
    assert len({c["expected"] for c in figures["cases"]}) > 1  # the best was a different version across reps
    assert all(c["champion_score"] == c["best_score"] for c in figures["cases"])
    lock = tmp_path / "rep0" / ".trls" / "promotion-mlflow.db.lock"
    assert lock.is_file() and lock.read_text() == ""  # the lock was used, and released


def test_promotion_lock_sits_beside_the_store() -> None:
    from trls_core.tracking.promotion import promotion_lock_path

    assert promotion_lock_path("sqlite:////srv/x/mlflow.db") == Path("/srv/x/.trls/promotion-mlflow.db.lock")
    assert promotion_lock_path("file:///srv/x/mlruns") == Path("/srv/x/.trls/promotion-mlruns.lock")
    assert promotion_lock_path("/srv/x/mlruns") == Path("/srv/x/.trls/promotion-mlruns.lock")
    a, b = promotion_lock_path("http://a:5000"), promotion_lock_path("http://b:5000")
    assert a != b and a.parent.name == "trls-locks"
