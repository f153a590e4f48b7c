"""Orchestration tier: the Prefect flows run for real on the tiny project.

One Prefect test API (``prefect_test_harness``, sqlite in a temp folder) for
the whole session; MLflow on a sqlite file in each test's tmp_path, always
(a failed import of ``trls_core.tracking`` fails collection: the MLflow
assertions are never switched off). No ``dvc repro`` of the real data here
(test_dvc_repro.py does that): the pipeline runs with ``skip_data=True``.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    # SQLAlchemy 2.1 deprecations raised through mlflow's sqlite store (docs/stack.md)
    pytest.mark.filterwarnings("ignore::DeprecationWarning:sqlalchemy.*"),
    pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning"),
]


# The flows run tracked, always: trls_core.tracking is part of the project, so a broken import
# fails this module's collection instead of silently turning every MLflow assertion off.
importlib.import_module("trls_core.tracking")
TRACK = True


@pytest.fixture
def mlflow_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_api: None) -> str:
    """A fresh sqlite MLflow store in tmp_path (cwd there too, so no artifact lands in the repo)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    return uri


def _client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _runs(uri: str) -> dict[str, Any]:
    """All runs of the epilepsy experiment by run name."""
    client = _client(uri)
    exp = client.get_experiment_by_name("trls-epilepsy")
    assert exp is not None, "no MLflow experiment trls-epilepsy"
    return {r.info.run_name: r for r in client.search_runs([exp.experiment_id], max_results=500)}


def _metrics_json(report_dir: str) -> dict[str, Any]:
    return json.loads((Path(report_dir) / "metrics.json").read_text())


def test_pretrain_and_evaluate_flows_complete(tiny_project: Path, tiny_params: Path, mlflow_uri: str) -> None:
    from flows.evaluate import evaluate_flow
    from flows.pretrain import pretrain_flow

    common = {"root": str(tiny_project), "params_path": str(tiny_params), "track": TRACK}
    state = pretrain_flow(**common, return_state=True)
    assert state.is_completed(), state.message
    dirs = state.result()
    assert len(dirs) == 1
    for name in ("encoder.safetensors", "encoder.json", "loss_curve.png"):
        assert (Path(dirs[0]) / name).is_file()

    state = evaluate_flow(**common, return_state=True)
    assert state.is_completed(), state.message
    report = state.result()
    assert _metrics_json(report)["task"] == "binary"
    assert (Path(report) / "summary.md").is_file()

    if TRACK:
        runs = _runs(mlflow_uri)
        seed_run = runs["pretrain/seed=0"]
        assert seed_run.data.tags["mlflow.parentRunId"] == runs["pretrain"].info.run_id
        loss = _client(mlflow_uri).get_metric_history(seed_run.info.run_id, "loss")
        assert [m.step for m in loss] == [0, 1, 2]  # tiny params: 3 epochs, one point each
        ev = runs["evaluate/binary"].info.run_id
        for unit in ("linear_probe/seed=0", "finetune/0.5/seed=1", "controls/spectrogram_linear/seed=0"):
            assert runs[unit].data.tags["mlflow.parentRunId"] == ev
            assert "macro_f1" in runs[unit].data.metrics
        assert all(r.info.status == "FINISHED" for r in runs.values())

        # MLflow knows the data and the machine: the splits as dataset inputs, system metrics of pretraining
        def contexts(run: Any) -> dict[str, str]:
            return {i.dataset.name: i.tags[0].value for i in run.inputs.dataset_inputs}

        assert contexts(seed_run) == {"epilepsy/train": "train"}
        every = {f"epilepsy/{s}": s for s in ("train", "val", "test")}
        assert contexts(runs["evaluate/binary"]) == contexts(runs["finetune/0.5/seed=1"]) == every
        assert "system/cpu_utilization_percentage" in seed_run.data.metrics
        assert "system/system_memory_usage_megabytes" in seed_run.data.metrics
        # a unit's run is open while the unit runs: its duration covers the unit's own timing
        from trls_core.config import load_params
        from trls_core.protocol import Unit
        from trls_core.stages.evaluate import unit_file

        unit = runs["finetune/0.5/seed=1"]
        doc = json.loads(unit_file(tiny_project, load_params(tiny_params), Unit("finetune", 1, 0.5)).read_text())
        assert unit.info.end_time - unit.info.start_time >= 1000 * doc["result"]["unit_seconds"] - 5


