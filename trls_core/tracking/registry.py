"""Model registry: register an encoder as ``challenger`` (once per distinct weights), load a model.

One registered model per dataset (:func:`registered_model_name`:
``trls-<dataset>-encoder``). A registration whose weights and test split
equal the latest version's is skipped (a weekly retrain that reused every
stored unit adds no duplicate version) unless forced. Promotion to
``champion`` is :func:`trls_core.tracking.promotion.promote_if_better`'s
decision.

Integrity: the encoder's two files are copied aside first and what is
registered is that copy, checked against the digest ``encoder.json``
records and, when given, the digest the evaluation scored
(``evaluated_sha256``, from the unit results): a file that changed in
between is refused, never registered under another encoder's score.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
from mlflow.exceptions import MlflowException

from trls_core.errors import DataError
from trls_core.tracking.datasets import example_windows
from trls_core.tracking.runs import Tracker
from trls_core.tracking.served_model import MODEL_CODE, EncoderModel
from trls_core.tracking.store import already_exists, default_uri, global_uri, mlflow_client
from trls_core.tracking.values import as_float

logger = logging.getLogger(__name__)

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "DIGEST_TAG",
    "REASON_TAG",
    "SCORE_TAG",
    "WEIGHTS_TAG",
    "Registration",
    "latest_version",
    "load_model",
    "register_encoder",
    "registered_model_name",
    "split_digest",
]

CHAMPION = "champion"
CHALLENGER = "challenger"
SCORE_TAG = "test_macro_f1"
DIGEST_TAG = "test_split_digest"
REASON_TAG = "promotion_reason"
WEIGHTS_TAG = "weights_sha256"
SKIPPED_TAG = "registration.skipped"


def registered_model_name(dataset: str) -> str:
    """The registered model of a dataset's encoders: ``trls-<dataset>-encoder``."""
    ds = dataset.strip()
    if not ds:
        raise ValueError("registered_model_name: dataset must not be empty")
    return f"trls-{ds}-encoder"


@dataclass(frozen=True)
class Registration:
    """Outcome of :func:`register_encoder`: the version (new, or the existing one when ``skipped``) and why."""

    name: str
    version: str
    skipped: bool
    reason: str

    def __str__(self) -> str:
        return self.version


