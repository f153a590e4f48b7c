"""MLflow metrics whose logging failed, kept beside the saved work and logged on the next run.

Why: the work a log line describes (a pretraining epoch, an evaluation unit)
is saved first (checkpoint, unit result file). When the store then refuses
the log (a server that is down, sqlite's "database is locked" past its
timeout), failing the task would throw nothing away but the log, and the
rerun reuses the saved work without opening a run, so the metrics would be
lost for good. Instead the failure is a warning and the rows go to a small
JSON file beside the saved work (``pending_mlflow.json`` in a model folder,
``pending_mlflow/<unit>.json`` beside unit results): the run id and its
``[metrics, step]`` rows. The next run that reaches the same work
(:func:`flush_pending`) logs them into the ORIGINAL run (by id, its status
left as it is) and removes the file.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException

from trls_core.io import write_json
from trls_core.tracking.provenance import tracking_uri
from trls_core.tracking.runs import Tracker
from trls_core.tracking.store import mlflow_client

logger = logging.getLogger(__name__)

__all__ = ["PENDING_FILE", "discard_pending", "flush_pending", "log_or_keep", "read_pending"]

PENDING_FILE = "pending_mlflow.json"
Rows = Sequence[tuple[Mapping[str, Any], int]]

# the run is gone (deleted, another store): its rows can never be logged
_PERMANENT = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND")


def read_pending(path: Path) -> list[dict[str, Any]]:
    """The entries ``[{"run_id", "rows", "error"}]`` kept in ``path``; an unreadable file is logged and ignored."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        doc = json.loads(path.read_text())
        return [e for e in doc if isinstance(e, dict) and e.get("run_id") and isinstance(e.get("rows"), list)]
    except (OSError, ValueError, TypeError) as exc:
        logger.warning("%s: unreadable pending MLflow log (%s); ignored", path, exc)
        return []


def _write(path: Path, entries: list[dict[str, Any]]) -> None:
    if entries:
        write_json(path, entries)
    else:
        path.unlink(missing_ok=True)


def log_or_keep(run: Any, rows: Rows, pending: Path, what: str) -> bool:
    """``run.log_metric_steps(rows)``; if MLflow fails: a warning, and the rows kept in ``pending``.

    True when logged (or nothing to log). Any exception of the store counts
    (MLflow's, sqlite's, the network's): the work is already saved, so a
    failed log must not fail it.
    """
    rows = [(dict(m), int(s)) for m, s in rows if m]
    if not rows or getattr(run, "run_id", None) is None:
        return True
    try:
        run.log_metric_steps(rows)
        return True
    except Exception as exc:  # noqa: BLE001 - see the docstring: a failed log never fails saved work
        pending = Path(pending)
        logger.warning(
            "%s: MLflow logging failed (%s: %s); the metrics are kept in %s and logged on the next run",
            what,
            type(exc).__name__,
            exc,
            pending,
        )
        entries = read_pending(pending)
        entries.append({"run_id": run.run_id, "rows": rows, "error": f"{type(exc).__name__}: {exc}"[:500]})
        _write(pending, entries)
        return False


def discard_pending(pending: Path, run_id: str) -> None:
    """Drop ``run_id``'s entries from ``pending`` (its rows are about to be logged again by the same run)."""
    entries = read_pending(pending)
    kept = [e for e in entries if e["run_id"] != run_id]
    if len(kept) != len(entries):
        _write(Path(pending), kept)


def flush_pending(root: Path, pending: Path) -> int:
    """Log the rows kept in ``pending`` into their runs (store of ``root``); returns how many metric values.

    Entries that fail again stay (a warning); entries whose run no longer
    exists are dropped (a warning); the file goes when nothing is left.
    """
    pending = Path(pending)
    entries = read_pending(pending)
    if not entries:
        return 0
    uri = tracking_uri(root)
    client = mlflow_client(uri)
    left, done = [], 0
    for entry in entries:
        rows = [(m, int(s)) for m, s in entry["rows"]]
        try:
            done += Tracker(root, client, uri, str(entry["run_id"]), "").log_metric_steps(rows)
        except MlflowException as exc:
            if exc.error_code in _PERMANENT:
                logger.warning(
                    "%s: run %s cannot take its pending metrics (%s); dropped", pending, entry["run_id"], exc
                )
                continue
            logger.warning("%s: pending metrics of run %s not logged yet (%s)", pending, entry["run_id"], exc)
            left.append(entry)
        except Exception as exc:  # noqa: BLE001 - still failing: keep them for the next run
            logger.warning("%s: pending metrics of run %s not logged yet (%s)", pending, entry["run_id"], exc)
            left.append(entry)
    _write(pending, left)
    if done:
        logger.info("%s: logged %d pending metric values into their runs", pending, done)
    return done