def _task_run_names(flow_run_id: Any, expect: int = 0, timeout_s: float = 30.0) -> list[str]:
    """Task-run names of a flow run. Prefect 3 records task runs from events sent in the
    background, so on a loaded machine the API can lag the finished flow by seconds: wait
    (bounded) until at least ``expect`` task runs are recorded."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            if len(runs) >= expect or time.monotonic() > deadline:
                return [r.name for r in runs]
            time.sleep(0.5)


def test_evaluate_flow_maps_units_and_a_rerun_resumes_from_unit_results(
    tiny_project: Path, tiny_params: Path, mlflow_uri: str
) -> None:
    """Each fraction x seed is its own task run; a broken unit fails the flow by name; the rerun
    reruns only that unit and leaves the others' results untouched."""
    from flows.evaluate import evaluate_flow
    from flows.pretrain import pretrain_flow
    from trls_core.config import load_params
    from trls_core.stages.evaluate import unit_file, units_for

    common = {"root": str(tiny_project), "params_path": str(tiny_params), "track": TRACK}
    assert pretrain_flow(**common, return_state=True).is_completed()
    state = evaluate_flow(**common, return_state=True)
    assert state.is_completed(), state.message
    params = load_params(tiny_params)
    units = units_for(params)
    assert len(units) == 2 * (1 + 2 + 1) + 1  # 2 seeds x (probe, 2 fractions, random ctrl) + pixel ctrl
    names = _task_run_names(state.state_details.flow_run_id, expect=len(units) + 1)  # the units + report
    assert sorted(n for n in names if "seed=" in n) == sorted(u.name for u in units)
    assert sum(n.startswith("report") for n in names) == 1
    first = json.loads(Path(state.result(), "metrics.json").read_text())

    files = {u: unit_file(tiny_project, params, u) for u in units}
    mtimes = {u: f.stat().st_mtime_ns for u, f in files.items()}
    broken = next(u for u in units if u.name == "finetune/0.5/seed=1")
    files[broken].write_text("{ not json")
    state = evaluate_flow(**common, return_state=True)
    assert state.is_failed()
    assert "1 of 9 evaluation units failed" in state.message and "finetune/0.5/seed=1" in state.message, state.message
    assert files[broken].read_text() == "{ not json"  # a failing unit never half-writes

    files[broken].unlink()
    state = evaluate_flow(**common, return_state=True)
    assert state.is_completed(), state.message
    assert all(files[u].stat().st_mtime_ns == mtimes[u] for u in units if u != broken)  # reused
    assert files[broken].is_file()
    again = json.loads(Path(state.result(), "metrics.json").read_text())
    assert again["linear_probe"] == first["linear_probe"]
    assert again["finetune"] == first["finetune"]  # the rerun unit reproduces its seed's result


