"""MLflow tracking + registry (trls_core.tracking) against a real sqlite store in a temp folder."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from tests.conftest import TELEMETRY_OFF  # noqa: E402
from trls_core import tracking  # noqa: E402
from trls_core.tracking import Tracker  # noqa: E402

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:sqlalchemy.*"),
    pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SADeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning:mlflow.*"),
]

N_SAMPLES = 64
STFT = {
    "n_fft": 16,
    "hop": 8,
    "win_length": None,
    "window": "hann",
    "center": True,
    "log_eps": 1e-3,
    "fmax_bin": None,
    "normalisation": "train_per_freq",
    "dtype": "float32",
}
ENC_KWARGS = {"dim": 4, "depth": 1, "rep_dim": 8, "rnn_hidden": 2}
DVC_LOCK = """schema: '2.0'
stages:
  spectrogram@epilepsy:
    cmd: python -m trls_core.stages.spectrogram epilepsy
    outs:
    - path: data/spectrograms/epilepsy
      hash: md5
      md5: 0123456789abcdef0123456789abcdef.dir
      size: 10
      nfiles: 5
"""


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One project root (sqlite store + artifacts) for the module: the store's migrations run once."""
    root = tmp_path_factory.mktemp("proj")
    (root / "dvc.lock").write_text(DVC_LOCK)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("MLFLOW_REGISTRY_URI", raising=False)
        for k, v in TELEMETRY_OFF.items():
            mp.setenv(k, v)
        mp.setenv("PREFECT_HOME", str(root / ".prefect"))
        yield root


@pytest.fixture(scope="module")
def client(root: Path) -> Any:
    from mlflow import MlflowClient

    uri = tracking.tracking_uri(root)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


# ------------------------------------------------------------------ provenance


def test_tracking_uri_default_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.tracking_uri(tmp_path) == "http://127.0.0.1:5000"


def test_dvc_lock_digests_and_git(tmp_path: Path) -> None:
    assert tracking.dvc_lock_digests(tmp_path) == {}
    (tmp_path / "dvc.lock").write_text(DVC_LOCK)
    assert tracking.dvc_lock_digests(tmp_path) == {
        "spectrogram@epilepsy:data/spectrograms/epilepsy": "0123456789abcdef0123456789abcdef.dir"
    }
    assert tracking.git_commit(tmp_path / "not-a-repo") is None
    assert tracking.safe_key("dvc.spectrogram@epilepsy:data/x") == "dvc.spectrogram_epilepsy:data/x"


# ------------------------------------------------------------------ runs


def test_parent_and_nested_runs(root: Path, client: Any, tmp_path: Path) -> None:
    params = {"pretrain": {"lr": 0.001, "seeds": [0, 1]}, "model": {"encoder": "tfrnn"}, "long": "x" * 900}
    note = tmp_path / "note.txt"
    note.write_text("hello")
    with Tracker.start(root, "epilepsy", "pipeline", params=params, tags={"profile": "tiny"}) as parent:
        with parent.child("pretrain/seed=0", params={"seed": 0}, tags={"method": "byol"}) as child:
            for step, loss in enumerate([1.0, 0.5]):
                logged = child.log_metrics(
                    {
                        "loss": loss,
                        "bad": float("nan"),
                        "word": "x",
                        "inf": float("inf"),
                        "t": torch.tensor(2.0),
                        "n": np.float32(3.0),
                    },
                    step=step,
                )
            assert set(logged) == {"loss", "t", "n"}
            child.log_dict({"a": 1, "path": Path("p")}, "info/summary.json")
            child.log_artifact(note, "notes")

    exp = client.get_experiment_by_name("trls-epilepsy")
    assert exp is not None and exp.artifact_location == (root.resolve() / "mlartifacts" / "trls-epilepsy").as_uri()
    p_run = client.get_run(parent.run_id)
    assert p_run.info.status == "FINISHED" and p_run.info.run_name == "pipeline"
    assert p_run.data.params["pretrain.lr"] == "0.001"
    assert p_run.data.params["pretrain.seeds"] == "[0, 1]"
    assert len(p_run.data.params["long"]) == tracking.PARAM_VALUE_LIMIT
    assert p_run.data.tags["profile"] == "tiny"
    assert p_run.data.tags["dvc.spectrogram_epilepsy:data/spectrograms/epilepsy"].startswith("0123")

    kids = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent.run_id}'")
    assert [k.info.run_id for k in kids] == [child.run_id]
    kid = kids[0]
    assert kid.info.status == "FINISHED" and kid.data.params == {"seed": "0"}
    assert kid.data.tags["method"] == "byol"
    assert kid.data.metrics == {"loss": 0.5, "t": 2.0, "n": 3.0}
    assert [m.value for m in client.get_metric_history(child.run_id, "loss")] == [1.0, 0.5]
    files = {a.path for a in client.list_artifacts(child.run_id, "info")} | {
        a.path for a in client.list_artifacts(child.run_id, "notes")
    }
    assert files == {"info/summary.json", "notes/note.txt"}
    parent_files = {a.path for a in client.list_artifacts(parent.run_id, "params")}
    assert len(parent_files) == 1  # the untruncated long param


