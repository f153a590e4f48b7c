"""Flow settings that need no Prefect API: which tasks retry, on what; the report table; the task runner; the CLI."""

from __future__ import annotations

import re
import sqlite3
import subprocess

import pytest

from tests.conftest import ROOT


def test_retries_only_where_a_retry_repeats_no_training() -> None:
    """Data fetch and MLflow-logging tasks retry; pretraining, evaluation units and registration do not."""
    from flows.compare import comparison_task
    from flows.evaluate import evaluate_unit_task, report_task
    from flows.pipeline import dvc_repro, register_task
    from flows.pretrain import pretrain_seed_task
    from flows.retries import transient_only

    assert dvc_repro.retries > 0
    for t in (report_task, comparison_task):
        assert t.retries == 2 and t.retry_condition_fn is transient_only, t.name
    for t in (pretrain_seed_task, evaluate_unit_task, register_task):
        assert t.retries == 0, f"{t.name} must not retry (repeats training / not idempotent)"
    for t in (dvc_repro, pretrain_seed_task, evaluate_unit_task, report_task, register_task, comparison_task):
        claims = re.search(r"(?<![Nn]ot )(?<!never )\b[Rr]etried\b", t.fn.__doc__ or "") is not None
        assert claims == (t.retries > 0), f"{t.name}: docstring and retries={t.retries} disagree"


def test_transient_failures_are_told_from_permanent_ones() -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, TEMPORARILY_UNAVAILABLE

    from flows.retries import is_transient, transient_only
    from trls_core.errors import ConfigError, DataError

    def chained(outer: Exception, inner: Exception) -> Exception:
        try:
            try:
                raise inner
            except Exception as exc:
                raise outer from exc
        except Exception as exc:  # noqa: BLE001
            return exc

    assert is_transient(sqlite3.OperationalError("database is locked"))
    assert is_transient(ConnectionResetError("peer reset"))
    assert is_transient(TimeoutError())
    assert is_transient(MlflowException("busy", error_code=TEMPORARILY_UNAVAILABLE))
    assert is_transient(chained(RuntimeError("logging failed"), sqlite3.OperationalError("database is locked")))
    assert not is_transient(DataError("meta.json not found"))
    assert not is_transient(ConfigError("unknown profile"))
    assert not is_transient(FileNotFoundError("x"))
    assert not is_transient(ValueError("bad value"))
    assert not is_transient(MlflowException("no such run", error_code=RESOURCE_DOES_NOT_EXIST))
    assert not is_transient(MlflowException("an error of ours"))  # MLflow's default code: INTERNAL_ERROR

    class State:  # what Prefect hands retry_condition_fn: a Failed state holding the exception
        def __init__(self, exc: BaseException) -> None:
            self.data = exc

    assert transient_only(None, None, State(TimeoutError())) is True
    assert transient_only(None, None, State(DataError("x"))) is False


def test_report_rows_show_probe_fractions_and_controls_as_mean_pm_std() -> None:
    from flows.artifacts import artifact_key, report_rows

    def agg(mean: float, std: float, n: int = 5) -> dict:
        return {"mean": mean, "std": std, "n": n, "values": [mean] * n}

    metrics = {
        "linear_probe": {"macro_f1": agg(0.97251, 0.0), "accuracy": agg(0.98, 0.001)},
        "finetune": {"1.0": {"macro_f1": agg(0.9721, 0.0025)}, "0.01": {"macro_f1": agg(0.9522, 0.0048)}},
        "controls": {"spectrogram_linear": {"macro_f1": agg(0.9527, 0.0, 1)}},
    }
    rows = report_rows(metrics)
    assert [r["setting"] for r in rows] == [
        "linear probe (frozen)",
        "fine-tune 1 % labels",
        "fine-tune 100 % labels",
        "control: linear on spectrogram pixels",
    ]
    assert rows[0] == {
        "setting": "linear probe (frozen)",
        "n": 5,
        "macro-F1 (%)": "97.25 ± 0.00",
        "accuracy (%)": "98.00 ± 0.10",
    }
    assert rows[1]["accuracy (%)"] == "–" and rows[3]["n"] == 1
    assert artifact_key("epilepsy", "five_set", "results") == "epilepsy-five-set-results"


def test_inline_task_runner_uses_the_public_task_runner_interface() -> None:
    from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

    from flows.runners import InlineTaskRunner

    assert issubclass(InlineTaskRunner, TaskRunner) and not issubclass(InlineTaskRunner, ThreadPoolTaskRunner)
    assert isinstance(InlineTaskRunner().duplicate(), InlineTaskRunner)
    assert "_executor" not in (ROOT / "flows" / "runners.py").read_text()


def test_trls_version_comes_from_the_package_metadata() -> None:
    from importlib.metadata import version

    from typer.testing import CliRunner

    from trls_core.cli import app

    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"trls {version('trls')}"


def test_pipeline_cli_refuses_bad_input_before_prefect_starts() -> None:
    from typer.testing import CliRunner

    from trls_core.cli import app

    params = str(ROOT / "params.yaml")
    for args, expected in (
        (["--profile", "nope"], "unknown profile 'nope'"),
        (["--dataset", "cinc2017"], "use --profile cinc_record"),
        (["--set", "epilepsy.spectrogram.hop=8"], "data settings are DVC's"),
    ):
        res = CliRunner().invoke(app, ["pipeline", "--params", params, *args])
        assert res.exit_code == 2 and expected in res.output, res.output


@pytest.mark.skipif(subprocess.run(["make", "--version"], capture_output=True).returncode != 0, reason="no make")
def test_make_help_lists_every_target_with_one_line() -> None:
    text = (ROOT / "Makefile").read_text()
    targets = re.findall(r"^([a-z][a-z0-9_-]*):(?!=)", text, flags=re.M)
    missing = [t for t in targets if not re.search(rf"^{re.escape(t)}:[^\n]*## \S", text, flags=re.M)]
    assert not missing, f"Makefile targets without a `## one line` help: {missing}"
    out = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    listed = [line.split()[0] for line in out.splitlines() if line.strip()]
    assert listed == targets and all(len(line.split()) > 1 for line in out.splitlines() if line.strip())
    assert re.search(r"^run:[^\n]*\n\t\$\(BIN\)/trls pipeline$", text, flags=re.M), "make run calls trls pipeline"
