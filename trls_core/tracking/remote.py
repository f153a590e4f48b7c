"""What kind of store a tracking URI names, where its artifacts go, and whether it answers.

No mlflow here (it is imported by the CLI before mlflow is needed).

Three kinds of store (:func:`store_kind`):

- ``local``: the embedded sqlite file (``sqlite:///<path>``), a file store
  (``file://`` or a plain path). Artifacts go to ``<root>/mlartifacts``.
- ``server``: ``http(s)://`` (``mlflow server``) or ``databricks``. The
  server decides where artifacts go (``--artifacts-destination s3://...``:
  it proxies them, runs record ``mlflow-artifacts:/`` URIs), so trls sets no
  artifact location: a client never writes a local ``file://`` path that
  the other machines cannot read.
- ``database``: any other SQLAlchemy URL (``postgresql+psycopg2://``,
  ``mysql://``, ...), a shared database opened directly by each client.
  MLflow would put artifacts in the client's working folder; trls requires
  :data:`ARTIFACT_ROOT_ENV` (e.g. ``s3://bucket/mlflow``) and refuses to
  start a run without it (:class:`ArtifactStoreMissing`).

:func:`check_reachable` fails within a bounded time naming the address
(:data:`TIMEOUT_ENV`, default :data:`DEFAULT_TIMEOUT_S` s): MLflow's own
client retries a refused connection with back-off for minutes (7 retries
by default) before it says anything.
"""

from __future__ import annotations

import os
import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse, urlunparse

from trls_core.errors import TrlsError
from trls_core.tracking.provenance import artifact_root, tracking_uri

__all__ = [
    "ARTIFACT_ROOT_ENV",
    "DEFAULT_TIMEOUT_S",
    "TIMEOUT_ENV",
    "ArtifactStoreMissing",
    "TrackingUnreachable",
    "artifact_location",
    "check_reachable",
    "check_store",
    "display_uri",
    "store_kind",
]

#: Where a ``database`` store's runs keep their artifacts (``s3://bucket/prefix``, or a shared folder).
ARTIFACT_ROOT_ENV = "TRLS_MLFLOW_ARTIFACT_ROOT"
#: Seconds to wait for a tracking server / database to answer before failing.
TIMEOUT_ENV = "TRLS_TRACKING_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 10.0
_DB_PORTS = {"postgresql": 5432, "postgres": 5432, "mysql": 3306, "mssql": 1433, "mariadb": 3306}

_ANSWERED: set[str] = set()  # URIs that answered in this process: checked once
_ANSWERED_LOCK = threading.Lock()


class TrackingUnreachable(TrlsError):
    """The tracking server or database named by the tracking URI did not answer in time."""


class ArtifactStoreMissing(TrlsError):
    """A database tracking URI without a shared artifact store (:data:`ARTIFACT_ROOT_ENV`)."""


def store_kind(uri: str) -> str:
    """``local``, ``server`` or ``database`` (see the module docstring)."""
    scheme = urlparse(uri).scheme.lower()
    if scheme in ("http", "https") or uri.startswith("databricks"):
        return "server"
    if scheme in ("", "file") or (scheme == "sqlite" and uri.startswith("sqlite:///") and ":memory:" not in uri):
        return "local"
    return "database"


def display_uri(uri: str) -> str:
    """``uri`` without a password, for messages and logs."""
    parsed = urlparse(uri)
    if parsed.password is None:
        return uri
    netloc = parsed.netloc.replace(f":{parsed.password}@", ":***@", 1)
    return urlunparse(parsed._replace(netloc=netloc))