def test_log_metric_steps_is_one_batch_per_chunk(root: Path, client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with Tracker.start(root, "epilepsy", "unit") as run:
        calls = []
        real = run.client.log_batch
        monkeypatch.setattr(run.client, "log_batch", lambda *a, **k: (calls.append(k), real(*a, **k))[1])
        n = run.log_metric_steps([({"acc": 0.9, "f1": float("nan")}, 0), ({"loss": 1.0}, 1), ({"loss": 0.5}, 2)])
        assert n == 3 and len(calls) == 1
        monkeypatch.setattr(tracking.runs, "METRIC_BATCH_LIMIT", 2)
        calls.clear()
        run.log_metric_steps([({"x": float(i)}, i) for i in range(5)])
        assert len(calls) == 3  # chunks of the batch limit
    assert [m.value for m in client.get_metric_history(run.run_id, "loss")] == [1.0, 0.5]
    assert [m.step for m in client.get_metric_history(run.run_id, "x")] == [0, 1, 2, 3, 4]
    assert "f1" not in client.get_run(run.run_id).data.metrics


def test_failing_block_marks_run_failed(root: Path, client: Any) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with Tracker.start(root, "epilepsy", "doomed") as run:
            child = run.child("inner")
            raise RuntimeError("boom")
    assert client.get_run(run.run_id).info.status == "FAILED"
    assert client.get_run(child.run_id).info.status == "RUNNING"  # not entered as a context
    child.finish("FAILED")
    child.finish("FINISHED")  # idempotent: the first status stays
    assert client.get_run(child.run_id).info.status == "FAILED"


def test_children_from_threads_and_resume(root: Path, client: Any) -> None:
    """Nested runs started from worker threads (as Prefect tasks do) keep their parent."""
    parent = Tracker.start(root, "epilepsy", "fan-out")

    def work(seed: int) -> str:
        resumed = tracking.resume_run(root, parent.run_id)  # a task gets the parent by id
        with resumed.child(f"finetune/seed={seed}", params={"seed": seed}) as c:
            c.log_metrics({"acc": 0.5 + seed / 10})
            return c.run_id

    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(work, range(4)))
    parent.finish()
    kids = client.search_runs([parent.experiment_id], f"tags.mlflow.parentRunId = '{parent.run_id}'")
    assert sorted(k.info.run_id for k in kids) == sorted(ids)
    assert all(k.info.status == "FINISHED" for k in kids)

    again = tracking.resume_run(root, parent.run_id)
    assert client.get_run(parent.run_id).info.status == "RUNNING"
    again.finish()
    with pytest.raises(ValueError, match="no MLflow run"):
        tracking.resume_run(root, "0" * 32)


