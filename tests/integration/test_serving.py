"""Serving and batch inference of a registered encoder, against a real sqlite MLflow store in a temp folder.

One tiny model is registered (and made champion) once for the module; then
``trls embed`` embeds Parquet / CSV / NPZ windows and refuses files the
model cannot take, and ``mlflow models serve`` answers HTTP on 127.0.0.1
with the in-process model's embeddings.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.conftest import ROOT, TELEMETRY_OFF
from tests.tiny_model import ENC_KWARGS, N_SAMPLES, encoder_dir, project

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:sqlalchemy.*"),
    pytest.mark.filterwarnings("ignore::FutureWarning:mlflow.*"),
]

NAME = "trls-epilepsy-encoder"
MODEL = f"models:/{NAME}@champion"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A project root with a registered champion: root, windows (raw µV) and the windows Parquet."""
    from trls_core import tracking

    root = tmp_path_factory.mktemp("serve")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("MLFLOW_REGISTRY_URI", raising=False)
        for k, v in TELEMETRY_OFF.items():
            mp.setenv(k, v)
        raw = torch.randn(20, 1, N_SAMPLES, generator=torch.Generator().manual_seed(3))
        sdir, windows = project(root, "d" * 64, raw)
        mdir = encoder_dir(root / "models" / "epilepsy" / "tfrnn_seed0", [1, 9, 9])
        with tracking.Tracker.start(root, "epilepsy", "register") as run:
            reg = tracking.register_encoder(run, mdir, sdir, NAME, task="binary", test_macro_f1=0.5)
        assert tracking.promote_if_better(NAME, reg.version, 0.5, None, root=root)[0]
        yield {"root": root, "x": (raw * 100).numpy(), "parquet": windows}


@pytest.fixture(scope="module")
def model(store: dict[str, Any]) -> Any:
    from trls_core.tracking import load_model

    return load_model(MODEL, root=store["root"])


def _embed(store: dict[str, Any], *args: str) -> Any:
    from typer.testing import CliRunner

    from trls_core.cli import app

    return CliRunner().invoke(app, ["embed", "--model", MODEL, "--root", str(store["root"]), *args])


def _read(path: Path) -> tuple[dict[str, list[Any]], np.ndarray, dict[str, Any]]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    ids = {c: table[c].to_pylist() for c in table.column_names if c != "embedding"}
    emb = np.asarray(table["embedding"].to_pylist(), dtype=np.float32)
    return ids, emb, json.loads(table.schema.metadata[b"trls"])


def test_embed_parquet_csv_npz_keep_the_ids(store: dict[str, Any], model: Any, tmp_path: Path) -> None:
    x = store["x"]
    want = model.predict(x)
    assert want.shape == (20, ENC_KWARGS["rep_dim"])

    out = tmp_path / "out" / "emb.parquet"
    res = _embed(store, str(store["parquet"]), str(out))
    assert res.exit_code == 0, res.output
    assert "20 windows x 8" in res.output
    ids, emb, meta = _read(out)
    assert ids["window_id"] == [f"w{i}" for i in range(20)] and ids["record_id"][:3] == ["r0", "r0", "r1"]
    np.testing.assert_allclose(emb, want, rtol=1e-5, atol=1e-6)
    assert meta["model_uri"] == MODEL and meta["input_spec"]["n_samples"] == N_SAMPLES
    assert not [p for p in out.parent.iterdir() if p.name != "emb.parquet"]  # no temp file left

    csv = tmp_path / "w.csv"
    header = ["record_id", "label", "fs", *[f"s{i}" for i in range(N_SAMPLES)]]
    lines = [",".join(header)] + [
        ",".join([f"rec{i}", "x", "173.61", *(repr(float(v)) for v in x[i, 0])]) for i in range(3)
    ]
    csv.write_text("\n".join(lines) + "\n")
    res = _embed(store, str(csv), str(tmp_path / "csv.parquet"))
    assert res.exit_code == 0, res.output
    ids, emb, _ = _read(tmp_path / "csv.parquet")
    assert ids == {"window_id": ["w.csv:0", "w.csv:1", "w.csv:2"], "record_id": ["rec0", "rec1", "rec2"]}
    np.testing.assert_allclose(emb, want[:3], rtol=1e-4, atol=1e-5)

    npz = tmp_path / "w.npz"
    np.savez(npz, x=x[:4, 0], window_id=np.array(["a", "b", "c", "d"]), fs=np.float64(173.61))
    res = _embed(store, str(npz), str(tmp_path / "npz.parquet"))
    assert res.exit_code == 0, res.output
    ids, emb, _ = _read(tmp_path / "npz.parquet")
    assert ids == {"window_id": ["a", "b", "c", "d"]}
    np.testing.assert_allclose(emb, want[:4], rtol=1e-5, atol=1e-6)


