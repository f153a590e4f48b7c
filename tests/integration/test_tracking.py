"""MLflow tracking + registry (trls_core.tracking) against a real sqlite store in a temp folder."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from tests.conftest import TELEMETRY_OFF  # noqa: E402
from tests.tiny_model import ENC_KWARGS, N_SAMPLES, encoder_dir, project, windows_parquet  # noqa: E402
from trls_core import tracking  # noqa: E402
from trls_core.tracking import Tracker  # noqa: E402

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:sqlalchemy.*"),
    pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SADeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning:mlflow.*"),
]

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
    for run in (p_run, kid):  # the Source column: what started the run, on nested runs too
        assert run.data.tags["mlflow.source.type"] == "LOCAL" and run.data.tags["mlflow.source.name"]
    assert tracking.provenance.source_name(["/x/.venv/bin/trls", "pipeline", "--force"]) == "trls pipeline"
    assert tracking.provenance.source_name(["/repo/flows/pipeline.py"]) == "flows.pipeline"
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
    # few, rounded metrics under names that say what they are; the rest in a table
    assert (
        set(data.metrics)
        == set(logged)
        == {
            f"{stem}_macro_f1_{stat}"
            for stem in (
                "linear_probe",
                "finetune_10pct_labels",
                "finetune_100pct_labels",
            )
            for stat in ("mean", "std")
        }
    )
    assert data.metrics["finetune_10pct_labels_macro_f1_mean"] == pytest.approx(0.7)
    assert data.tags["eval.task"] == "binary"
    files = {a.path for a in client.list_artifacts(run.run_id, "report")}
    assert files == {"report/metrics.json", "report/summary.md", "report/tsne.png", "report/aggregates.json"}
    table = json.loads(Path(client.download_artifacts(run.run_id, "report/aggregates.json", str(tmp_path))).read_text())
    rows = [dict(zip(table["columns"], r)) for r in table["data"]]
    by = {(r["setting"], r["metric"]): r for r in rows}
    assert by[("controls.random_encoder_linear", "accuracy")]["mean"] == 0.6
    assert by[("linear_probe", "accuracy")]["max"] == pytest.approx(0.91) and by[("linear_probe", "accuracy")]["n"] == 2
    with pytest.raises(FileNotFoundError, match="metrics.json"):
        tracking.log_evaluation(run, tmp_path / "nothing")


def test_headline_metrics_names_and_rounding() -> None:
    agg = {"mean": 0.97251075964, "std": 0.0123456789}
    res = {
        "linear_probe": {"macro_f1": agg},
        "finetune": {"0.01": {"macro_f1": agg}, "0.005": {"macro_f1": agg}},
        "controls": {"random_encoder_linear": {"macro_f1": agg}, "spectrogram_linear": {"macro_f1": agg}},
    }
    got = tracking.headline_metrics(res, prefix="binary/")
    assert got["binary/linear_probe_macro_f1_mean"] == 0.9725 and got["binary/linear_probe_macro_f1_std"] == 0.0123
    assert {
        "binary/finetune_1pct_labels_macro_f1_mean",
        "binary/finetune_0.5pct_labels_macro_f1_mean",
        "binary/control_untrained_encoder_macro_f1_mean",
        "binary/control_spectrogram_pixels_macro_f1_mean",
    } <= set(got)
    assert len(got) == 10


def test_experiment_is_a_model_training_experiment(root: Path, client: Any) -> None:
    """The MLflow 3 UI opens an experiment without the kind tag in its GenAI view; ours says what it is."""
    with Tracker.start(root, "kind-check", "a"):
        pass
    exp = client.get_experiment_by_name("trls-kind-check")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    # an experiment the UI had only guessed a kind for gets the tag too; a user's own choice is kept
    client.set_experiment_tag(exp.experiment_id, "mlflow.experimentKind", "genai_development_inferred")
    Tracker.start(root, "kind-check", "b").finish()
    assert client.get_experiment(exp.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    client.set_experiment_tag(exp.experiment_id, "mlflow.experimentKind", "genai_development")
    Tracker.start(root, "kind-check", "c").finish()
    assert client.get_experiment(exp.experiment_id).tags["mlflow.experimentKind"] == "genai_development"


def test_splits_logged_as_dataset_inputs_and_system_metrics(
    root: Path, client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read back from the store: the run's dataset inputs (name, Parquet digest, rows, schema, context)
    and the system metrics sampled during a block."""
    from trls_core.io import sha256_file

    raw = np.random.default_rng(0).normal(0, 100, (10, 1, N_SAMPLES)).astype(np.float32)
    pq_path = windows_parquet(tmp_path / "windows.parquet", raw, ["train"] * 6 + ["val"] * 2 + ["test"] * 2)
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    with Tracker.start(root, "epilepsy", "inputs") as run:
        assert run.log_splits("epilepsy", pq_path) == 3
        with run.system_metrics():
            deadline = time.monotonic() + 0.7
            while time.monotonic() < deadline:  # some CPU work to sample
                sum(i * i for i in range(20_000))
        assert run.log_splits("epilepsy", tmp_path / "missing.parquet") == 0  # a warning, not a failure
    got = client.get_run(run.run_id)
    inputs = {i.dataset.name: i for i in got.inputs.dataset_inputs}
    assert set(inputs) == {"epilepsy/train", "epilepsy/val", "epilepsy/test"}
    sha = sha256_file(pq_path)
    for split, n in (("train", 6), ("val", 2), ("test", 2)):
        ds = inputs[f"epilepsy/{split}"]
        assert [(t.key, t.value) for t in ds.tags] == [("mlflow.data.context", split)]
        assert ds.dataset.digest == sha[:16] and ds.dataset.source_type == "local"
        assert json.loads(ds.dataset.source)["uri"] == str(pq_path.resolve())
        profile = json.loads(ds.dataset.profile)
        assert profile["num_rows"] == n and profile["parquet_sha256"] == sha
        cols = {c["name"]: c["type"] for c in json.loads(ds.dataset.schema)["mlflow_colspec"]}
        assert cols["signal"] == "array" and cols["split"] == "string" and cols["label"] == "long"
    system = {k for k in got.data.metrics if k.startswith("system/")}
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= system, system
    steps = client.get_metric_history(run.run_id, "system/cpu_utilization_percentage")
    assert len(steps) >= 2  # sampled during the block (every 0.2 s) + the final sample