def _model_artifacts(encoder_dir: Path, spectrogram_dir: Path) -> dict[str, str]:
    arts = {
        "encoder_weights": Path(encoder_dir) / "encoder.safetensors",
        "encoder_config": Path(encoder_dir) / "encoder.json",
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


def latest_version(client: Any, name: str) -> Any | None:
    """The highest-numbered version of registered model ``name``, or None (no such model / no version)."""
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
            return None
        raise
    return max(versions, key=lambda mv: int(mv.version), default=None)


def _duplicate_of(client: Any, name: str, weights_sha: str, fingerprint: str, digest: str) -> Any | None:
    """The latest version when it holds the same weights scored on the same split, else None."""
    latest = latest_version(client, name)
    if latest is None or latest.tags.get(DIGEST_TAG) != digest:
        return None
    if latest.tags.get(WEIGHTS_TAG):
        return latest if latest.tags[WEIGHTS_TAG] == weights_sha else None
    # versions registered before the weights digest was tagged: the training fingerprint decides
    return latest if fingerprint and latest.tags.get("fingerprint") == fingerprint else None


def _input_example(spectrogram_dir: Path, dataset: str, channels: int, n_samples: int, windows: Path | None) -> Any:
    """Two real raw windows of the train split (the model's input example), from the windows Parquet.

    ``windows`` defaults to the project layout's Parquet beside ``spectrogram_dir``
    (``<root>/data/parquet/<dataset>/windows.parquet``); without one, a warning
    and zeros of the right shape (never noise that looks like data).
    """
    from trls_core.paths import parquet_file

    if windows is None:
        parents = Path(spectrogram_dir).resolve().parents
        windows = parquet_file(parents[2], dataset) if len(parents) > 2 and dataset else None
    path = Path(windows) if windows is not None else None
    x = example_windows(path, n=2) if path is not None else None
    if x is not None and x.shape[1:] == (channels, n_samples):
        return x
    logger.warning(
        "register_encoder: no windows of shape (%d, %d) in %s; the input example is zeros", channels, n_samples, path
    )
    return np.zeros((2, channels, n_samples), dtype=np.float32)


def _staged_encoder(model_dir: Path, dest: Path, evaluated_sha256: str | None) -> str:
    """Copy ``model_dir``'s encoder files into ``dest`` and check the copy; returns its weights' sha256.

    Refused (DataError naming the files): weights that are not the ones
    ``encoder.json`` records, or not the ones the evaluation scored.
    """
    from trls_core.io import sha256_file
    from trls_core.models.loading import CONFIG_FILE, WEIGHTS_FILE, WEIGHTS_SHA_KEY

    dest.mkdir(parents=True)
    for fname in (WEIGHTS_FILE, CONFIG_FILE):
        if not (model_dir / fname).is_file():
            raise FileNotFoundError(f"register_encoder: {model_dir / fname} not found")
        shutil.copyfile(model_dir / fname, dest / fname)
    sha = sha256_file(dest / WEIGHTS_FILE)
    try:
        recorded = json.loads((dest / CONFIG_FILE).read_text()).get(WEIGHTS_SHA_KEY)
    except (ValueError, AttributeError) as exc:
        raise DataError(f"register_encoder: {model_dir / CONFIG_FILE} is unreadable ({exc})") from None
    if recorded is not None and recorded != sha:
        raise DataError(
            f"register_encoder: {model_dir / WEIGHTS_FILE} (sha256 {sha}) is not the file "
            f"{model_dir / CONFIG_FILE} was written for ({WEIGHTS_SHA_KEY} {recorded}); rerun `trls pretrain`"
        )
    if evaluated_sha256 is not None and evaluated_sha256 != sha:
        raise DataError(
            f"register_encoder: {model_dir / WEIGHTS_FILE} (sha256 {sha}) is not the encoder the evaluation "
            f"scored (sha256 {evaluated_sha256}): the weights changed after the evaluation; rerun the evaluation "
            "(or the pipeline) so the registered score is this encoder's"
        )
    return sha


def register_encoder(
    tracker: Tracker,
    model_dir: Path,
    spectrogram_dir: Path,
    name: str,
    task: str = "binary",
    test_macro_f1: float | None = None,
    *,
    force: bool = False,
    windows: Path | None = None,
    evaluated_sha256: str | None = None,
) -> Registration:
    """Log the raw-window encoder as a pyfunc model in ``tracker``'s run and register it as ``name``.

    The new version gets alias ``challenger`` and tags ``test_split_digest``
    (see :func:`split_digest`), ``weights_sha256``, ``task``,
    ``parquet_sha256``, ``dataset``, ``fingerprint`` and, if given,
    ``test_macro_f1``. When the latest version of ``name`` has the same
    weights (sha256 of ``encoder.safetensors``; for older versions the
    training fingerprint) and the same test split, nothing is registered
    unless ``force``: the outcome is ``skipped`` with that version, said in
    the log and in the run's tag ``registration.skipped``. ``windows`` is the
    windows Parquet the input example (two real train windows) comes from.
    Promotion is :func:`~trls_core.tracking.promotion.promote_if_better`'s decision.

    What is registered is a copy of the encoder files taken first; its
    weights must match the digest ``encoder.json`` records and, when given,
    ``evaluated_sha256`` (the digest the evaluation units scored,
    ``trls_core.stages.evaluate.evaluated_weights_sha256``), else a
    :class:`~trls_core.errors.DataError` naming the files and nothing is
    registered.
    """
    model_dir, spectrogram_dir = Path(model_dir), Path(spectrogram_dir)
    with tempfile.TemporaryDirectory(prefix="trls-register-") as tmp:
        staged = Path(tmp) / "encoder"
        weights_sha = _staged_encoder(model_dir, staged, evaluated_sha256)
        return _register(
            tracker, model_dir, staged, weights_sha, spectrogram_dir, name, task, test_macro_f1, force, windows
        )


def _register(
    tracker: Tracker,
    model_dir: Path,
    staged: Path,
    weights_sha: str,
    spectrogram_dir: Path,
    name: str,
    task: str,
    test_macro_f1: float | None,
    force: bool,
    windows: Path | None,
) -> Registration:
    """:func:`register_encoder` on the checked copy ``staged`` of ``model_dir``'s encoder (digest ``weights_sha``)."""
    from mlflow.models import Model, infer_signature

    arts = _model_artifacts(staged, spectrogram_dir)
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
            "the registered preprocessing is the STFT pipeline, so only spectrogram encoders are registered"
        )
    channels = int(meta.get("n_channels") or cfg["in_channels"])
    n_samples = int(meta.get("n_samples") or cfg["n_samples"])
    digest = split_digest(spectrogram_dir, task)
    fingerprint = str(info.get("fingerprint") or "")
    client = mlflow_client(tracker.tracking_uri)

    dup = None if force else _duplicate_of(client, name, weights_sha, fingerprint, digest)
    if dup is not None:
        aliases = ", ".join(getattr(dup, "aliases", None) or []) or "no alias"
        reason = (
            f"not registered: the weights equal {name} v{dup.version}'s ({WEIGHTS_TAG} {weights_sha[:12]}..., "
            f"same test split; v{dup.version} is {aliases}); force=True registers anyway"
        )
        tracker.set_tags({SKIPPED_TAG: reason, "registered_model.name": name, "registered_model.version": dup.version})
        logger.info("%s: %s", name, reason)
        return Registration(name, str(dup.version), True, reason)

    # signature from a real forward pass on real raw windows (a local, throw-away instance)
    example = _input_example(spectrogram_dir, str(meta.get("dataset", "")), channels, n_samples, windows)
    probe = EncoderModel()
    probe.load_context(SimpleNamespace(artifacts=arts))
    signature = infer_signature(example, probe.predict(None, example))
    input_spec = probe.input_spec
    del probe

    version_tags = {
        DIGEST_TAG: digest,
        WEIGHTS_TAG: weights_sha,
        "task": task,
        "parquet_sha256": meta.get("parquet_sha256", ""),
        "dataset": meta.get("dataset", ""),
        "encoder": cfg.get("encoder", ""),
        "seed": info.get("seed", ""),
        "fingerprint": fingerprint,
    }
    if test_macro_f1 is not None:
        f = as_float(test_macro_f1)
        if f is None:
            raise ValueError(f"register_encoder: test_macro_f1 must be a finite number, got {test_macro_f1!r}")
        version_tags[SCORE_TAG] = repr(f)

    pkg = Path(__file__).resolve().parents[1]  # trls_core, shipped with the model as code_paths
    with tempfile.TemporaryDirectory(prefix="trls-code-") as tmp:
        code = Path(tmp) / pkg.name
        shutil.copytree(pkg, code, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        # models-from-code: the model is this script, not a cloudpickle of an EncoderModel
        # instance, so loading a registered model unpickles nothing (weights are safetensors,
        # config and preprocessing JSON).
        model_code = Path(tmp) / "trls_encoder_model.py"
        model_code.write_text(MODEL_CODE)
        with global_uri(tracker.tracking_uri):
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
                metadata={"trls_input": input_spec},
                flavor_name="pyfunc.CustomPythonModel",  # what pyfunc.log_model passes
                model_id=logged.model_id,
            )
            # (still inside: the registry store looks the logged model up through the global URI)
            try:
                client.create_registered_model(name, description="TRLS encoder: raw signal windows -> embeddings")
            except MlflowException as exc:
                if not already_exists(exc):
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
    reason = f"registered {name} v{mv.version} (alias {CHALLENGER})" + (" (forced)" if force else "")
    logger.info("%s", reason)
    return Registration(name, str(mv.version), False, reason)


def load_model(uri: str, *, root: Path | None = None) -> Any:
    """Load a registered/logged model, e.g. ``models:/trls-encoder@champion`` -> pyfunc model.

    ``root`` selects the store like :func:`tracking_uri`; without it see
    :func:`~trls_core.tracking.store.default_uri`.
    """
    with global_uri(default_uri(root)):
        return mlflow.pyfunc.load_model(uri)
