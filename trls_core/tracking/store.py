"""The MLflow store: clients, experiments, the process-wide URI for model logging/loading.

``remember_uri`` records the store of the latest run so registry calls
without a ``root`` find it (:func:`default_uri`). A client of a tracking
server or a shared database is made only after the store answered
(:func:`~trls_core.tracking.remote.check_reachable`: a bounded wait naming
the address, instead of MLflow's minutes of retries).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from trls_core.tracking.provenance import tracking_uri
from trls_core.tracking.remote import artifact_location, check_reachable

__all__ = [
    "EXPERIMENT_KIND",
    "EXPERIMENT_KIND_TAG",
    "already_exists",
    "default_uri",
    "ensure_experiment",
    "global_uri",
    "mlflow_client",
    "remember_uri",
]

# MLflow 3's UI picks the experiment's view from this tag (mlflow/server/js: ExperimentKind); without
# it the UI guesses, and opened trls' experiments in the GenAI (traces) view. Ours train models.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
_GUESSED_KINDS = ("", "no_inferred_type", "genai_development_inferred", "custom_model_development_inferred")

_URI_LOCK = threading.Lock()
_last_uri: str | None = None  # store of the latest Tracker, for registry calls without a root


def remember_uri(uri: str) -> None:
    """Record ``uri`` as the store of this process's latest run (see :func:`default_uri`)."""
    global _last_uri
    _last_uri = uri


def mlflow_client(uri: str) -> MlflowClient:
    """A client for the tracking store and the model registry at ``uri``, once a remote one answered."""
    check_reachable(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def already_exists(exc: MlflowException) -> bool:
    return exc.error_code in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS")


def ensure_experiment(client: MlflowClient, name: str, root: Path, uri: str) -> str:
    """Experiment id of ``name``, created if missing with :func:`~trls_core.tracking.remote.artifact_location`'s
    artifact location (``<root>/mlartifacts/<name>`` for the embedded store; the server's artifact store for
    a tracking server; ``$TRLS_MLFLOW_ARTIFACT_ROOT/<name>`` for a database opened directly).

    A model-training experiment (tag ``mlflow.experimentKind``); an existing
    experiment whose kind was only guessed (or never set) is tagged too, a
    kind a user chose is kept. Safe against two threads creating it at once.
    """
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            raise ValueError(f"MLflow experiment {name!r} is deleted; restore it or choose another name")
        if exp.tags.get(EXPERIMENT_KIND_TAG, "") in _GUESSED_KINDS:
            client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return exp.experiment_id
    location = artifact_location(uri, root, name)  # before creating: a database without one is refused
    try:
        return client.create_experiment(name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
    except MlflowException as exc:
        if not already_exists(exc):
            raise
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


@contextlib.contextmanager
def global_uri(uri: str) -> Iterator[None]:
    """Point mlflow's process-wide tracking + registry URI at ``uri`` for a block.

    Only model logging/loading needs it (``Model.log`` and ``pyfunc.load_model``
    resolve the store globally); the previous settings, including the
    environment variables mlflow mirrors them into, are restored after, so
    nothing leaks into later code or tests. Serialised with a lock.
    """
    from mlflow.tracking._model_registry import utils as reg_utils
    from mlflow.tracking._tracking_service import utils as trk_utils

    check_reachable(uri)
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


def default_uri(root: Path | None) -> str:
    """Store for registry calls: ``root``'s; else MLFLOW_TRACKING_URI / an explicitly set
    mlflow URI; else the store of the latest :class:`Tracker` of this process; else mlflow's default.
    """
    from mlflow.tracking._tracking_service.utils import is_tracking_uri_set

    if root is not None:
        return tracking_uri(root)
    if is_tracking_uri_set() or _last_uri is None:
        return mlflow.get_tracking_uri()
    return _last_uri