def test_pipeline_flow_trains_evaluates_registers(tiny_project: Path, tiny_params: Path, mlflow_uri: str) -> None:
    from flows.pipeline import pipeline_flow

    state = pipeline_flow(
        root=str(tiny_project), params_path=str(tiny_params), track=TRACK, skip_data=True, return_state=True
    )
    assert state.is_completed(), state.message
    out = state.result()
    assert Path(out["model_dirs"][0], "encoder.safetensors").is_file()
    assert Path(out["report_dir"], "metrics.json").is_file()
    if not TRACK:
        assert out["run_id"] is None and "registration" not in out
        return
    reg = out["registration"]
    name = "trls-epilepsy-encoder"  # the dataset's registered model (trls-<dataset>-encoder)
    assert reg["model_name"] == name and reg["promoted"] and not reg["skipped"], reg  # first model: champion
    metrics = _metrics_json(out["report_dir"])
    assert reg["score"] == pytest.approx(metrics["linear_probe"]["macro_f1"]["mean"])
    runs = _runs(mlflow_uri)
    parent = runs["pipeline/small"]
    assert parent.info.run_id == out["run_id"] and parent.info.status == "FINISHED"
    assert "git_commit" in parent.data.tags and parent.data.tags["profile"] == "small"
    for stage in ("pretrain", "evaluate/binary"):
        assert runs[stage].data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert parent.data.tags["registered_model.version"] == str(reg["version"])
    # the headline on the parent run: probe / fine-tune / controls per task, rounded, self-explaining names
    lp = parent.data.metrics["binary/linear_probe_macro_f1_mean"]
    assert lp == pytest.approx(round(reg["score"], 4))
    assert parent.data.metrics["binary/finetune_50pct_labels_macro_f1_std"] >= 0
    assert "binary/control_untrained_encoder_macro_f1_mean" in parent.data.metrics
    assert all(k.startswith(("binary/", "five_set/")) for k in parent.data.metrics), sorted(parent.data.metrics)
    note = parent.data.tags["mlflow.note.content"]
    assert "| linear probe (frozen encoder) |" in note and f"{lp:.4f}" in note and name in note
    client = _client(mlflow_uri)
    assert client.get_experiment_by_name("trls-epilepsy").tags["mlflow.experimentKind"] == "custom_model_development"
    parent_arts = {a.path for a in client.list_artifacts(parent.info.run_id, "plots/binary")}
    assert "plots/binary/label_fractions.png" in parent_arts
    assert {i.dataset.name for i in parent.inputs.dataset_inputs} == {f"epilepsy/{s}" for s in ("train", "val", "test")}
    param_arts = {a.path for a in client.list_artifacts(parent.info.run_id, "params")}
    assert {"params/params.yaml", "params/resolved.json"} <= param_arts
    ev_arts = {a.path for a in client.list_artifacts(runs["evaluate/binary"].info.run_id, "report")}
    assert {"report/metrics.json", "report/summary.md", "report/tsne.png", "report/aggregates.json"} <= ev_arts
    assert any(a.path == "loss_curve.png" for a in client.list_artifacts(runs["pretrain/seed=0"].info.run_id))

    # a second run on an up-to-date checkout reuses the model (same weights): no duplicate version
    state = pipeline_flow(
        root=str(tiny_project), params_path=str(tiny_params), track=True, skip_data=True, return_state=True
    )
    assert state.is_completed(), state.message
    reg2 = state.result()["registration"]
    assert reg2["skipped"] and reg2["version"] == reg["version"] and not reg2["promoted"], reg2
    assert f"weights equal {name} v{reg['version']}" in reg2["reason"]
    assert [str(v.version) for v in client.search_model_versions(f"name = '{name}'")] == [str(reg["version"])]
    second = client.get_run(state.result()["run_id"])
    # the skipped version still gets a promotion decision (a run killed before promoting left none)
    assert reg2["reason"] == f"{second.data.tags['registration.skipped']}; v{reg['version']} is already the champion"
    # (force=True registers anyway: tests/integration/test_tracking.py, at the registry)


def test_failing_pretrain_fails_the_flow_with_its_cause(tmp_path: Path, tiny_params: Path, mlflow_uri: str) -> None:
    """No spectrograms under the root: pretraining fails, and so does the pipeline around it."""
    from flows.pipeline import pipeline_flow
    from flows.pretrain import pretrain_flow

    empty = tmp_path / "empty_project"
    empty.mkdir()
    common = {"root": str(empty), "params_path": str(tiny_params), "track": TRACK}
    state = pretrain_flow(**common, return_state=True)
    assert state.is_failed()
    assert "meta.json not found" in state.message and "dvc repro" in state.message, state.message

    state = pipeline_flow(**common, skip_data=True, return_state=True)
    assert state.is_failed()
    assert "DataError" in state.message and "meta.json not found" in state.message, state.message
    assert not (empty / "models" / "epilepsy" / "tfrnn_seed0" / "encoder.safetensors").exists()
    if TRACK:
        assert _runs(mlflow_uri)["pipeline/small"].info.status == "FAILED"