def test_log_evaluation(root: Path, client: Any, tmp_path: Path) -> None:
    agg = lambda m: {"mean": m, "std": 0.01, "min": m - 0.01, "max": m + 0.01, "n": 2, "values": [m, m]}  # noqa: E731
    metrics = {
        "linear_probe": {"accuracy": agg(0.9), "macro_f1": agg(0.8)},
        "finetune": {"0.1": {"macro_f1": agg(0.7)}, "1.0": {"macro_f1": agg(0.85)}},
        "controls": {"random_encoder_linear": {"accuracy": agg(0.6)}, "spectrogram_linear": {"accuracy": agg(0.5)}},
        "per_seed": [{"seed": 0, "linear_probe": {"accuracy": 0.9}}],
        "task": "binary",
        "protocol": "random",
    }
    rdir = tmp_path / "reports" / "epilepsy"
    rdir.mkdir(parents=True)
    (rdir / "metrics.json").write_text(json.dumps(metrics))
    (rdir / "summary.md").write_text("# summary\n")
    (rdir / "tsne.png").write_bytes(b"\x89PNG fake")
    with Tracker.start(root, "epilepsy", "evaluate") as run:
        logged = tracking.log_evaluation(run, rdir)
    data = client.get_run(run.run_id).data
    for key in (
        "linear_probe.accuracy.mean",
        "linear_probe.macro_f1.std",
        "finetune.0.1.macro_f1.mean",
        "finetune.1.0.macro_f1.mean",
        "controls.random_encoder_linear.accuracy.mean",
        "controls.spectrogram_linear.accuracy.mean",
    ):
        assert key in data.metrics and key in logged
    assert data.metrics["finetune.0.1.macro_f1.mean"] == pytest.approx(0.7)
    assert not any(k.startswith("per_seed") or k.endswith(".n") for k in data.metrics)
    assert data.tags["eval.task"] == "binary"
    files = {a.path for a in client.list_artifacts(run.run_id, "report")}
    assert files == {"report/metrics.json", "report/summary.md", "report/tsne.png"}
    with pytest.raises(FileNotFoundError, match="metrics.json"):
        tracking.log_evaluation(run, tmp_path)


# ------------------------------------------------------------------ registry


def _spectrogram_dir(path: Path, parquet_sha: str, raw: torch.Tensor) -> Path:
    from trls_core.spectrogram import fit_normaliser, stft_logmag

    spec = stft_logmag(raw, n_fft=STFT["n_fft"], hop=STFT["hop"], log_eps=STFT["log_eps"])
    path.mkdir(parents=True)
    save_file(fit_normaliser(spec, "train_per_freq"), str(path / "normaliser.safetensors"))
    meta = {
        "dataset": "epilepsy",
        "stft": STFT,
        "normalisation": "train_per_freq",
        "shape": list(spec.shape[1:]),
        "n_channels": 1,
        "n_samples": N_SAMPLES,
        "fs": 173.61,
        "parquet_sha256": parquet_sha,
        "tasks": {"binary": {"key": "y_binary", "classes": ["a", "b"]}},
    }
    (path / "meta.json").write_text(json.dumps(meta))
    return path


def _encoder_dir(path: Path, input_shape: list[int]) -> Path:
    """What the pretrain stage writes: encoder.safetensors + encoder.json."""
    from trls_core.models import build_encoder

    torch.manual_seed(0)
    enc = build_encoder("tfrnn", in_channels=1, **ENC_KWARGS)
    path.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in enc.state_dict().items()}, str(path / "encoder.safetensors"))
    info = {
        "fingerprint": "f" * 16,
        "seed": 0,
        "profile": "tiny",
        "device": "cpu",
        "n_train_windows": 20,
        "resumed_from_epoch": None,
        "config": {
            "encoder": "tfrnn",
            "in_channels": 1,
            "kwargs": ENC_KWARGS,
            "input_shape": input_shape,
            "dataset": "epilepsy",
            "stft": STFT,
            "fs": 173.61,
            "n_samples": N_SAMPLES,
        },
        "history": [],
    }
    (path / "encoder.json").write_text(json.dumps(info))
    return path


