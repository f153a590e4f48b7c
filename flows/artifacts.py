"""What the Prefect UI shows of a run's results: artifacts and a "units done / total" progress.

- :func:`report_artifacts`: per evaluation report (one per task), a table
  (probe, each fine-tuning fraction and the controls, mean ± std over seeds)
  and the report's ``summary.md`` as markdown, with the MLflow run link;
- :func:`promotion_artifact`: each registration / promotion decision with
  its reason and the MLflow run and model-version links;
- :func:`comparison_artifacts`: each comparison (``comparison.csv`` as a
  table, ``comparison.md`` as markdown);
- :class:`Progress`: a progress artifact on the flow run that is updated as
  pretraining seeds and evaluation units finish.

Artifacts are made inside tasks/flows, so Prefect links them to that task
run and flow run. A failure to write one is logged, never raised: the
results are in ``reports/`` and MLflow either way, and a 15-minute run must
not fail over its UI decoration.
"""

from __future__ import annotations

import csv
import json
import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from uuid import UUID

from flows import run_logger

__all__ = [
    "MLFLOW_UI_ENV",
    "Progress",
    "artifact_key",
    "comparison_artifacts",
    "mlflow_run_url",
    "promotion_artifact",
    "report_artifacts",
    "report_rows",
]

#: Base URL of the MLflow UI that links point to (default: ``make ui``'s address).
MLFLOW_UI_ENV = "TRLS_MLFLOW_UI_URL"
DEFAULT_MLFLOW_UI = "http://127.0.0.1:5000"

_METRICS = (
    ("macro_f1", "macro-F1 (%)"),
    ("accuracy", "accuracy (%)"),
    ("cohen_kappa", "Cohen's κ (×100)"),
    ("balanced_accuracy", "balanced acc. (%)"),
    ("challenge_f1", "challenge F1 (%)"),
)
_CONTROL_LABELS = {
    "spectrogram_linear": "control: linear on spectrogram pixels",
    "random_encoder_linear": "control: linear on untrained encoder",
}


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key from ``parts``: lowercase letters, digits and dashes only."""
    key = "-".join(re.sub(r"[^a-z0-9]+", "-", str(p).lower()).strip("-") for p in parts if str(p))
    return re.sub(r"-{2,}", "-", key).strip("-") or "trls"


def _ui_base(tracking_uri: str | None) -> str:
    """The MLflow UI's address: the tracking server itself, else ``TRLS_MLFLOW_UI_URL`` or ``make ui``'s."""
    if tracking_uri and tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return os.environ.get(MLFLOW_UI_ENV, DEFAULT_MLFLOW_UI).rstrip("/")


def mlflow_run_url(run: Any) -> str | None:
    """Link to ``run`` (a ``Tracker``) in the MLflow UI; None for an untracked run."""
    run_id, exp_id = getattr(run, "run_id", None), getattr(run, "experiment_id", None)
    if not run_id or not exp_id:
        return None
    return f"{_ui_base(getattr(run, 'tracking_uri', None))}/#/experiments/{exp_id}/runs/{run_id}"


def _guard(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - UI decoration never fails a run (module docstring)
        run_logger().warning("Prefect artifact %s not written: %r", what, exc)
        return None


def _pm(agg: Mapping[str, Any] | None, key: str) -> str:
    if not agg or key not in agg or not isinstance(agg[key], Mapping):
        return "–"
    a = agg[key]
    return f"{100 * float(a['mean']):.2f} ± {100 * float(a.get('std') or 0.0):.2f}"


def report_rows(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per setting of a report's ``metrics.json``: probe, fractions, controls (mean ± std, percent)."""
    settings: list[tuple[str, Mapping[str, Any] | None]] = [("linear probe (frozen)", metrics.get("linear_probe"))]
    finetune = metrics.get("finetune") or {}
    settings += [(f"fine-tune {100 * float(f):g} % labels", finetune[f]) for f in sorted(finetune, key=float)]
    controls = metrics.get("controls") or {}
    settings += [(_CONTROL_LABELS.get(c, f"control: {c}"), agg) for c, agg in controls.items()]
    present = [(k, label) for k, label in _METRICS if any(agg and k in agg for _, agg in settings)]
    rows = []
    for label, agg in settings:
        first = next(iter(agg.values())) if agg else {}
        row: dict[str, Any] = {"setting": label, "n": int(first.get("n", 0)) if isinstance(first, Mapping) else 0}
        row.update({name: _pm(agg, k) for k, name in present})
        rows.append(row)
    return rows


