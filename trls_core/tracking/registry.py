"""Model registry: register an encoder as ``challenger``, promote it to ``champion``, load a model.

A model becomes ``champion`` only if it beats the current champion on the
SAME test split (:func:`promote_if_better`); every decision leaves a
human-readable reason on the model version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
from mlflow.exceptions import MlflowException

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
    "load_model",
    "promote_if_better",
    "register_encoder",
    "split_digest",
]

CHAMPION = "champion"
CHALLENGER = "challenger"
SCORE_TAG = "test_macro_f1"
DIGEST_TAG = "test_split_digest"
REASON_TAG = "promotion_reason"


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
            client = mlflow_client(tracker.tracking_uri)
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
    logger.info("registered %s version %s (alias %s)", name, mv.version, CHALLENGER)
    return str(mv.version)


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
    client = mlflow_client(default_uri(root))
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
    f = as_float(score)
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
        c_score = as_float(_parse_float(champ.tags.get(SCORE_TAG)))
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
    with global_uri(default_uri(root)):
        return mlflow.pyfunc.load_model(uri)
