"""Tracking URIs: their kind, where new experiments keep artifacts, a bounded reachability check (loopback only)."""

from __future__ import annotations

import importlib.util
import socket
import time
from pathlib import Path

import pytest

from trls_core.errors import TrlsError
from trls_core.tracking import remote
from trls_core.tracking.remote import ArtifactStoreMissing, TrackingUnreachable


def test_store_kinds() -> None:
    assert remote.store_kind("sqlite:////srv/p/mlflow.db") == "local"
    assert remote.store_kind("file:///srv/p/mlruns") == remote.store_kind("/srv/p/mlruns") == "local"
    assert remote.store_kind("http://10.0.0.5:5000") == remote.store_kind("https://mlflow.lab") == "server"
    assert remote.store_kind("databricks") == "server"
    assert remote.store_kind("postgresql+psycopg2://u@db:5432/mlflow") == "database"
    assert remote.store_kind("mysql://u@db/mlflow") == "database"


def test_artifact_location_never_local_for_a_shared_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(remote.ARTIFACT_ROOT_ENV, raising=False)
    local = remote.artifact_location(f"sqlite:///{tmp_path}/mlflow.db", tmp_path, "trls-x")
    assert local == (tmp_path.resolve() / "mlartifacts" / "trls-x").as_uri()
    assert remote.artifact_location("http://10.0.0.5:5000", tmp_path, "trls-x") is None  # the server's store
    db = "postgresql+psycopg2://u:secret@db:5432/mlflow"
    with pytest.raises(ArtifactStoreMissing) as err:
        remote.artifact_location(db, tmp_path, "trls-x")
    assert "u:***@db" in str(err.value) and "secret" not in str(err.value)
    assert "--artifacts-destination" in str(err.value) and remote.ARTIFACT_ROOT_ENV in str(err.value)
    monkeypatch.setenv(remote.ARTIFACT_ROOT_ENV, "s3://bucket/mlflow/")
    assert remote.artifact_location(db, tmp_path, "trls-x") == "s3://bucket/mlflow/trls-x"
    monkeypatch.setenv(remote.ARTIFACT_ROOT_ENV, str(tmp_path / "shared"))
    assert remote.artifact_location(db, tmp_path, "trls-x") == (tmp_path / "shared" / "trls-x").as_uri()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_check_reachable_is_bounded_and_names_the_address(monkeypatch: pytest.MonkeyPatch) -> None:
    closed = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(TrackingUnreachable, match=f"tracking server {closed} is unreachable"):
        remote.check_reachable(closed)
    with socket.socket() as silent:  # accepts connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        t0 = time.monotonic()
        with pytest.raises(TrackingUnreachable, match="waited 0.5 s"):
            remote.check_reachable(uri, timeout_s=0.5)
        assert time.monotonic() - t0 < 5
    port = _free_port()
    with pytest.raises(TrackingUnreachable, match=f"unreachable at 127.0.0.1:{port}"):
        remote.check_reachable(f"postgresql+psycopg2://u@127.0.0.1:{port}/mlflow", timeout_s=2)
    if importlib.util.find_spec("psycopg") is None:  # SQLAlchemy's driver for postgresql:// is not installed
        with pytest.raises(TrlsError, match=r"write postgresql\+psycopg2://"):
            remote.check_reachable(f"postgresql://u@127.0.0.1:{port}/mlflow", timeout_s=2)
    monkeypatch.setenv(remote.TIMEOUT_ENV, "soon")
    with pytest.raises(TrlsError, match="TRLS_TRACKING_TIMEOUT_S='soon'"):
        remote.check_reachable(closed)
    remote.check_reachable("sqlite:////nonexistent/mlflow.db")  # local: nothing to reach