def test_registry_champion_rule_and_raw_window_model(root: Path, client: Any, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from trls_core.models.loading import load_encoder
    from trls_core.spectrogram import apply_normaliser, stft_logmag

    raw = torch.randn(20, 1, N_SAMPLES, generator=torch.Generator().manual_seed(1))
    sdir = _spectrogram_dir(tmp_path / "spec", "a" * 64, raw)
    other = _spectrogram_dir(tmp_path / "spec_other", "b" * 64, raw)  # another Parquet: another split
    mdir = _encoder_dir(tmp_path / "model", json.loads((sdir / "meta.json").read_text())["shape"])
    name = "trls-encoder-epilepsy"
    digest = tracking.split_digest(sdir, "binary")
    assert digest != tracking.split_digest(other, "binary") != tracking.split_digest(sdir, "multiclass")

    def register(score: float, spec: Path) -> tuple[str, bool, str]:
        with Tracker.start(root, "epilepsy", f"register {score}") as run:
            version = tracking.register_encoder(run, mdir, spec, name, task="binary", test_macro_f1=score)
        promoted, reason = tracking.promote_if_better(
            name, version, score, tracking.split_digest(spec, "binary"), root=root
        )
        return version, promoted, reason

    def alias(a: str) -> str:
        return str(client.get_model_version_by_alias(name, a).version)

    v1, ok, reason = register(0.80, sdir)
    assert ok and alias("champion") == v1 == alias("challenger") and "no champion" in reason
    v2, ok, reason = register(0.70, sdir)
    assert not ok and alias("champion") == v1 and alias("challenger") == v2
    assert "0.7000 <= champion v1 0.8000" in reason
    assert client.get_model_version(name, v2).tags["promotion_reason"] == reason
    v3, ok, reason = register(0.90, sdir)
    assert ok and alias("champion") == v3 and "promoted" in reason
    v4, ok, reason = register(0.99, other)
    assert not ok and alias("champion") == v3 and alias("challenger") == v4
    assert "another test split" in reason
    tags = client.get_model_version(name, v3).tags
    assert tags["test_split_digest"] == digest and float(tags["test_macro_f1"]) == 0.9
    mv3 = client.get_model_version(name, v3)
    assert mv3.run_id  # linked to its run; artifacts in the project's folder, not the cwd
    assert mv3.source.startswith("models:/m-")
    logged = client.get_logged_model(mv3.source.removeprefix("models:/"))
    assert logged.artifact_location.startswith((root.resolve() / "mlartifacts").as_uri())
    assert logged.source_run_id == mv3.run_id
    assert tracking.promote_if_better(name, v3, 0.9, digest) == (False, "v3 is already the champion")  # no root:
    # the store of this process's latest Tracker
    with pytest.raises(ValueError, match="scored on split"):
        tracking.promote_if_better(name, v4, 1.0, digest, root=root)

    model = tracking.load_model(f"models:/{name}@champion", root=root)
    flavor = model.metadata.flavors["python_function"]
    assert flavor.get("code")  # trls_core travels with the model
    assert flavor.get("model_code_path") and "python_model" not in flavor  # models-from-code: no pickle
    windows = raw[:5].numpy().astype(np.float32)
    emb = model.predict(windows)
    assert emb.shape == (5, ENC_KWARGS["rep_dim"]) and emb.dtype == np.float32 and np.isfinite(emb).all()
    # the reference: the stage's own preprocessing (not the module's transform) + the encoder
    enc, _ = load_encoder(mdir)
    stats = load_file(str(sdir / "normaliser.safetensors"))
    spec = apply_normaliser(stft_logmag(raw[:5], n_fft=16, hop=8, log_eps=1e-3), "train_per_freq", stats)
    with torch.no_grad():
        want = enc(spec).numpy()
    np.testing.assert_allclose(emb, want, rtol=1e-4, atol=1e-5)
    # the raw python model also accepts (B, L) for one channel
    py = model.unwrap_python_model()
    np.testing.assert_allclose(py.predict(None, windows[:, 0]), emb, rtol=1e-5, atol=1e-6)
    with pytest.raises(Exception):  # noqa: B017  (mlflow raises its own or a torch error, by version)
        model.predict(windows[:, :, :32])  # wrong window length: refused by the signature/model
    assert os.environ.get("MLFLOW_TRACKING_URI") is None  # registry calls left no global URI behind