def test_dvc_repro_failure_carries_dvc_stderr(tmp_path: Path, prefect_api: None) -> None:
    """Outside a DVC repository: the raised error names the command and quotes DVC."""
    from flows.pipeline import DvcReproError, dvc_repro

    with pytest.raises(DvcReproError) as err:
        dvc_repro.fn(str(tmp_path), "epilepsy")
    msg = str(err.value)
    assert "repro fetch@epilepsy parquet@epilepsy spectrogram@epilepsy" in msg
    assert "DVC repository" in msg, msg


def test_deployment_registers_with_cron_schedule(tmp_path: Path, tiny_params: Path, prefect_api: None) -> None:
    from prefect import get_client

    from flows.schedule import build_deployment

    deployment = build_deployment(
        cron="0 3 * * 1", name="trls-retrain-test", params_path=str(tiny_params), root=str(tmp_path)
    )
    dep_id = deployment.apply()
    with get_client(sync_client=True) as client:
        stored = client.read_deployment(dep_id)
    assert stored.name == "trls-retrain-test"
    assert [s.schedule.cron for s in stored.schedules] == ["0 3 * * 1"]
    assert all(s.active for s in stored.schedules)
    assert stored.parameters["root"] == str(tmp_path.resolve())
    assert stored.parameters["params_path"] == str(tiny_params.resolve())
    assert stored.parameters["track"] is True and stored.parameters["register_model"] is True
    assert stored.parameters["dataset"] == "epilepsy" and stored.parameters["force"] is False
    # one run at a time: a tick during a run waits for it (ENQUEUE), it does not start beside it
    assert stored.global_concurrency_limit is not None and stored.global_concurrency_limit.limit == 1
    assert stored.concurrency_options.collision_strategy == "ENQUEUE"


def test_schedule_cli_fails_before_serving_on_unknown_profile_or_dataset(prefect_api: None) -> None:
    from typer.testing import CliRunner

    from trls_core.cli import app

    cases = {
        ("--profile", "nope"): "unknown profile 'nope' (profiles: ['cinc_record', 'paper', 'small'])",
        ("--dataset", "nope"): "unknown dataset 'nope': known datasets are",
        ("--dataset", "cinc2017"): "use --profile cinc_record",  # the small profile trains on epilepsy
    }
    for args, expected in cases.items():
        res = CliRunner().invoke(app, ["schedule", *args, "--params", str(ROOT / "params.yaml"), "--name", "bad"])
        assert res.exit_code == 2, res.output
        assert expected in res.output, res.output


def test_schedule_cli_rejects_a_bad_cron(prefect_api: None) -> None:
    from typer.testing import CliRunner

    from trls_core.cli import app

    res = CliRunner().invoke(app, ["schedule", "--cron", "every monday", "--name", "bad"])
    assert res.exit_code == 2, res.output
    assert "invalid cron 'every monday'" in res.output


