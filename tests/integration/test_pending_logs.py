"""Checkpoint first, log after: a failing MLflow store costs no epoch and no unit, and loses no metric.

The flows' tasks run (``.fn``, no Prefect API) against a real sqlite MLflow
store in the tiny project, with the store's logging made to fail the way a
locked sqlite store does. What the failing run could not log is kept beside
the saved work and logged into the same MLflow run by the next run.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::FutureWarning:mlflow.*"),
    pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SADeprecationWarning"),
]


def _locked(self: Any, rows: Any) -> int:
    raise sqlite3.OperationalError("database is locked")


def test_failed_logs_are_kept_and_logged_into_their_runs_by_the_next_run(
    tiny_project: Path, tiny_params: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from mlflow import MlflowClient

    from flows.evaluate import evaluate_unit_task
    from flows.pretrain import pretrain_seed_task
    from trls_core.checkpoint import load_checkpoint
    from trls_core.stages.evaluate import read_unit
    from trls_core.tracking import Tracker, tracking_uri
    from trls_core.tracking.pending import read_pending

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root, params = str(tiny_project), str(tiny_params)
    client = MlflowClient(tracking_uri(tiny_project))
    real = Tracker.log_metric_steps
    monkeypatch.setattr(Tracker, "log_metric_steps", _locked)

    # pretraining: every epoch's log fails; every epoch is saved all the same
    said = logging.getLogger("trls_core.tracking.pending")
    said.addHandler(caplog.handler)  # on the logger itself: Prefect's logging set-up may reset the root's handlers
    try:
        out = Path(pretrain_seed_task.fn(root, params, None, 0, track=True))
    finally:
        said.removeHandler(caplog.handler)
    _, meta = load_checkpoint(out / "checkpoint.safetensors")
    assert meta["epochs_done"] == 3 and (out / "encoder.safetensors").is_file()
    kept = read_pending(out / "pending_mlflow.json")
    assert len(kept) == 1 and sorted(step for _, step in kept[0]["rows"]) == [0, 1, 2], kept
    assert "database is locked" in kept[0]["error"]
    seed_run = kept[0]["run_id"]
    assert client.get_run(seed_run).info.status == "FINISHED"  # the run ended normally, its metrics pending
    assert client.get_metric_history(seed_run, "loss") == []
    failed = [r.getMessage() for r in caplog.records if "MLflow logging failed" in r.getMessage()]
    assert any("seed 0 epoch 1" in m for m in failed) and all("logged on the next run" in m for m in failed)

    # an evaluation unit: its result file is written, its metrics kept
    unit = ("linear_probe", 0, None)
    path = Path(evaluate_unit_task.fn(root, params, None, None, "linear_probe/seed=0", unit, track=True))
    assert read_unit(path)["result"]["macro_f1"] > 0
    unit_pending = path.parent / "pending_mlflow" / "linear_probe_seed0.json"
    (unit_entry,) = read_pending(unit_pending)
    unit_run = unit_entry["run_id"]
    assert client.get_run(unit_run).info.run_name == "linear_probe/seed=0"
    assert "macro_f1" not in client.get_run(unit_run).data.metrics

    # the next run: the saved work is reused, the kept metrics go into the runs they belong to
    monkeypatch.setattr(Tracker, "log_metric_steps", real)
    pretrain_seed_task.fn(root, params, None, 0, track=True)
    evaluate_unit_task.fn(root, params, None, None, "linear_probe/seed=0", unit, track=True)
    assert not (out / "pending_mlflow.json").exists() and not unit_pending.exists()
    assert sorted(m.step for m in client.get_metric_history(seed_run, "loss")) == [0, 1, 2]
    assert client.get_run(unit_run).data.metrics["macro_f1"] == pytest.approx(read_unit(path)["result"]["macro_f1"])
