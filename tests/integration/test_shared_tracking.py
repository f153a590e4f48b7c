"""The pipeline against a shared tracking server: ``mlflow server`` on PostgreSQL with artifacts in S3 (moto).

The services are the session fixtures of ``tests/integration/services.py``
(started once, stopped at the end of the session). The pipeline process
itself has no S3 credentials: the server proxies every artifact
(``--artifacts-destination``), and the test reads the bucket with boto3 to
see that they landed there and nowhere local. Then the champion is loaded
(pyfunc) and served (``mlflow models serve``) from that server.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import TELEMETRY_OFF
from tests.integration.services import S3, Postgres, TrackingServer, free_port, spawn

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:sqlalchemy.*"),
    pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning:mlflow.*"),
]

NAME = "trls-epilepsy-encoder"
MODEL = f"models:/{NAME}@champion"
# 2 epochs, one task, one evaluation seed, one fraction: 4 evaluation units (every kind of run and artifact)
SMALLER = ["pretrain.epochs=2", "evaluate.also_tasks=[]", "evaluate.seeds=[0]", "evaluate.fractions=[1.0]"]
S3_ENV = ("MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")


@pytest.fixture
def on_server(
    tracking_server: TrackingServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_api: None
) -> TrackingServer:
    """MLFLOW_TRACKING_URI -> the server; no S3 settings in this process; cwd in tmp_path (nothing in the repo)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server.url)
    for k in (*S3_ENV, "MLFLOW_REGISTRY_URI", "TRLS_MLFLOW_ARTIFACT_ROOT"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.chdir(tmp_path)
    return tracking_server


@pytest.mark.scale
@pytest.mark.slow
def test_pipeline_on_a_shared_server_registers_a_champion_that_loads_and_serves(
    on_server: TrackingServer, tiny_project: Path, tiny_params: Path, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    from flows.pipeline import pipeline_flow
    from trls_core.tracking import load_model

    t0 = time.monotonic()
    state = pipeline_flow(
        root=str(tiny_project),
        params_path=str(tiny_params),
        track=True,
        skip_data=True,
        sets=SMALLER,
        return_state=True,
    )
    assert state.is_completed(), state.message
    print(f"\n[timing] pipeline on the server: {time.monotonic() - t0:.1f} s")
    out = state.result()
    reg = out["registration"]
    assert reg["model_name"] == NAME and reg["promoted"] and not reg["skipped"], reg

    client = MlflowClient(tracking_uri=on_server.url, registry_uri=on_server.url)
    exp = client.get_experiment_by_name("trls-epilepsy")
    assert exp is not None and exp.artifact_location.startswith("mlflow-artifacts:"), exp.artifact_location
    listed = client.search_runs([exp.experiment_id], max_results=500)
    runs = {r.info.run_name: r for r in listed}
    parent = runs["pipeline/small"]
    assert parent.info.run_id == out["run_id"] and parent.info.status == "FINISHED"
    for stage in ("pretrain", "evaluate/binary"):
        assert runs[stage].data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert runs[stage].info.status == "FINISHED"
    loss = client.get_metric_history(runs["pretrain/seed=0"].info.run_id, "loss")
    assert [m.step for m in loss] == [0, 1]
    assert parent.data.metrics["binary/linear_probe_macro_f1_mean"] == pytest.approx(round(reg["score"], 4))

    # the runs are rows of the PostgreSQL database behind the server
    import psycopg2

    pg = on_server.postgres
    with psycopg2.connect(host=pg.host, port=pg.port, user=pg.user, dbname="mlflow") as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM runs WHERE experiment_id = %s", (int(exp.experiment_id),))
        assert cur.fetchone()[0] == len(listed) > 5

    # artifacts: listed through the server, stored in the bucket, none on this machine
    assert {"params/params.yaml", "params/resolved.json"} <= {
        a.path for a in client.list_artifacts(parent.info.run_id, "params")
    }
    keys = on_server.s3.keys("mlartifacts/")
    run_prefix = f"mlartifacts/{exp.experiment_id}/{parent.info.run_id}/artifacts/"
    assert f"{run_prefix}params/params.yaml" in keys, keys[:20]
    ev = runs["evaluate/binary"].info.run_id
    assert f"mlartifacts/{exp.experiment_id}/{ev}/artifacts/report/metrics.json" in keys
    model_files = [k for k in keys if k.startswith(f"mlartifacts/{exp.experiment_id}/models/")]
    assert any(k.endswith("/MLmodel") for k in model_files), model_files
    assert any(k.endswith("encoder.safetensors") for k in model_files), model_files
    assert not (tiny_project / "mlartifacts").exists() and not (tmp_path / "mlruns").exists()
    assert not (tiny_project / "mlflow.db").exists()

    # the registry: the version is champion, and the champion loads (pyfunc) from the server
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == str(reg["version"])
    model = load_model(MODEL)
    x = np.random.default_rng(0).normal(0, 50, (5, 1, 64)).astype(np.float32)
    want = model.predict(x)
    assert want.shape == (5, 16) and np.isfinite(want).all()

    # and `mlflow models serve` of the champion, from the server, answers HTTP
    t1 = time.monotonic()
    body = _serve_and_predict(on_server.url, x, tmp_path)
    print(f"[timing] mlflow models serve from the server: {time.monotonic() - t1:.1f} s to an answer")
    np.testing.assert_allclose(np.asarray(body["predictions"], dtype=np.float32), want, rtol=1e-5, atol=1e-6)


def _serve_and_predict(url: str, x: np.ndarray, workdir: Path) -> dict[str, Any]:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k not in (*S3_ENV, "VIRTUAL_ENV")},
        **TELEMETRY_OFF,
        "MLFLOW_TRACKING_URI": url,
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",  # uvicorn is started by name (docs/stack.md)
    }
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", MODEL, "--env-manager", "local"]
    cmd += ["-h", "127.0.0.1", "-p", str(port)]
    proc = spawn("mlflow models serve", cmd, workdir / "serve.log", env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            proc.check_alive()
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert time.monotonic() < deadline, f"the model server did not answer /ping in 180 s:\n{proc.tail()}"
            time.sleep(0.5)
        req = urllib.request.Request(
            f"{base}/invocations",
            data=json.dumps({"inputs": x.tolist()}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=60) as resp:
            assert resp.status == 200
            return json.loads(resp.read())
    finally:
        proc.stop()


@pytest.mark.scale
@pytest.mark.slow
def test_a_database_uri_keeps_artifacts_in_the_shared_store_never_local(
    tracking_server: TrackingServer,
    postgres_server: Postgres,
    s3_server: S3,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """MLFLOW_TRACKING_URI=postgresql+psycopg2://... (no server): refused without TRLS_MLFLOW_ARTIFACT_ROOT,
    and with it the artifacts go to S3; the server reads the same run."""
    from mlflow import MlflowClient

    from trls_core.tracking import Tracker
    from trls_core.tracking.remote import ArtifactStoreMissing

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server.backend_uri)  # the database the server migrated
    monkeypatch.delenv("TRLS_MLFLOW_ARTIFACT_ROOT", raising=False)
    with pytest.raises(ArtifactStoreMissing, match="TRLS_MLFLOW_ARTIFACT_ROOT=s3://"):
        Tracker.start(tmp_path, "direct-db", "refused")
    assert not (tmp_path / "mlartifacts").exists() and not (tmp_path / "mlruns").exists()

    for k, v in s3_server.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("TRLS_MLFLOW_ARTIFACT_ROOT", f"s3://{s3_server.bucket}/direct")
    with Tracker.start(tmp_path, "direct-db", "direct") as run:
        run.log_metrics({"m": 1.0})
        run.log_dict({"a": 1}, "info/a.json")
    assert f"direct/trls-direct-db/{run.run_id}/artifacts/info/a.json" in s3_server.keys("direct/")
    assert not (tmp_path / "mlartifacts").exists() and not (tmp_path / "mlruns").exists()
    via_server = MlflowClient(tracking_uri=tracking_server.url)
    assert via_server.get_run(run.run_id).data.metrics == {"m": 1.0}
    assert [a.path for a in via_server.list_artifacts(run.run_id, "info")] == ["info/a.json"]


# ----------------------------------------------------------------------------- bad input: nothing answers


def test_unreachable_tracking_server_exits_2_within_seconds_naming_it(
    tmp_path: Path, tiny_params: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`trls pipeline` against a closed port, then against a server that accepts but never answers."""
    from typer.testing import CliRunner

    from trls_core.cli import app
    from trls_core.tracking import remote

    args = ["pipeline", "--root", str(tmp_path), "--params", str(tiny_params), "--profile", "small"]
    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", closed)
    t0 = time.monotonic()
    res = CliRunner().invoke(app, args)
    elapsed = time.monotonic() - t0
    assert res.exit_code == 2, res.output
    assert f"tracking server {closed} is unreachable" in res.output, res.output
    assert elapsed < 30, elapsed
    assert not (tmp_path / "models").exists()  # failed before anything ran

    with socket.socket() as silent:  # listens (the kernel completes the handshake) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        monkeypatch.setenv(remote.TIMEOUT_ENV, "1.5")
        t0 = time.monotonic()
        res = CliRunner().invoke(app, args)
        elapsed = time.monotonic() - t0
    assert res.exit_code == 2, res.output
    assert f"tracking server {uri} is unreachable" in res.output and "waited 1.5 s" in res.output, res.output
    assert elapsed < 15, elapsed


def test_unreachable_database_uri_fails_naming_host_and_port(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from trls_core.tracking import Tracker
    from trls_core.tracking.remote import TrackingUnreachable

    port = free_port()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"postgresql+psycopg2://u:secret@127.0.0.1:{port}/mlflow")
    monkeypatch.setenv("TRLS_MLFLOW_ARTIFACT_ROOT", "s3://bucket/x")
    t0 = time.monotonic()
    with pytest.raises(TrackingUnreachable) as err:
        Tracker.start(tmp_path, "epilepsy", "never")
    assert time.monotonic() - t0 < 15
    msg = str(err.value)
    assert f"unreachable at 127.0.0.1:{port}" in msg and "secret" not in msg and "u:***@" in msg, msg


def test_promotion_lock_of_a_server_is_per_machine_and_keyed_by_the_uri() -> None:
    """A server has no folder beside it: promotions on this host serialise on a temp-folder lock per URI."""
    import tempfile

    from trls_core.tracking.promotion import promotion_lock_path

    a = promotion_lock_path("http://10.0.0.5:5000")
    assert a.parent == Path(tempfile.gettempdir()) / "trls-locks"
    assert a == promotion_lock_path("http://10.0.0.5:5000") != promotion_lock_path("http://10.0.0.6:5000")
    assert promotion_lock_path("postgresql+psycopg2://u@db/mlflow").parent == a.parent