def test_compare_flow_runs_methods_through_one_protocol(tiny_project: Path, tiny_params: Path, mlflow_uri: str) -> None:
    import csv

    from flows.compare import compare_flow

    state = compare_flow(
        root=str(tiny_project),
        params_path=str(tiny_params),
        methods=["trls", "trls_cnn", "ts2vec"],
        track=TRACK,
        return_state=True,
    )
    assert state.is_completed(), state.message
    out = state.result()
    rows = list(csv.DictReader(Path(out["files"]["csv"]).open()))
    probe = {r["method"]: r for r in rows if r["setting"] == "linear_probe"}
    assert set(probe) == {"trls", "trls_cnn", "ts2vec", "control: pixels + linear", "control: untrained encoder"}
    assert {r["setting"] for r in rows if r["method"] == "trls"} == {"linear_probe", "finetune_0.5", "finetune_1.0"}
    for m, enc in (("trls", "tfrnn"), ("trls_cnn", "cnn"), ("ts2vec", "ts2vec")):  # each its own report
        rep = json.loads((Path(out["reports"][m]) / "metrics.json").read_text())
        assert float(probe[m]["accuracy_mean"]) == pytest.approx(rep["linear_probe"]["accuracy"]["mean"])
        assert rep["encoder"] == enc
        # compare.settings reach every method: 2 pretraining runs, each on half the train split
        assert rep["pretrain_seeds"] == [0, 1] and rep["pretrain_subset_fraction"] == 0.5
        assert Path(out["files"][f"tsne_{m}"]).stat().st_size > 0
    assert json.loads((Path(out["reports"]["ts2vec"]) / "metrics.json").read_text())["input"] == "raw"
    md = Path(out["files"]["md"]).read_text()
    assert "protocol: **random**" in md and "trls_cnn" in md
    assert "## Spread over pretraining runs" in md and "| trls | 2 | 50 % |" in md
    assert "`trls` is at or above every other method's mean" in md
    # what each method's results cost (stored epoch + unit times), stated next to this run's wall time
    assert set(out["compute_seconds"]) == {"trls", "trls_cnn", "ts2vec"}
    assert all(s > 0 for s in out["compute_seconds"].values()) and "- compute per method when" in md
    assert Path(out["files"]["bars"]).stat().st_size > 0 and Path(out["files"]["fractions"]).is_file()
    if TRACK:
        runs = _runs(mlflow_uri)
        parent = runs["compare"]
        assert parent.info.status == "FINISHED"
        for m in ("trls", "trls_cnn"):
            assert runs[f"method/{m}"].data.tags["mlflow.parentRunId"] == parent.info.run_id
        arts = {a.path for a in _client(mlflow_uri).list_artifacts(parent.info.run_id, "comparison")}
        assert "comparison/comparison.md" in arts and "comparison/comparison.csv" in arts
    # the comparison in the Prefect UI: the CSV as a table artifact, the report as markdown
    table = _latest_artifact("epilepsy-binary-comparison")
    assert json.loads(table.data) == rows and table.type == "table"
    assert "`trls` is at or above" in _latest_artifact("epilepsy-binary-comparison-report").data


