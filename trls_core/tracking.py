"""MLflow tracking and model registry for the pipeline (DESIGN.md §4).

The ONLY module of the project that imports mlflow: stages and flows pass
plain paths and run ids in, so the rest of the code runs (and is tested)
without an MLflow store.

Why it looks like this:

- Runs are driven through :class:`mlflow.MlflowClient` with explicit run
  ids, never through the fluent ``mlflow.start_run`` stack: that stack is
  per thread, so a nested run started inside a Prefect task (a worker
  thread) would silently lose its parent. ``mlflow.parentRunId`` is set by
  hand instead.
- Embedded default: ``sqlite:///<root>/mlflow.db`` with artifacts in
  ``<root>/mlartifacts`` (no server). ``MLFLOW_TRACKING_URI`` overrides it
  (a shared server past one machine).
- The registered model takes RAW signal windows: :class:`EncoderModel`
  rebuilds the exact preprocessing of the DVC spectrogram stage
  (:class:`~trls_core.spectrogram.SpectrogramTransform` + train-split
  normaliser statistics) in front of the encoder. Weights and statistics
  travel as safetensors artifacts, never as pickled tensors.
- A model becomes ``champion`` only if it beats the current champion on
  the SAME test split (:func:`promote_if_better`); every decision leaves a
  human-readable reason on the model version.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import numbers
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
import torch
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

logger = logging.getLogger(__name__)

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "EncoderModel",
    "Tracker",
    "dvc_lock_digests",
    "artifact_root",
    "evaluation_metrics",
    "experiment_name",
    "git_commit",
    "load_model",
    "log_evaluation",
    "promote_if_better",
    "provenance_tags",
    "register_encoder",
    "resume_run",
    "safe_key",
    "split_digest",
    "tracking_uri",
    "transform_from_meta",
]

CHAMPION = "champion"
CHALLENGER = "challenger"
PARAM_VALUE_LIMIT = 500  # the historical MLflow limit; older servers/DB schemas still enforce it
TAG_VALUE_LIMIT = 5000
METRIC_BATCH_LIMIT = 1000  # metrics per log_batch call (MLflow rejects more)
SCORE_TAG = "test_macro_f1"
DIGEST_TAG = "test_split_digest"
REASON_TAG = "promotion_reason"
_RUN_STATUSES = ("FINISHED", "FAILED", "KILLED")
_BAD_KEY_CHARS = re.compile(r"[^/\w.\- :]")
_URI_LOCK = threading.Lock()
_last_uri: str | None = None  # store of the latest Tracker, for registry calls without a root


# ------------------------------------------------------------------ provenance


def tracking_uri(root: Path) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the embedded sqlite store ``<root>/mlflow.db``."""
    env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if env:
        return env
    return f"sqlite:///{Path(root).resolve() / 'mlflow.db'}"


def artifact_root(root: Path) -> Path:
    """Where local stores keep artifacts: ``<root>/mlartifacts``."""
    return Path(root).resolve() / "mlartifacts"


def experiment_name(dataset_or_name: str) -> str:
    """``trls-<dataset>``; a name that already starts with ``trls-`` is kept as is."""
    name = dataset_or_name.strip()
    if not name:
        raise ValueError("experiment: name/dataset must not be empty")
    return name if name.startswith("trls-") else f"trls-{name}"


def git_commit(root: Path) -> str | None:
    """HEAD commit of the repository holding ``root``, or None (no git, not a repo)."""
    if shutil.which("git") is None:
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", sha) else None


def dvc_lock_digests(root: Path) -> dict[str, str]:
    """md5 of every stage output recorded in ``dvc.lock``: ``{"<stage>:<path>": md5}``.

    Tagging runs with these says exactly which data a model saw; ``{}``
    when the project has no lock file yet.
    """
    import yaml

    path = Path(root) / "dvc.lock"
    if not path.is_file():
        return {}
    try:
        lock = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from exc
    out: dict[str, str] = {}
    for stage, spec in (lock.get("stages") or {}).items():
        for item in (spec or {}).get("outs") or []:
            if isinstance(item, Mapping) and item.get("path") and item.get("md5"):
                out[f"{stage}:{item['path']}"] = str(item["md5"])
    return out


