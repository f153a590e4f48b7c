"""One MLflow run addressed by id (:class:`Tracker`), and re-opening a run by id (:func:`resume_run`)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from trls_core.tracking.provenance import experiment_name, provenance_tags, source_tags, tracking_uri
from trls_core.tracking.store import ensure_experiment, mlflow_client, remember_uri
from trls_core.tracking.values import as_float, flatten, safe_key, truncate

logger = logging.getLogger(__name__)

__all__ = ["METRIC_BATCH_LIMIT", "PARAM_VALUE_LIMIT", "TAG_VALUE_LIMIT", "Tracker", "resume_run"]

PARAM_VALUE_LIMIT = 500  # the historical MLflow limit; older servers/DB schemas still enforce it
TAG_VALUE_LIMIT = 5000
METRIC_BATCH_LIMIT = 1000  # metrics per log_batch call (MLflow rejects more)
_RUN_STATUSES = ("FINISHED", "FAILED", "KILLED")
SYSTEM_METRICS_INTERVAL_S = 10.0  # MLflow's default; MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL overrides it


def _now_ms() -> int:
    return int(time.time() * 1000)


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
        uri = tracking_uri(root)
        remember_uri(uri)
        client = mlflow_client(uri)
        exp_id = ensure_experiment(client, experiment_name(experiment), root, uri)
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
        all_tags: dict[str, Any] = source_tags(root) if parent_run_id else provenance_tags(root)
        all_tags.update(tags or {})
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        clean = {safe_key(k): truncate(str(v), TAG_VALUE_LIMIT) for k, v in all_tags.items()}
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
        flat = flatten(params)
        entries, cut = [], []
        for k, v in flat.items():
            s = json.dumps(v, default=str) if isinstance(v, (list, tuple)) else str(v)
            if len(s) > PARAM_VALUE_LIMIT:
                cut.append(k)
            entries.append(Param(safe_key(k), truncate(s, PARAM_VALUE_LIMIT)))
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
            f = as_float(v)
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
            if (f := as_float(v)) is not None
        ]
        for i in range(0, len(batch), METRIC_BATCH_LIMIT):  # mlflow's log_batch limit
            self.client.log_batch(self.run_id, metrics=batch[i : i + METRIC_BATCH_LIMIT])
        return len(batch)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        entries = [RunTag(safe_key(k), truncate(str(v), TAG_VALUE_LIMIT)) for k, v in tags.items()]
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

    def log_splits(self, dataset: str, parquet: Path | None = None, splits: Sequence[str] | None = None) -> int:
        """Log the windows Parquet's splits as MLflow dataset inputs (context ``train`` / ``val`` / ``test``).

        ``parquet`` defaults to ``<root>/data/parquet/<dataset>/windows.parquet``;
        returns the number of inputs logged (0, with a warning, when the file is missing).
        """
        from trls_core.paths import parquet_file
        from trls_core.tracking.datasets import SPLITS, split_inputs

        path = Path(parquet) if parquet is not None else parquet_file(self.root, dataset)
        if not path.is_file():
            logger.warning("run %s: no dataset inputs logged, %s not found", self.run_id, path)
            return 0
        inputs = split_inputs(path, dataset, tuple(splits) if splits else SPLITS)
        if inputs:
            self.client.log_inputs(self.run_id, datasets=inputs)
        return len(inputs)

    @contextlib.contextmanager
    def system_metrics(self, sampling_interval: float | None = None) -> Iterator[None]:
        """Sample CPU / memory / disk / network (and GPU where available) into ``system/*`` metrics for the block.

        MLflow's own monitor (a daemon thread, every ``sampling_interval`` s;
        ``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` overrides it) against this
        run's store, plus one final sample when the block ends, so a block
        shorter than the interval still leaves one step. Monitoring never
        fails the work: a monitor that cannot start is a warning.
        """
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            interval = sampling_interval or SYSTEM_METRICS_INTERVAL_S
            if os.environ.get("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"):
                interval = float(os.environ["MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"])
            monitor = SystemMetricsMonitor(self.run_id, sampling_interval=interval, tracking_uri=self.tracking_uri)
            monitor.start()
        except Exception as exc:  # psutil missing, store unreachable: the training must still run
            logger.warning("run %s: system metrics not logged (%s)", self.run_id, exc)
            yield
            return
        try:
            yield
        finally:
            try:
                monitor.finish()
                monitor.collect_metrics()  # the final sample: the state at the end of the block
                monitor.publish_metrics(monitor.aggregate_metrics())
                monitor.mlflow_logger.flush()
            except Exception as exc:
                logger.warning("run %s: last system metrics sample not logged (%s)", self.run_id, exc)

    def log_table(self, rows: Sequence[Mapping[str, Any]], name: str) -> None:
        """``rows`` as an MLflow table artifact ``name`` (``.json``; shown as a table in the run's artifacts)."""
        import warnings

        import pandas as pd

        with warnings.catch_warnings():  # mlflow's select_dtypes(include=["object"]) warns under pandas 3
            warnings.filterwarnings("ignore", message=".*select_dtypes.*")
            self.client.log_table(self.run_id, data=pd.DataFrame(list(rows)), artifact_file=name)

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
    uri = tracking_uri(root)
    remember_uri(uri)
    client = mlflow_client(uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise ValueError(f"resume_run: no MLflow run {run_id!r} in {uri} ({exc.message})") from exc
    if run.info.status != "RUNNING":
        client.update_run(run_id, status="RUNNING")
    return Tracker(root, client, uri, run_id, run.info.experiment_id)