def test_pretrain_flow_resumes_a_killed_run_and_the_mlflow_run_says_so(
    tiny_project: Path, tiny_params: Path, mlflow_uri: str
) -> None:
    from flows.pretrain import pretrain_flow
    from trls_core.config import load_params
    from trls_core.stages.pretrain import pretrain_seed

    class Killed(Exception):
        pass

    def kill_in_second_epoch(rec: dict) -> None:
        if rec["epoch"] == 1:
            raise Killed

    with pytest.raises(Killed):  # a pretraining killed after one completed epoch
        pretrain_seed(tiny_project, load_params(tiny_params), 0, progress=False, on_epoch=kill_in_second_epoch)
    common = {"root": str(tiny_project), "params_path": str(tiny_params), "track": TRACK}
    assert pretrain_flow(**common, return_state=True).is_completed()
    info = json.loads((tiny_project / "models/epilepsy/tfrnn_seed0/encoder.json").read_text())
    assert info["resumed_from_epoch"] == 2 and len(info["history"]) == 3  # saved before on_epoch raised
    if not TRACK:
        return
    client = _client(mlflow_uri)
    run = _runs(mlflow_uri)["pretrain/seed=0"]
    assert run.data.tags["resumed"] == "true" and run.data.tags["resumed_from_epoch"] == "2"
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "loss")) == [0, 1, 2]  # full curve

    assert pretrain_flow(**common, return_state=True).is_completed()  # nothing left to train
    exp = client.get_experiment_by_name("trls-epilepsy")
    latest = client.search_runs(
        [exp.experiment_id],
        "attributes.run_name = 'pretrain/seed=0'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )[0]
    assert latest.data.tags["reused_finished_model"] == "true" and latest.data.tags["resumed"] == "false"


def test_pretrain_flow_on_a_training_subset(tiny_project: Path, tiny_params: Path, prefect_api: None) -> None:
    from flows.pretrain import pretrain_flow

    full = pretrain_flow(root=str(tiny_project), params_path=str(tiny_params), track=False, return_state=True)
    n_full = json.loads(Path(full.result()[0], "encoder.json").read_text())["n_train_windows"]
    state = pretrain_flow(
        root=str(tiny_project), params_path=str(tiny_params), track=False, subset_fraction=0.5, return_state=True
    )
    assert state.is_completed(), state.message
    info = json.loads(Path(state.result()[0], "encoder.json").read_text())
    assert info["pretrain"]["subset_fraction"] == 0.5 and abs(info["n_train_windows"] - n_full / 2) <= 1
    bad = pretrain_flow(
        root=str(tiny_project), params_path=str(tiny_params), track=False, subset_fraction=1.5, return_state=True
    )
    assert bad.is_failed() and "subset_fraction" in bad.message


_STOPPABLE_FLOW = """
import sys, time
from pathlib import Path
from prefect import flow, task
from prefect.futures import wait
from flows.runners import InlineTaskRunner

log = Path(sys.argv[1])

@task
def unit(i: int) -> int:
    with log.open("a") as f:
        f.write(f"{i}\\n")
    time.sleep(1.0)
    return i

@flow(task_runner=InlineTaskRunner())
def units() -> None:
    wait(unit.map(range(30)))

units()
"""


def test_sigterm_stops_a_flow_of_inline_units(tmp_path: Path, prefect_api: None) -> None:
    """A stopped comparison stops: SIGTERM during a unit ends the flow, not just that unit."""
    from prefect.settings import PREFECT_API_URL

    script, log = tmp_path / "stoppable.py", tmp_path / "units.log"
    script.write_text(_STOPPABLE_FLOW)
    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    proc = subprocess.Popen(
        [sys.executable, str(script), str(log)], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 90
        while not (log.exists() and len(log.read_text().split()) >= 2):
            assert proc.poll() is None, proc.stdout.read().decode()[-2000:]  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the flow started no unit within 90 s"
            time.sleep(0.1)
        started_at_stop = len(log.read_text().split())
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=15)  # the 30 units would take ~28 s more if the stop were swallowed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = proc.stdout.read().decode()  # type: ignore[union-attr]
    assert rc != 0, out[-2000:]
    assert len(log.read_text().split()) <= started_at_stop + 1, out[-2000:]


def _latest_artifact(key: str) -> Any:
    """The latest version of the Prefect artifact ``key``, read back through the client."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), sort=ArtifactSort.CREATED_DESC, limit=1
        )
    assert found, f"no Prefect artifact {key!r}"
    return found[0]


def _run_artifacts(flow_run_id: Any) -> list[Any]:
    """Artifacts of a flow run and of its subflow runs."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
    )

    with get_client(sync_client=True) as client:
        subs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id]))
        )
        ids = [flow_run_id, *(r.id for r in subs)]
        return client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids)))


def _wait_for_state(flow_run_id: Any, check: Any, what: str, worker: Any, timeout_s: float = 300.0) -> Any:
    from prefect import get_client

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(flow_run_id).state
            if check(state):
                return state
            assert worker.is_alive(), f"the first run ended before it was {what}: {state}"
            assert time.monotonic() < deadline, f"the first run was not {what} within {timeout_s:.0f} s: {state}"
            time.sleep(0.2)