# ------------------------------------------------------------------ registry


def test_registry_champion_rule_and_raw_window_model(root: Path, client: Any, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from trls_core.io import sha256_file
    from trls_core.models.loading import load_encoder
    from trls_core.spectrogram import apply_normaliser, stft_logmag

    raw = torch.randn(20, 1, N_SAMPLES, generator=torch.Generator().manual_seed(1))
    sdir, windows = project(tmp_path / "proj", "a" * 64, raw)
    other, _ = project(tmp_path / "other", "b" * 64, raw)  # another Parquet: another split
    mdir = encoder_dir(tmp_path / "model", json.loads((sdir / "meta.json").read_text())["shape"])
    name = tracking.registered_model_name("epilepsy")
    assert name == "trls-epilepsy-encoder" and tracking.registered_model_name("cinc2017") == "trls-cinc2017-encoder"
    digest = tracking.split_digest(sdir, "binary")
    assert digest != tracking.split_digest(other, "binary") != tracking.split_digest(sdir, "multiclass")

    def register(score: float, spec: Path, force: bool = False) -> tuple[str, bool, str]:
        with Tracker.start(root, "epilepsy", f"register {score}") as run:
            reg = tracking.register_encoder(run, mdir, spec, name, task="binary", test_macro_f1=score, force=force)
        assert not reg.skipped, reg
        promoted, reason = tracking.promote_if_better(
            name, reg.version, score, tracking.split_digest(spec, "binary"), root=root
        )
        return reg.version, promoted, reason

    def alias(a: str) -> str:
        return str(client.get_model_version_by_alias(name, a).version)

    v1, ok, reason = register(0.80, sdir)
    assert ok and alias("champion") == v1 == alias("challenger") and "no champion" in reason
    v2, ok, reason = register(0.70, sdir, force=True)  # the same weights: registered only when forced
    assert not ok and alias("champion") == v1 and alias("challenger") == v2
    assert "0.7000 <= champion v1 0.8000" in reason
    assert client.get_model_version(name, v2).tags["promotion_reason"] == reason
    v3, ok, reason = register(0.90, sdir, force=True)
    assert ok and alias("champion") == v3 and "promoted" in reason
    v4, ok, reason = register(0.99, other)  # same weights, another test split: not a duplicate
    assert not ok and alias("champion") == v3 and alias("challenger") == v4
    assert "another test split" in reason
    tags = client.get_model_version(name, v3).tags
    assert tags["test_split_digest"] == digest and float(tags["test_macro_f1"]) == 0.9
    assert tags["weights_sha256"] == sha256_file(mdir / "encoder.safetensors")
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
    # the signature is what the model takes: (B, C, L), C and L fixed; the example is two real windows (raw µV)
    spec = model.metadata.get_input_schema().inputs[0]
    assert tuple(spec.shape) == (-1, 1, N_SAMPLES)
    from mlflow.artifacts import download_artifacts

    with tracking.store.global_uri(tracking.tracking_uri(root)):
        local = download_artifacts(artifact_uri=f"models:/{name}/{v3}", dst_path=str(tmp_path / "dl"))
    example = model.metadata.load_input_example(local)
    example = np.asarray(example if not isinstance(example, dict) else example["inputs"], dtype=np.float32)
    np.testing.assert_allclose(example, (raw[:2] * 100).numpy(), rtol=1e-6)
    assert model.metadata.metadata["trls_input"] == {
        "dataset": "epilepsy",
        "channels": 1,
        "n_samples": N_SAMPLES,
        "fs": 173.61,
        "channel_names": None,
        "embedding_dim": ENC_KWARGS["rep_dim"],
    }
    windows = raw[:5].numpy().astype(np.float32)
    emb = model.predict(windows)
    assert emb.shape == (5, ENC_KWARGS["rep_dim"]) and emb.dtype == np.float32 and np.isfinite(emb).all()
    # the reference: the stage's own preprocessing (not the module's transform) + the encoder
    enc, _ = load_encoder(mdir)
    stats = load_file(str(sdir / "normaliser.safetensors"))
    spec_ = apply_normaliser(stft_logmag(raw[:5], n_fft=16, hop=8, log_eps=1e-3), "train_per_freq", stats)
    with torch.no_grad():
        want = enc(spec_).numpy()
    np.testing.assert_allclose(emb, want, rtol=1e-4, atol=1e-5)
    # a wrong shape names the expected and the received shape; the data is not echoed in full
    big = np.random.default_rng(0).normal(0, 100, (8, N_SAMPLES * 20)).astype(np.float32)
    py = model.unwrap_python_model()
    with pytest.raises(ValueError, match=r"expected raw windows of shape \(B, 1, 64\), got \(5, 64\); add the channel"):
        py.predict(None, windows[:, 0])
    with pytest.raises(ValueError, match=r"got \(5, 1, 32\); windows of 32 samples where the model takes 64"):
        py.predict(None, windows[:, :, :32])
    with pytest.raises(Exception) as err:  # noqa: B017  (mlflow's schema enforcement, before the model)
        model.predict(big[:, None, :])
    msg = str(err.value)
    assert "(-1, 1, 64)" in msg and "(8, 1, 1280)" in msg and len(msg) < 2000, msg[:3000]
    assert os.environ.get("MLFLOW_TRACKING_URI") is None  # registry calls left no global URI behind


def test_duplicate_registration_is_skipped_unless_forced(root: Path, client: Any, tmp_path: Path) -> None:
    """Weights equal to the latest version's (same test split) add no version: said in the log and a tag."""
    raw = torch.randn(20, 1, N_SAMPLES, generator=torch.Generator().manual_seed(2))
    sdir, _ = project(tmp_path / "proj", "c" * 64, raw)
    mdir = encoder_dir(tmp_path / "model", json.loads((sdir / "meta.json").read_text())["shape"])
    name = tracking.registered_model_name("dedupe")
    with Tracker.start(root, "dedupe", "first") as run:
        first = tracking.register_encoder(run, mdir, sdir, name, test_macro_f1=0.5)
    assert not first.skipped and str(first) == first.version == "1"
    with Tracker.start(root, "dedupe", "again") as run:
        again = tracking.register_encoder(run, mdir, sdir, name, test_macro_f1=0.5)
    assert again.skipped and again.version == "1" and "weights equal trls-dedupe-encoder v1" in again.reason
    assert client.get_run(run.run_id).data.tags["registration.skipped"] == again.reason
    assert [str(mv.version) for mv in client.search_model_versions(f"name = '{name}'")] == ["1"]
    with Tracker.start(root, "dedupe", "forced") as run:
        forced = tracking.register_encoder(run, mdir, sdir, name, test_macro_f1=0.5, force=True)
    assert not forced.skipped and forced.version == "2"
    # other weights are a new version without force
    from safetensors.torch import load_file

    w = load_file(str(mdir / "encoder.safetensors"))
    save_file({k: v + 0.01 for k, v in w.items()}, str(mdir / "encoder.safetensors"))
    with Tracker.start(root, "dedupe", "retrained") as run:
        new = tracking.register_encoder(run, mdir, sdir, name, test_macro_f1=0.5)
    assert not new.skipped and new.version == "3"
    # one registered model per dataset: its champion is its own (the epilepsy model's is untouched)
    assert tracking.promote_if_better(name, "3", 0.5, None, root=root)[0]
    assert str(client.get_model_version_by_alias(name, "champion").version) == "3"