def artifact_location(uri: str, root: Path, experiment: str) -> str | None:
    """The artifact location a new experiment ``experiment`` gets in the store at ``uri``.

    ``local``: ``<root>/mlartifacts/<experiment>`` as a ``file://`` URI;
    ``server``: None (the server's ``--artifacts-destination`` /
    ``--default-artifact-root``); ``database``: ``$TRLS_MLFLOW_ARTIFACT_ROOT/<experiment>``,
    and :class:`ArtifactStoreMissing` without it.
    """
    kind = store_kind(uri)
    if kind == "server":
        return None
    if kind == "local":
        return (artifact_root(root) / experiment).as_uri()
    base = os.environ.get(ARTIFACT_ROOT_ENV, "").strip()
    if not base:
        raise ArtifactStoreMissing(
            f"MLFLOW_TRACKING_URI={display_uri(uri)} is a database opened directly: its runs' artifacts "
            f"would stay in this machine's working folder, which other machines cannot read. Either run "
            f"`mlflow server --backend-store-uri <that URI> --artifacts-destination s3://<bucket>/<prefix>` and "
            f"set MLFLOW_TRACKING_URI=http://<host>:<port>, or set {ARTIFACT_ROOT_ENV}=s3://<bucket>/<prefix> "
            "(a shared folder works too)"
        )
    if "://" not in base:
        return (Path(base).expanduser().resolve() / experiment).as_uri()
    return f"{base.rstrip('/')}/{experiment}"


def _timeout() -> float:
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        raise TrlsError(f"{TIMEOUT_ENV}={raw!r}: not a number of seconds") from None
    if not value > 0:
        raise TrlsError(f"{TIMEOUT_ENV}={raw!r}: must be > 0 seconds")
    return value


def check_reachable(uri: str, timeout_s: float | None = None) -> None:
    """Raise :class:`TrackingUnreachable` (naming the address) if the store at ``uri`` does not answer.

    ``server``: an HTTP request to ``<uri>/health`` (any HTTP answer counts:
    a proxy in front may not route ``/health``); ``database``: a TCP
    connection to its host and port; ``local``: nothing to reach. Each
    attempt waits at most ``timeout_s`` (default :data:`TIMEOUT_ENV` or
    10 s). A URI that answered once is not checked again in this process.
    """
    kind = store_kind(uri)
    if kind == "local" or uri in _ANSWERED or uri.startswith("databricks"):
        return
    timeout = _timeout() if timeout_s is None else float(timeout_s)
    shown = display_uri(uri)
    hint = f"(MLFLOW_TRACKING_URI; waited {timeout:g} s, {TIMEOUT_ENV} sets it)"
    if kind == "server":
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout):  # noqa: S310 - the user's own tracking server
                pass
        except urllib.error.HTTPError:
            pass  # it answered
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TrackingUnreachable(f"tracking server {shown} is unreachable: {reason} {hint}") from None
    else:
        _check_database(uri, shown, timeout, hint)
    with _ANSWERED_LOCK:
        _ANSWERED.add(uri)


def check_store(root: Path) -> None:
    """:func:`check_reachable` for the store that runs of ``root`` use (``MLFLOW_TRACKING_URI`` or the embedded one)."""
    check_reachable(tracking_uri(root))


def _check_database(uri: str, shown: str, timeout: float, hint: str) -> None:
    parsed = urlparse(uri)
    dialect, _, driver = parsed.scheme.partition("+")
    if dialect in ("postgresql", "postgres") and not driver:
        import importlib.util

        if importlib.util.find_spec("psycopg") is None:  # SQLAlchemy 2.1's default driver for postgresql://
            raise TrlsError(
                f"MLFLOW_TRACKING_URI={shown}: SQLAlchemy opens postgresql:// with psycopg 3, which is not "
                "installed; write postgresql+psycopg2://... (psycopg2 is)"
            )
    host = parsed.hostname
    if not host:  # a unix socket or a driver-specific form: nothing generic to probe
        return
    port = parsed.port or _DB_PORTS.get(dialect)
    if port is None:
        return
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise TrackingUnreachable(f"tracking database {shown} is unreachable at {host}:{port}: {exc} {hint}") from None