def report_artifacts(metrics_file: Path, summary_file: Path | None = None, run: Any = None) -> list[UUID]:
    """Table + markdown artifacts of one evaluation report (``metrics.json`` and its ``summary.md``)."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    metrics = json.loads(Path(metrics_file).read_text())
    ds, task = str(metrics.get("dataset", "?")), str(metrics.get("task", "?"))
    url = mlflow_run_url(run)
    seeds = metrics.get("seeds") or []
    desc = (
        f"{ds} / {task}: scores in percent, mean ± std over {len(seeds)} seed(s); "
        f"profile {metrics.get('profile')}, encoder {metrics.get('encoder')}; {metrics_file}"
    )
    ids = [
        _guard(
            "report table",
            create_table_artifact,
            report_rows(metrics),
            key=artifact_key(ds, task, "results"),
            description=desc,
        )
    ]
    body = Path(summary_file).read_text() if summary_file and Path(summary_file).is_file() else ""
    links = [f"- report files: `{Path(metrics_file).parent}`"]
    if url:
        links.append(f"- MLflow run: [{url}]({url})")
    md = (body.rstrip() + "\n\n" if body else f"# {ds} / {task}\n\n") + "\n".join(links) + "\n"
    ids.append(
        _guard("report markdown", create_markdown_artifact, md, key=artifact_key(ds, task, "report"), description=desc)
    )
    return [i for i in ids if i is not None]


def promotion_artifact(registration: Mapping[str, Any], dataset: str, run: Any = None) -> UUID | None:
    """Markdown artifact of one registration / promotion decision: outcome, reason, MLflow links."""
    from prefect.artifacts import create_markdown_artifact

    name, version = registration.get("model_name", "?"), registration.get("version", "?")
    if registration.get("skipped"):
        outcome = "registration skipped (same weights as the latest version)"
    elif registration.get("promoted"):
        outcome = "promoted to **champion**"
    else:
        outcome = "registered as **challenger**, not promoted"
    score = registration.get("score")
    lines = [
        f"# {name} v{version}: {outcome}",
        "",
        f"- reason: {registration.get('reason', '–')}",
        f"- score (linear-probe macro-F1 mean, test split): {score:.4f}"
        if isinstance(score, (int, float))
        else f"- score: {score}",
        f"- test split digest: `{registration.get('split_digest', '–')}`",
    ]
    url = mlflow_run_url(run)
    if url:
        base = url.split("/#/")[0]
        lines.append(f"- MLflow run: [{url}]({url})")
        mv = f"{base}/#/models/{name}/versions/{version}"
        lines.append(f"- model version: [{mv}]({mv})")
    return _guard(
        "promotion decision",
        create_markdown_artifact,
        "\n".join(lines) + "\n",
        key=artifact_key(dataset, "promotion"),
        description=f"{name} v{version}: {outcome}",
    )


def comparison_artifacts(files: Mapping[str, str | Path], dataset: str, task: str, run: Any = None) -> list[UUID]:
    """Table (``comparison.csv``) + markdown (``comparison.md``) artifacts of one comparison."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    ids = []
    desc = f"methods compared on {dataset} / {task}: scores as in {files.get('csv') or files.get('md')}"
    if files.get("csv") and Path(files["csv"]).is_file():
        with Path(files["csv"]).open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        ids.append(
            _guard(
                "comparison table",
                create_table_artifact,
                rows,
                key=artifact_key(dataset, task, "comparison"),
                description=desc,
            )
        )
    if files.get("md") and Path(files["md"]).is_file():
        md = Path(files["md"]).read_text()
        url = mlflow_run_url(run)
        if url:
            md = md.rstrip() + f"\n\n- MLflow run: [{url}]({url})\n"
        ids.append(
            _guard(
                "comparison markdown",
                create_markdown_artifact,
                md,
                key=artifact_key(dataset, task, "comparison-report"),
                description=desc,
            )
        )
    return [i for i in ids if i is not None]


class Progress:
    """The "units done / total" of a flow run as a Prefect progress artifact, updated as units finish.

    ``parts`` maps a label ("pretraining", "evaluate binary", ...) to its
    number of units; the artifact's description says how far each part is,
    its value is the percentage of all units. A subflow finds its parent
    flow's progress by id (:meth:`find`, same process) and advances it, so
    the pipeline's run shows one progress over pretraining and every
    evaluation task. Thread-safe (units may finish in task-runner threads).
    """

    _open: dict[str, Progress] = {}
    _open_lock = threading.Lock()

    def __init__(self, parts: Mapping[str, int], key: str | None = None, title: str = "units done") -> None:
        self.parts = {label: [0, int(n), 0] for label, n in parts.items()}  # done, total, failed
        self.title = title
        self._lock = threading.Lock()
        self.id: str | None = None
        from prefect.artifacts import create_progress_artifact

        made = _guard("progress", create_progress_artifact, 0.0, key=key, description=self.describe())
        if made is not None:
            self.id = str(made)
            with Progress._open_lock:
                Progress._open[self.id] = self

    @classmethod
    def find(cls, progress_id: str | None) -> Progress | None:
        """The open progress of that id in this process, or None."""
        if not progress_id:
            return None
        with cls._open_lock:
            return cls._open.get(str(progress_id))

    @property
    def done(self) -> int:
        return sum(p[0] for p in self.parts.values())

    @property
    def total(self) -> int:
        return sum(p[1] for p in self.parts.values())

    def describe(self) -> str:
        failed = sum(p[2] for p in self.parts.values())
        each = ", ".join(f"{label} {d}/{n}" for label, (d, n, _) in self.parts.items())
        return f"{self.done} / {self.total} {self.title} ({each})" + (f"; {failed} failed" if failed else "")

    def percent(self) -> float:
        return 100.0 * self.done / self.total if self.total else 100.0

    def advance(self, part: str, n: int = 1, failed: bool = False) -> None:
        """``n`` units of ``part`` finished (``failed``: they ended failed); updates the artifact."""
        from prefect.artifacts import update_progress_artifact

        with self._lock:
            entry = self.parts.setdefault(part, [0, 0, 0])  # a part not announced grows its total as it goes
            entry[0] += n
            entry[1] = max(entry[1], entry[0])
            entry[2] += n if failed else 0
            pct, text = self.percent(), self.describe()
        if self.id is not None:
            _guard("progress", update_progress_artifact, UUID(self.id), pct, description=text)

    def future_done(self, part: str) -> Any:
        """A done-callback for a Prefect future: advances ``part`` by one (failed if the task failed)."""

        def callback(future: Any) -> None:
            try:
                failed = not future.state.is_completed()
            except Exception:  # noqa: BLE001 - a future without a readable state counts as failed
                failed = True
            self.advance(part, failed=failed)

        return callback

    def close(self) -> None:
        """Forget this progress (the artifact stays)."""
        if self.id is not None:
            with Progress._open_lock:
                Progress._open.pop(self.id, None)