def test_scheduled_pipeline_runs_one_at_a_time_and_shows_its_work(
    tiny_project: Path, tiny_params: Path, mlflow_uri: str
) -> None:
    """Two overlapping runs of the deployment: while the first really runs the pipeline, the second
    asks for its slot (what Prefect's runner does when its tick is due) and is made to wait; once the
    first is done the slot is free. Then the first run's Prefect artifacts are read back: a progress
    of units done / total, a table + markdown per evaluation report, the promotion decision.

    The runner's part is played here (propose Pending, then run the flow run in-process): a served
    deployment starts each run in a fresh subprocess, minutes on a 2-core machine for two runs."""
    import contextvars
    import threading

    from prefect import get_client
    from prefect.client.schemas.responses import SetStateStatus
    from prefect.flow_engine import run_flow_sync
    from prefect.states import Cancelled, Pending

    from flows.pipeline import pipeline_flow
    from flows.schedule import build_deployment
    from trls_core.config import load_params
    from trls_core.stages.evaluate import units_for

    dep_id = build_deployment(name="trls-overlap-test", params_path=str(tiny_params), root=str(tiny_project)).apply()
    run_params = {"skip_data": True, "track": TRACK, "model_name": "trls-overlap-encoder"}
    with get_client(sync_client=True) as client:
        first, second = (client.create_flow_run_from_deployment(dep_id, parameters=run_params) for _ in range(2))
        assert client.set_flow_run_state(first.id, Pending()).status == SetStateStatus.ACCEPT  # takes the slot
        first = client.read_flow_run(first.id)
    out: dict[str, Any] = {}

    def run_first() -> None:
        out["state"] = run_flow_sync(pipeline_flow, flow_run=first, parameters=first.parameters, return_type="state")

    worker = threading.Thread(target=contextvars.copy_context().run, args=(run_first,), daemon=True)
    worker.start()
    try:
        _wait_for_state(first.id, lambda s: s.is_running(), "running", worker)
        with get_client(sync_client=True) as client:
            resp = client.set_flow_run_state(second.id, Pending())
            assert resp.status == SetStateStatus.REJECT, resp
            assert resp.state.name == "AwaitingConcurrencySlot" and resp.state.is_scheduled(), resp.state
            assert client.read_flow_run(first.id).state.is_running()  # the second waits while the first runs
    finally:
        worker.join(timeout=600)
    assert out["state"].is_completed(), out["state"].message
    with get_client(sync_client=True) as client:
        assert client.set_flow_run_state(second.id, Pending()).status == SetStateStatus.ACCEPT  # the slot is free
        client.set_flow_run_state(second.id, Cancelled(), force=True)

    result = out["state"].result()
    arts = _run_artifacts(first.id)
    by_key = {a.key: a for a in arts if a.key}
    (progress,) = [a for a in arts if a.type == "progress"]
    params = load_params(tiny_params)
    n_units = len(units_for(params))  # the same count for binary and five_set
    total = len(params.pretrain.seeds) + 2 * n_units
    assert progress.key == "epilepsy-pipeline-progress" and progress.flow_run_id == first.id
    assert float(progress.data) == 100.0
    assert progress.description.startswith(f"{total} / {total} units done (pretraining 1/1, evaluate binary"), progress
    for task, key in (("binary", "epilepsy-binary"), ("five_set", "epilepsy-five-set")):
        metrics_dir = result["report_dir"] if task == "binary" else result["also_report_dirs"][task]
        name = "metrics.json" if task == "binary" else f"metrics_{task}.json"
        metrics = json.loads((Path(metrics_dir) / name).read_text())
        rows = json.loads(by_key[f"{key}-results"].data)
        assert [r["setting"] for r in rows][:2] == ["linear probe (frozen)", "fine-tune 50 % labels"], rows
        probe = metrics["linear_probe"]["macro_f1"]
        assert rows[0]["macro-F1 (%)"] == f"{100 * probe['mean']:.2f} ± {100 * probe['std']:.2f}"
        assert rows[0]["n"] == 2 and rows[-1]["setting"].startswith("control: ")
        md = by_key[f"{key}-report"].data
        assert md.startswith(f"# Downstream evaluation: {task}"), md[:200]
        if TRACK:
            assert "- MLflow run: [http://127.0.0.1:5000/#/experiments/" in md
    if TRACK:
        reg = result["registration"]
        decision = by_key["epilepsy-promotion"]
        assert decision.flow_run_id == first.id
        assert f"# trls-overlap-encoder v{reg['version']}: promoted to **champion**" in decision.data
        assert reg["reason"] in decision.data and f"/runs/{result['run_id']})" in decision.data
    else:
        assert "epilepsy-promotion" not in by_key
