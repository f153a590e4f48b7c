"""MLflow tracking and model registry for the pipeline.

The ONLY package of the project that imports mlflow: stages and flows pass
plain paths and run ids in, so the rest of the code runs (and is tested)
without an MLflow store. Flows import it only when tracking is on.

- :mod:`~trls_core.tracking.provenance`: store URI, experiment names, git commit + ``dvc.lock`` digests;
- :mod:`~trls_core.tracking.remote`: local / server / database stores, where new experiments keep
  artifacts, a bounded check that a shared store answers;
- :mod:`~trls_core.tracking.values`: keys, parameters and metrics as MLflow accepts them;
- :mod:`~trls_core.tracking.store`: clients, experiments, the process-wide URI;
- :mod:`~trls_core.tracking.runs`: :class:`Tracker` (one run by id), :func:`resume_run`;
- :mod:`~trls_core.tracking.datasets`: the Parquet's splits as MLflow dataset inputs, real example windows;
- :mod:`~trls_core.tracking.evaluation`: an evaluation report as few rounded metrics, a table and artifacts;
- :mod:`~trls_core.tracking.headline`: the pipeline's result on its parent run (metrics, plots, description);
- :mod:`~trls_core.tracking.study`: a study variant's child run (params and validation metrics);
- :mod:`~trls_core.tracking.served_model`: the pyfunc model (raw windows -> embeddings);
- :mod:`~trls_core.tracking.registry`: registration (``challenger``; duplicates skipped), names, loading;
- :mod:`~trls_core.tracking.promotion`: promotion (``champion``) within one registered model, a compare-and-set
  under a file lock;
- :mod:`~trls_core.tracking.pending`: metrics whose logging failed, kept beside the saved work, logged by the next run.

Why it looks like this:

- Runs are driven through :class:`mlflow.MlflowClient` with explicit run
  ids, never through the fluent ``mlflow.start_run`` stack: that stack is
  per thread, so a nested run started inside a Prefect task (a worker
  thread) would silently lose its parent. ``mlflow.parentRunId`` is set by
  hand instead.
- Embedded default: ``sqlite:///<root>/mlflow.db`` with artifacts in
  ``<root>/mlartifacts`` (no server). ``MLFLOW_TRACKING_URI`` overrides it
  (a shared server past one machine: ``mlflow server`` on PostgreSQL with
  an S3 artifact store, which then holds every artifact; nothing local).
- The registered model takes RAW signal windows: :class:`EncoderModel`
  rebuilds the exact preprocessing of the DVC spectrogram stage in front of
  the encoder. Weights and statistics travel as safetensors artifacts,
  never as pickled tensors.
- A model becomes ``champion`` only if it beats the current champion on
  the SAME test split (:func:`promote_if_better`); every decision leaves a
  human-readable reason on the model version. One registered model per
  dataset (``trls-<dataset>-encoder``); identical weights register once.
"""

from trls_core.tracking.datasets import example_windows, split_datasets
from trls_core.tracking.evaluation import evaluation_metrics, headline_metrics, log_evaluation
from trls_core.tracking.headline import log_headline
from trls_core.tracking.promotion import promote_if_better
from trls_core.tracking.provenance import (
    artifact_root,
    dvc_lock_digests,
    experiment_name,
    git_commit,
    provenance_tags,
    tracking_uri,
)
from trls_core.tracking.registry import (
    CHALLENGER,
    CHAMPION,
    Registration,
    load_model,
    register_encoder,
    registered_model_name,
    split_digest,
)
from trls_core.tracking.runs import PARAM_VALUE_LIMIT, Tracker, resume_run
from trls_core.tracking.served_model import EncoderModel, transform_from_meta
from trls_core.tracking.values import safe_key

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "PARAM_VALUE_LIMIT",
    "EncoderModel",
    "Registration",
    "Tracker",
    "artifact_root",
    "dvc_lock_digests",
    "evaluation_metrics",
    "example_windows",
    "experiment_name",
    "git_commit",
    "headline_metrics",
    "load_model",
    "log_evaluation",
    "log_headline",
    "promote_if_better",
    "provenance_tags",
    "register_encoder",
    "registered_model_name",
    "resume_run",
    "safe_key",
    "split_datasets",
    "split_digest",
    "tracking_uri",
    "transform_from_meta",
]