def test_embed_refuses_what_the_model_cannot_take_and_writes_nothing(store: dict[str, Any], tmp_path: Path) -> None:
    x = store["x"]
    cases = {
        "length": (dict(x=x[:3, 0, :32], fs=np.float64(173.61)), ["length: windows of 32 samples, the model takes 64"]),
        "channels": (dict(x=np.stack([x[:3, 0], x[:3, 0]], axis=1)), ["channels: the file has 2 channel(s)"]),
        "rate": (dict(x=x[:3, 0], fs=np.float64(256.0)), ["rate: the windows are at 256 Hz, the model's at 173.61 Hz"]),
        "all": (dict(x=np.stack([x[:3, 0, :32]] * 3, axis=1), fs=np.float64(100.0)), ["channels:", "length:", "rate:"]),
    }
    for name, (arrays, expected) in cases.items():
        path, out = tmp_path / f"{name}.npz", tmp_path / f"{name}.parquet"
        np.savez(path, **arrays)
        res = _embed(store, str(path), str(out))
        assert res.exit_code == 2, (name, res.output)
        assert "does not match the model's input" in res.output and "nothing written" in res.output, res.output
        for e in expected:
            assert e in res.output, (name, res.output)
        assert not out.exists() and not list(tmp_path.glob(f".{name}.parquet.*"))
    # no rate in the file: --fs states it
    np.savez(tmp_path / "norate.npz", x=x[:2, 0])
    res = _embed(store, str(tmp_path / "norate.npz"), str(tmp_path / "norate.parquet"), "--fs", "250")
    assert res.exit_code == 2 and "rate: the windows are at 250 Hz" in res.output, res.output
    res = _embed(store, str(tmp_path / "norate.npz"), str(tmp_path / "norate.parquet"))
    assert res.exit_code == 0, res.output
    # an unknown model is one clear line
    from typer.testing import CliRunner

    from trls_core.cli import app

    res = CliRunner().invoke(
        app, ["embed", "--model", "models:/nope@champion", "--root", str(store["root"]), str(store["parquet"]), "o"]
    )
    assert res.exit_code == 2 and "cannot load model 'models:/nope@champion'" in res.output, res.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_served_model_answers_http_like_the_in_process_model(store: dict[str, Any], model: Any) -> None:
    """`make serve` (mlflow models serve) on 127.0.0.1, from a shell whose PATH has no venv on it."""
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "MAKEFLAGS", "MFLAGS")},
        "MLFLOW_TRACKING_URI": f"sqlite:///{store['root'] / 'mlflow.db'}",
        "PATH": "/usr/local/bin:/usr/bin:/bin",  # not activated: uvicorn is only in .venv/bin
    }
    # -o: take the venv as installed (the test runs inside it; never reinstall here)
    cmd = ["make", "-s", "-C", str(ROOT), "-o", ".venv/.installed", "serve", f"MODEL={MODEL}", f"PORT={port}"]
    proc = subprocess.Popen(
        cmd, env=env, cwd=store["root"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]  # type: ignore[union-attr]
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert time.monotonic() < deadline, "the model server did not answer /ping within 180 s"
            time.sleep(0.5)
        x = store["x"][:5]
        status, body = _post(f"{base}/invocations", {"inputs": x.tolist()})
        assert status == 200, body
        np.testing.assert_allclose(np.asarray(body["predictions"], dtype=np.float32), model.predict(x), rtol=1e-5)
        # a wrong shape: 400 naming the expected and the received shape, the payload not echoed in full
        # (a (3, 60) payload is below numpy's summary threshold: mlflow would quote all of it, twice)
        rng = np.random.default_rng(0)
        for shape in ((4, 1, 4096), (3, 60)):
            status, body = _post(f"{base}/invocations", {"inputs": rng.normal(0, 100, shape).round(3).tolist()})
            assert status == 400, body
            msg = body["message"]
            assert msg.endswith(f"Shape of input {shape} does not match expected shape (-1, 1, 64)."), msg[-400:]
            assert len(msg) < 600, msg
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        for _ in range(50):  # uvicorn's worker leaves with its parent: nothing of the group may remain
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("a process of the model server outlived it")