def provenance_tags(root: Path) -> dict[str, str]:
    """Git commit + DVC data digests as run tags."""
    tags = {f"dvc.{k}": v for k, v in dvc_lock_digests(root).items()}
    sha = git_commit(root)
    if sha:
        tags["mlflow.source.git.commit"] = sha
    return tags


# ------------------------------------------------------------------ helpers


def safe_key(key: str) -> str:
    """A valid MLflow param/metric/tag key: bad characters -> ``_``, no path tricks.

    MLflow allows only ``[/\\w.\\- :]``; DVC stage names contain ``@``.
    """
    k = _BAD_KEY_CHARS.sub("_", str(key)).strip("/") or "_"
    k = re.sub(r"/+", "/", k)
    parts = ["_" if p in (".", "..") else p for p in k.split("/")]
    return "/".join(parts)[:250]


def _flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if hasattr(v, "model_dump"):  # pydantic sections of Params
            v = v.model_dump()
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _truncate(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."


def _as_float(value: Any) -> float | None:
    """A finite float, or None for non-numeric / NaN / inf values."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            return None
        value = value.item()
    if isinstance(value, np.ndarray):
        if value.size != 1:
            return None
        value = value.item()
    if isinstance(value, (numbers.Real, np.generic)) and not isinstance(value, (str, bytes)):
        try:
            f = float(value)
        except (TypeError, ValueError):
            return None
        return f if math.isfinite(f) else None
    return None


def _now_ms() -> int:
    return int(time.time() * 1000)


def _client(uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _already_exists(exc: MlflowException) -> bool:
    return exc.error_code in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS")


def _ensure_experiment(client: MlflowClient, name: str, root: Path, uri: str) -> str:
    """Experiment id of ``name``, created (artifacts under ``<root>/mlartifacts``) if missing.

    Safe against two threads creating it at once.
    """
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            raise ValueError(f"MLflow experiment {name!r} is deleted; restore it or choose another name")
        return exp.experiment_id
    location = None  # a tracking server decides its artifact store itself
    if not uri.startswith(("http://", "https://", "databricks")):
        location = (artifact_root(root) / name).as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException as exc:
        if not _already_exists(exc):
            raise
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


@contextlib.contextmanager
def _global_uri(uri: str) -> Iterator[None]:
    """Point mlflow's process-wide tracking + registry URI at ``uri`` for a block.

    Only model logging/loading needs it (``Model.log`` and ``pyfunc.load_model``
    resolve the store globally); the previous settings, including the
    environment variables mlflow mirrors them into, are restored after, so
    nothing leaks into later code or tests. Serialised with a lock.
    """
    from mlflow.tracking._model_registry import utils as reg_utils
    from mlflow.tracking._tracking_service import utils as trk_utils

    with _URI_LOCK:
        saved_env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
        saved_trk = getattr(trk_utils, "_tracking_uri", None)
        saved_reg = getattr(reg_utils, "_registry_uri", None)
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        try:
            yield
        finally:
            trk_utils._tracking_uri = saved_trk
            reg_utils._registry_uri = saved_reg
            for k, v in saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


# ------------------------------------------------------------------ runs


class Tracker:
    """One MLflow run, addressed by id (thread-safe: no fluent active-run stack).

    Use as a context manager so a failure marks the run FAILED::

        with Tracker.start(root, "epilepsy", "pipeline", params=flatten(raw)) as run:
            with run.child("pretrain/seed=0") as child:
                child.log_metrics({"loss": 0.3}, step=0)
    """

    def __init__(self, root: Path, client: MlflowClient, uri: str, run_id: str, experiment_id: str) -> None:
        self.root = Path(root)
        self.client = client
        self.tracking_uri = uri
        self.run_id = run_id
        self.experiment_id = experiment_id
        self._finished = False

    # -- creation
    @classmethod
    def start(
        cls,
        root: Path,
        experiment: str,
        run_name: str,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        parent_run_id: str | None = None,
    ) -> Tracker:
        """Start a run in experiment ``trls-<experiment>`` (created if missing).

        ``experiment`` is a dataset name or an experiment name already
        starting with ``trls-``. Top-level runs are tagged with the git
        commit and the ``dvc.lock`` output digests; ``parent_run_id`` makes
        a nested run.
        """
        global _last_uri
        uri = tracking_uri(root)
        _last_uri = uri
        client = _client(uri)
        exp_id = _ensure_experiment(client, experiment_name(experiment), root, uri)
        return cls._create(root, client, uri, exp_id, run_name, params, tags, parent_run_id)

    @classmethod
    def _create(
        cls,
        root: Path,
        client: MlflowClient,
        uri: str,
        experiment_id: str,
        run_name: str,
        params: Mapping[str, Any] | None,
        tags: Mapping[str, Any] | None,
        parent_run_id: str | None,
    ) -> Tracker:
        all_tags: dict[str, Any] = {} if parent_run_id else provenance_tags(root)
        all_tags.update(tags or {})
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        clean = {safe_key(k): _truncate(str(v), TAG_VALUE_LIMIT) for k, v in all_tags.items()}
        run = client.create_run(experiment_id, run_name=run_name, tags=clean)
        tracker = cls(root, client, uri, run.info.run_id, experiment_id)
        if params:
            tracker.log_params(params)
        return tracker

    def child(
        self, run_name: str, params: Mapping[str, Any] | None = None, tags: Mapping[str, Any] | None = None
    ) -> Tracker:
        """A nested run under this one (same experiment)."""
        return Tracker._create(
            self.root,
            self.client,
            self.tracking_uri,
            self.experiment_id,
            run_name,
            params,
            tags,
            parent_run_id=self.run_id,
        )

    # -- logging
    def log_params(self, params: Mapping[str, Any]) -> None:
        """Nested dicts flattened with dots; values stringified, cut at 500 characters.

        When a value had to be cut, the full parameters are also logged as
        the artifact ``params/truncated_<first key>.json`` so nothing is lost.
        """
        flat = _flatten(params)
        entries, cut = [], []
        for k, v in flat.items():
            s = json.dumps(v, default=str) if isinstance(v, (list, tuple)) else str(v)
            if len(s) > PARAM_VALUE_LIMIT:
                cut.append(k)
            entries.append(Param(safe_key(k), _truncate(s, PARAM_VALUE_LIMIT)))
        if not entries:
            return
        self.client.log_batch(self.run_id, params=entries)
        if cut:
            logger.info(
                "run %s: params %s longer than %d chars truncated; full values in an artifact",
                self.run_id,
                cut,
                PARAM_VALUE_LIMIT,
            )
            self.log_dict({k: flat[k] for k in cut}, f"params/truncated_{safe_key(cut[0]).replace('/', '_')}.json")

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> dict[str, float]:
        """Log the finite numeric values; others (NaN, inf, strings, lists) are skipped.

        Returns what was logged (keys as stored).
        """
        ts, logged = _now_ms(), {}
        for k, v in metrics.items():
            f = _as_float(v)
            if f is None:
                logger.debug("run %s: metric %r=%r skipped (not a finite number)", self.run_id, k, v)
                continue
            logged[safe_key(k)] = f
        if logged:
            batch = [Metric(k, f, ts, int(step or 0)) for k, f in logged.items()]
            self.client.log_batch(self.run_id, metrics=batch)
        return logged

    def log_metric_steps(self, rows: Sequence[tuple[Mapping[str, Any], int]]) -> int:
        """Several steps' metrics ``[(metrics, step), ...]`` in ONE batch call; returns the count logged.

        One sqlite transaction instead of one per step: an evaluation logs
        ~40 unit runs with a curve each, and per-call overhead adds up.
        Non-finite values are skipped as in :meth:`log_metrics`.
        """
        ts = _now_ms()
        batch = [
            Metric(safe_key(k), f, ts, int(step))
            for metrics, step in rows
            for k, v in metrics.items()
            if (f := _as_float(v)) is not None
        ]
        for i in range(0, len(batch), METRIC_BATCH_LIMIT):  # mlflow's log_batch limit
            self.client.log_batch(self.run_id, metrics=batch[i : i + METRIC_BATCH_LIMIT])
        return len(batch)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        entries = [RunTag(safe_key(k), _truncate(str(v), TAG_VALUE_LIMIT)) for k, v in tags.items()]
        if entries:
            self.client.log_batch(self.run_id, tags=entries)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Log a file, or a folder's whole content."""
        p = Path(path)
        if p.is_dir():
            self.client.log_artifacts(self.run_id, str(p), artifact_path)
        elif p.is_file():
            self.client.log_artifact(self.run_id, str(p), artifact_path)
        else:
            raise FileNotFoundError(f"log_artifact: {p} does not exist")

    def log_dict(self, obj: Any, name: str) -> None:
        """``obj`` as a JSON artifact ``name`` (non-JSON values via ``str``)."""
        rel = Path(name)
        if rel.is_absolute() or ".." in rel.parts:
            raise ValueError(f"log_dict: artifact name must be a relative path, got {name!r}")
        with tempfile.TemporaryDirectory(prefix="trls-mlflow-") as tmp:
            f = Path(tmp) / rel.name
            f.write_text(json.dumps(obj, indent=2, default=str) + "\n")
            parent = rel.parent.as_posix()
            self.client.log_artifact(self.run_id, str(f), None if parent in ("", ".") else parent)

    # -- ending
    def finish(self, status: str = "FINISHED") -> None:
        """End the run (idempotent): FINISHED, FAILED or KILLED."""
        if status not in _RUN_STATUSES:
            raise ValueError(f"finish: status must be one of {_RUN_STATUSES}, got {status!r}")
        if self._finished:
            return
        self.client.set_terminated(self.run_id, status)
        self._finished = True

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc_type is None:
            self.finish("FINISHED")
        else:
            self.finish("KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED")
        return False  # never swallow the error

    def __repr__(self) -> str:
        return f"Tracker(run_id={self.run_id!r}, experiment_id={self.experiment_id!r}, uri={self.tracking_uri!r})"


def resume_run(root: Path, run_id: str) -> Tracker:
    """Re-open an existing run (e.g. in another process or a Prefect task) by id; status -> RUNNING."""
    global _last_uri
    uri = tracking_uri(root)
    _last_uri = uri
    client = _client(uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise ValueError(f"resume_run: no MLflow run {run_id!r} in {uri} ({exc.message})") from exc
    if run.info.status != "RUNNING":
        client.update_run(run_id, status="RUNNING")
    return Tracker(root, client, uri, run_id, run.info.experiment_id)


# ------------------------------------------------------------------ evaluation

_AGG_STATS = ("mean", "std", "min", "max")


def evaluation_metrics(results: Mapping[str, Any]) -> dict[str, float]:
    """Flat metrics of a ``metrics.json``: ``linear_probe.accuracy.mean``,
    ``finetune.0.1.macro_f1.mean``, ``controls.random_encoder_linear.accuracy.std`` ...

    Only the seed aggregates (mean/std/min/max); the per-seed values stay in
    the artifact.
    """
    out: dict[str, float] = {}

    def add(prefix: str, aggs: Any) -> None:
        if not isinstance(aggs, Mapping):
            return
        for metric, agg in aggs.items():
            if not isinstance(agg, Mapping):
                continue
            for stat in _AGG_STATS:
                f = _as_float(agg.get(stat))
                if f is not None:
                    out[f"{prefix}.{metric}.{stat}"] = f

    add("linear_probe", results.get("linear_probe"))
    for frac, aggs in (results.get("finetune") or {}).items():
        add(f"finetune.{frac}", aggs)
    for name, aggs in (results.get("controls") or {}).items():
        add(f"controls.{name}", aggs)
    return out


def log_evaluation(
    tracker: Tracker, report_dir: Path, metrics_file: str = "metrics.json", artifact_path: str = "report"
) -> dict[str, float]:
    """Log an evaluation report: flat aggregate metrics + every file of ``report_dir``.

    Returns the metrics logged.
    """
    rdir = Path(report_dir)
    path = rdir / metrics_file
    if not path.is_file():
        raise FileNotFoundError(f"log_evaluation: {path} not found: run `trls evaluate` first")
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"log_evaluation: {path} is not valid JSON ({exc})") from exc
    logged = tracker.log_metrics(evaluation_metrics(results))
    tags = {k: results[k] for k in ("task", "protocol", "profile", "encoder", "parquet_sha256") if k in results}
    if tags:
        tracker.set_tags({f"eval.{k}": v for k, v in tags.items()})
    for f in sorted(rdir.iterdir()):  # the report files; the per-unit results live in the nested runs
        if f.is_file():
            tracker.log_artifact(f, artifact_path)
    return logged


# ------------------------------------------------------------------ registry: the model


def transform_from_meta(meta: Mapping[str, Any], stats: Mapping[str, torch.Tensor] | None):
    """The stage's preprocessing from ``meta.json``: a :class:`SpectrogramTransform`."""
    from trls_core.spectrogram import SpectrogramTransform

    stft = dict(meta.get("stft") or {})
    if not stft:
        raise ValueError("meta.json has no 'stft' section: cannot rebuild the preprocessing")
    mode = stft.pop("normalisation", None) or meta.get("normalisation") or "train_per_freq"
    allowed = {
        "n_fft",
        "hop",
        "win_length",
        "window",
        "center",
        "log_eps",
        "fmax_bin",
        "power",
        "pad_mode",
        "std_floor",
    }
    cfg = {k: v for k, v in stft.items() if k in allowed}
    cfg["norm_mode"] = mode
    return SpectrogramTransform.from_config(cfg, stats=dict(stats or {}) or None)


class EncoderModel(mlflow.pyfunc.PythonModel):
    """pyfunc model: raw windows (B, C, L) float32 -> embeddings (B, R) float32.

    Holds nothing when pickled: ``load_context`` rebuilds the encoder from
    ``encoder.safetensors`` + ``encoder.json`` and the preprocessing from
    ``meta.json`` + ``normaliser.safetensors`` (all model artifacts).
    """

    batch_size = 256

    def load_context(self, context: Any) -> None:
        from safetensors.torch import load_file

        from trls_core.stages.pretrain import load_encoder

        arts = context.artifacts
        weights, config = Path(arts["encoder_weights"]), Path(arts["encoder_config"])
        if weights.parent == config.parent and weights.name == "encoder.safetensors" and config.name == "encoder.json":
            encoder, info = load_encoder(weights.parent)
        else:  # artifacts were renamed/split: stage them the way load_encoder expects
            with tempfile.TemporaryDirectory(prefix="trls-encoder-") as tmp:
                shutil.copyfile(weights, Path(tmp) / "encoder.safetensors")
                shutil.copyfile(config, Path(tmp) / "encoder.json")
                encoder, info = load_encoder(Path(tmp))
        meta = json.loads(Path(arts["meta"]).read_text())
        norm = arts.get("normaliser")
        stats = load_file(str(norm)) if norm and Path(norm).is_file() else {}
        self._transform = transform_from_meta(meta, stats).eval()
        self._encoder = encoder.eval()
        self._in_channels = int(info["config"]["in_channels"])
        self._n_samples = meta.get("n_samples")
        self._rep_dim = int(getattr(encoder, "out_dim", 0) or info["config"]["kwargs"].get("rep_dim", 0))

    # np.ndarray is a hint mlflow accepts without deriving a schema from it, so
    # the tensor signature given at logging time is the one enforced.
    def predict(self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None) -> np.ndarray:
        x = np.asarray(model_input, dtype=np.float32)
        if x.ndim == 2 and self._in_channels == 1:
            x = x[:, None, :]
        if x.ndim != 3 or x.shape[1] != self._in_channels:
            raise ValueError(
                f"EncoderModel: expected raw windows of shape (B, {self._in_channels}, L)"
                f"{' or (B, L)' if self._in_channels == 1 else ''}, got {x.shape}"
            )
        if self._n_samples and x.shape[2] != int(self._n_samples):
            raise ValueError(f"EncoderModel: windows must have {self._n_samples} samples, got {x.shape[2]}")
        if not np.isfinite(x).all():
            raise ValueError("EncoderModel: input has NaN/inf samples")
        if len(x) == 0:
            return np.zeros((0, self._rep_dim), dtype=np.float32)
        outs = []
        with torch.inference_mode():
            for i in range(0, len(x), self.batch_size):
                raw = torch.from_numpy(np.ascontiguousarray(x[i : i + self.batch_size]))
                outs.append(self._encoder(self._transform(raw)))
        return torch.cat(outs).cpu().numpy().astype(np.float32, copy=False)


#: The models-from-code script logged with every registered encoder (MLflow runs it on load;
#: ``trls_core`` travels with the model as code_paths).
MODEL_CODE = '''"""TRLS encoder for MLflow (models from code): raw windows -> embeddings."""
import mlflow

from trls_core.tracking import EncoderModel

mlflow.models.set_model(EncoderModel())
'''


def _model_artifacts(model_dir: Path, spectrogram_dir: Path) -> dict[str, str]:
    arts = {
        "encoder_weights": Path(model_dir) / "encoder.safetensors",
        "encoder_config": Path(model_dir) / "encoder.json",
        "meta": Path(spectrogram_dir) / "meta.json",
        "normaliser": Path(spectrogram_dir) / "normaliser.safetensors",
    }
    for key, p in arts.items():
        if not p.is_file() and key != "normaliser":
            raise FileNotFoundError(f"register_encoder: {p} not found")
    return {k: str(p.resolve()) for k, p in arts.items() if p.is_file()}


def _pip_requirements() -> list[str]:
    """Pinned to what runs here; explicit, so mlflow skips its slow inference subprocess."""
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for pkg in ("mlflow", "torch", "numpy", "safetensors", "pydantic", "PyYAML", "cloudpickle"):
        try:
            reqs.append(f"{pkg}=={version(pkg).split('+')[0]}")
        except PackageNotFoundError:
            reqs.append(pkg)
    return reqs


def split_digest(spectrogram_dir: Path, task: str) -> str:
    """Identity of a test split: the Parquet digest (which fixes the split column) + the task.

    Two scores are comparable only when their digests are equal.
    """
    meta = json.loads((Path(spectrogram_dir) / "meta.json").read_text())
    sha = meta.get("parquet_sha256")
    if not sha:
        raise ValueError(f"{spectrogram_dir}/meta.json has no parquet_sha256: rebuild the spectrograms")
    return hashlib.sha256(f"{sha}:{task}".encode()).hexdigest()[:16]


def register_encoder(
    tracker: Tracker,
    model_dir: Path,
    spectrogram_dir: Path,
    name: str,
    task: str = "binary",
    test_macro_f1: float | None = None,
) -> str:
    """Log the raw-window encoder as a pyfunc model in ``tracker``'s run and register it.

    The new version gets alias ``challenger`` and tags ``test_split_digest``
    (see :func:`split_digest`), ``task``, ``parquet_sha256`` and, if given,
    ``test_macro_f1``. Returns the version (a string). Promotion is
    :func:`promote_if_better`'s decision.
    """
    from mlflow.models import Model, infer_signature

    model_dir, spectrogram_dir = Path(model_dir), Path(spectrogram_dir)
    arts = _model_artifacts(model_dir, spectrogram_dir)
    meta = json.loads(Path(arts["meta"]).read_text())
    info = json.loads(Path(arts["encoder_config"]).read_text())
    cfg = info.get("config") or {}
    if cfg.get("stft") and meta.get("stft") and cfg["stft"] != meta["stft"]:
        raise ValueError(
            f"register_encoder: {model_dir} was trained on spectrograms with {cfg['stft']}, but "
            f"{spectrogram_dir}/meta.json has {meta['stft']}: the registered preprocessing would not match"
        )
    from trls_core.models import encoder_input

    if encoder_input(str(cfg.get("encoder", "tfrnn"))) != "spectrogram":
        raise ValueError(
            f"register_encoder: {model_dir} holds a raw-window encoder ({cfg.get('encoder')!r}, a baseline); "
            "the registered model's preprocessing is the STFT pipeline, so only spectrogram encoders are registered"
        )
    channels = int(meta.get("n_channels") or cfg["in_channels"])
    n_samples = int(meta.get("n_samples") or cfg["n_samples"])

    # signature from a real forward pass on raw windows (a local, throw-away instance)
    probe = EncoderModel()
    probe.load_context(SimpleNamespace(artifacts=arts))
    example = np.random.default_rng(0).standard_normal((2, channels, n_samples)).astype(np.float32)
    signature = infer_signature(example, probe.predict(None, example))
    del probe

    digest = split_digest(spectrogram_dir, task)
    version_tags = {
        DIGEST_TAG: digest,
        "task": task,
        "parquet_sha256": meta.get("parquet_sha256", ""),
        "dataset": meta.get("dataset", ""),
        "encoder": cfg.get("encoder", ""),
        "seed": info.get("seed", ""),
        "fingerprint": info.get("fingerprint", ""),
    }
    if test_macro_f1 is not None:
        f = _as_float(test_macro_f1)
        if f is None:
            raise ValueError(f"register_encoder: test_macro_f1 must be a finite number, got {test_macro_f1!r}")
        version_tags[SCORE_TAG] = repr(f)

    pkg = Path(__file__).resolve().parent
    with tempfile.TemporaryDirectory(prefix="trls-code-") as tmp:
        code = Path(tmp) / pkg.name
        shutil.copytree(pkg, code, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        # models-from-code: the model is this script, not a cloudpickle of an EncoderModel
        # instance, so loading a registered model unpickles nothing (weights are safetensors,
        # config and preprocessing JSON).
        model_code = Path(tmp) / "trls_encoder_model.py"
        model_code.write_text(MODEL_CODE)
        with _global_uri(tracker.tracking_uri):
            client = _client(tracker.tracking_uri)
            # The logged model is created explicitly in the run's experiment (the fluent
            # path would pick the *active* experiment, i.e. "Default" from a worker thread).
            logged = client.create_logged_model(
                tracker.experiment_id,
                name="encoder",
                source_run_id=tracker.run_id,
                tags={"trls.dataset": str(meta.get("dataset", "")), DIGEST_TAG: digest},
            )
            # = mlflow.pyfunc.log_model, but with an explicit run_id/model_id instead of the
            # fluent (thread-local) active run, so it works from Prefect worker threads.
            model_info = Model.log(
                None,  # artifact_path (deprecated in mlflow 3; `name` replaces it)
                name="encoder",
                flavor=mlflow.pyfunc,
                run_id=tracker.run_id,
                python_model=str(model_code),
                artifacts=arts,
                code_paths=[str(code)],
                pip_requirements=_pip_requirements(),
                signature=signature,
                input_example=example,
                flavor_name="pyfunc.CustomPythonModel",  # what pyfunc.log_model passes
                model_id=logged.model_id,
            )
            # (still inside: the registry store looks the logged model up through the global URI)
            try:
                client.create_registered_model(name, description="TRLS encoder: raw signal windows -> embeddings")
            except MlflowException as exc:
                if not _already_exists(exc):
                    raise
            mv = client.create_model_version(
                name,
                source=model_info.model_uri,
                run_id=tracker.run_id,
                tags={k: str(v) for k, v in version_tags.items()},
                model_id=model_info.model_id,
            )
            client.set_registered_model_alias(name, CHALLENGER, mv.version)
    tracker.set_tags({"registered_model.name": name, "registered_model.version": mv.version, DIGEST_TAG: digest})
    logger.info("registered %s version %s (alias %s)", name, mv.version, CHALLENGER)
    return str(mv.version)


# ------------------------------------------------------------------ registry: promotion


def _default_uri(root: Path | None) -> str:
    """Store for registry calls: ``root``'s; else MLFLOW_TRACKING_URI / an explicitly set
    mlflow URI; else the store of the latest :class:`Tracker` of this process; else mlflow's default.
    """
    from mlflow.tracking._tracking_service.utils import is_tracking_uri_set

    if root is not None:
        return tracking_uri(root)
    if is_tracking_uri_set() or _last_uri is None:
        return mlflow.get_tracking_uri()
    return _last_uri


def promote_if_better(
    name: str,
    version: str,
    score: float,
    split_digest: str | None,
    *,
    root: Path | None = None,
) -> tuple[bool, str]:
    """Make ``version`` the champion iff it beats the champion on the same test split.

    - no champion yet -> promote;
    - champion evaluated on another split (``test_split_digest`` differs) ->
      keep it: the scores are not comparable;
    - else promote iff ``score`` > champion's ``test_macro_f1`` (ties keep
      the champion: a model must *beat* it).

    The score and digest are recorded on the version (if not yet there),
    the reason as its ``promotion_reason`` tag. ``root`` selects the store
    like :func:`tracking_uri`; without it: ``MLFLOW_TRACKING_URI`` (or a URI
    set with mlflow), else the store of this process's latest Tracker.
    ``split_digest=None`` uses the version's own tag.
    """
    client = _client(_default_uri(root))
    version = str(version)
    mv = client.get_model_version(name, version)
    own_digest = mv.tags.get(DIGEST_TAG)
    if split_digest is None:
        split_digest = own_digest
    if not split_digest:
        raise ValueError(f"promote_if_better: {name} v{version} has no {DIGEST_TAG} and none was given")
    if own_digest and own_digest != split_digest:
        raise ValueError(
            f"promote_if_better: {name} v{version} is tagged {DIGEST_TAG}={own_digest}, "
            f"but was scored on split {split_digest}"
        )
    f = _as_float(score)
    if not own_digest:
        client.set_model_version_tag(name, version, DIGEST_TAG, split_digest)
    if f is not None:
        client.set_model_version_tag(name, version, SCORE_TAG, repr(f))

    try:
        champ = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"):
            raise
        champ = None

    promote = False
    if f is None:
        reason = f"v{version}: score {score!r} is not a finite number; not promoted"
    elif champ is None:
        promote = True
        reason = f"v{version} promoted: no champion yet ({SCORE_TAG}={f:.4f})"
    elif str(champ.version) == version:
        reason = f"v{version} is already the champion"
    else:
        c_digest = champ.tags.get(DIGEST_TAG)
        c_score = _as_float(_parse_float(champ.tags.get(SCORE_TAG)))
        if c_digest != split_digest:
            reason = (
                f"v{version} not compared: champion v{champ.version} was evaluated on another test split "
                f"({DIGEST_TAG} {c_digest} != {split_digest}); keeping the champion"
            )
        elif c_score is None:
            reason = (
                f"v{version} not promoted: champion v{champ.version} has no recorded {SCORE_TAG}; "
                "keeping the champion (promote by hand if intended)"
            )
        elif f > c_score:
            promote = True
            reason = (
                f"v{version} promoted: {SCORE_TAG} {f:.4f} > champion v{champ.version} {c_score:.4f}"
                f" on split {split_digest}"
            )
        else:
            reason = (
                f"v{version} not promoted: {SCORE_TAG} {f:.4f} <= champion v{champ.version} "
                f"{c_score:.4f} on split {split_digest}; v{version} stays {CHALLENGER}"
            )
    if promote:
        client.set_registered_model_alias(name, CHAMPION, version)
    client.set_model_version_tag(name, version, REASON_TAG, reason)
    logger.info("%s: %s", name, reason)
    return promote, reason


def _parse_float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def load_model(uri: str, *, root: Path | None = None) -> Any:
    """Load a registered/logged model, e.g. ``models:/trls-encoder@champion`` -> pyfunc model.

    ``root`` selects the store like :func:`tracking_uri`; without it see
    :func:`promote_if_better`.
    """
    with _global_uri(_default_uri(root)):
        return mlflow.pyfunc.load_model(uri)
