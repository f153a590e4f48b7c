"""Real services for the scale-out tests: PostgreSQL, an S3 server (moto) and ``mlflow server`` over both.

Each is a context manager that starts the service on a free 127.0.0.1 port
and stops it on exit, however the block ends; the session fixtures at the
bottom (``s3_server``, ``postgres_server``, ``tracking_server``) wrap them.

No service may outlive the tests: PostgreSQL and the MLflow server run in
their own process group and are stopped (then killed) at teardown, with
the group checked empty; both also get a parent-death signal
(``setpriv --pdeathsig``), so a pytest killed with SIGKILL takes them with
it. The S3 server is moto's ``ThreadedMotoServer``, a thread of the test
process: nothing to leak.

PostgreSQL refuses to run as root. When the tests run as root, ``initdb``
and ``postgres`` run as an unprivileged user (``postgres`` if the machine
has one, else ``nobody``) through ``setpriv``; the data folder is a fresh
``/tmp/trls-pg-*`` owned by that user (pytest's tmp folders are
root-only), removed at teardown.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import TELEMETRY_OFF

# TRLS_PG_BIN, then Debian's postgresql-NN packages (newest first), then PATH
PG_BIN_DIRS = (
    os.environ.get("TRLS_PG_BIN", ""),
    "/usr/local/bin",
    *sorted((str(p) for p in Path("/usr/lib/postgresql").glob("*/bin")), reverse=True),
)
BUCKET = "trls-shared"
AWS_DUMMY = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
START_TIMEOUT_S = 240.0  # mlflow server's first start migrates a fresh database: ~30 s here, more under load


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_tool(name: str) -> str:
    for d in PG_BIN_DIRS:
        if d and (Path(d) / name).is_file():
            return str(Path(d) / name)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"PostgreSQL's {name} not found (looked in {[d for d in PG_BIN_DIRS if d]} and PATH)")
    return found


def _as_user(user: str | None, pdeathsig: str) -> list[str]:
    """``setpriv`` prefix: the parent-death signal, and the unprivileged user when one is given."""
    if shutil.which("setpriv") is None:
        if user is not None:
            pytest.skip("running as root and setpriv (util-linux) is missing: cannot run postgres unprivileged")
        return []
    cmd = ["setpriv", f"--pdeathsig={pdeathsig}"]
    if user is not None:
        pw = pwd.getpwnam(user)
        cmd += [f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups"]
    return cmd


def _pg_user() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    pytest.skip("running as root and no unprivileged user (postgres, nobody) to run PostgreSQL as")
    return None


@dataclass
class Process:
    """A service process in its own process group, with its log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, n: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")

    def stop(self, sig: int = signal.SIGTERM, wait_s: float = 30.0) -> None:
        """``sig`` to the group, then SIGKILL; returns once no process of the group is left."""
        pgid = self.proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        try:
            self.proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        for _ in range(100):  # children (uvicorn's worker, postgres backends) leave after their parent
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        time.sleep(0.5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, 0)
            raise RuntimeError(f"a process of {self.name} (group {pgid}) survived SIGKILL")


def spawn(name: str, cmd: list[str], log: Path, env: dict[str, str] | None = None) -> Process:
    fh = log.open("wb")
    try:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    finally:
        fh.close()
    return Process(name, proc, log)


# ----------------------------------------------------------------------------- PostgreSQL


@dataclass
class Postgres:
    host: str
    port: int
    user: str = "postgres"
    databases: list[str] = field(default_factory=list)

    def uri(self, database: str) -> str:
        """SQLAlchemy URL; ``+psycopg2``: SQLAlchemy 2.1 opens plain ``postgresql://`` with psycopg 3 (absent)."""
        return f"postgresql+psycopg2://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg2

        conn = psycopg2.connect(host=self.host, port=self.port, user=self.user, dbname="postgres", connect_timeout=10)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        self.databases.append(name)
        return self.uri(name)


@contextlib.contextmanager
def postgres() -> Iterator[Postgres]:
    """initdb into a fresh folder, ``postgres`` on a free 127.0.0.1 port (socket dir in that folder), stopped after."""
    initdb, server = _pg_tool("initdb"), _pg_tool("postgres")
    user = _pg_user()
    _remove_stale_pg_folders()
    base = Path(tempfile.mkdtemp(prefix="trls-pg-"))
    proc: Process | None = None
    try:
        data, sock = base / "data", base / "sock"
        sock.mkdir()
        if user is not None:
            pw = pwd.getpwnam(user)
            for p in (base, sock):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        prefix = _as_user(user, "INT")
        res = subprocess.run(
            [*prefix, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if res.returncode != 0:
            raise RuntimeError(f"initdb failed ({res.returncode}):\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
        port = free_port()
        # SIGINT is postgres' fast shutdown (SIGTERM waits for clients to leave): the parent-death signal too.
        # Durability settings off: a throwaway test database.
        cmd = [*prefix, server, "-D", str(data), "-h", "127.0.0.1", "-p", str(port), "-k", str(sock)]
        for setting in ("fsync=off", "synchronous_commit=off", "full_page_writes=off", "max_connections=50"):
            cmd += ["-c", setting]
        proc = spawn("postgres", cmd, base / "postgres.log", env)  # the log is opened here, by this process
        pg = Postgres("127.0.0.1", port)
        _wait_for_postgres(pg, proc)
        yield pg
    finally:
        if proc is not None:
            proc.stop(signal.SIGINT)
        shutil.rmtree(base, ignore_errors=True)


def _remove_stale_pg_folders(min_age_s: float = 3600.0) -> None:
    """Data folders of a test session that was killed (its server died with it; its ``finally`` never ran).

    Only folders older than ``min_age_s`` whose postmaster (``postmaster.pid``) is not running: a
    concurrent session's folder is younger or has a live server.
    """
    for folder in Path(tempfile.gettempdir()).glob("trls-pg-*"):
        try:
            if time.time() - folder.stat().st_mtime < min_age_s:
                continue
            pidfile = folder / "data" / "postmaster.pid"
            if pidfile.is_file():
                os.kill(int(pidfile.read_text().split()[0]), 0)
                continue  # alive
        except ProcessLookupError:
            pass
        except (OSError, ValueError, IndexError):
            continue
        shutil.rmtree(folder, ignore_errors=True)


def _wait_for_postgres(pg: Postgres, proc: Process, timeout_s: float = 60.0) -> None:
    import psycopg2

    deadline = time.monotonic() + timeout_s
    while True:
        proc.check_alive()
        try:
            psycopg2.connect(host=pg.host, port=pg.port, user=pg.user, dbname="postgres", connect_timeout=2).close()
            return
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres did not accept connections in {timeout_s:g} s:\n{proc.tail()}") from None
            time.sleep(0.2)


# ----------------------------------------------------------------------------- S3 (moto)


@dataclass
class S3:
    endpoint: str
    bucket: str

    def client(self):  # noqa: ANN201 - a boto3 client
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=AWS_DUMMY["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=AWS_DUMMY["AWS_SECRET_ACCESS_KEY"],
            region_name=AWS_DUMMY["AWS_DEFAULT_REGION"],
        )

    def keys(self, prefix: str = "") -> list[str]:
        out: list[str] = []
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            out += [o["Key"] for o in page.get("Contents", [])]
        return out

    @property
    def env(self) -> dict[str, str]:
        """What an S3 client (mlflow, dvc) needs to reach this server."""
        return {**AWS_DUMMY, "MLFLOW_S3_ENDPOINT_URL": self.endpoint}


@contextlib.contextmanager
def s3() -> Iterator[S3]:
    """moto's S3 on a free 127.0.0.1 port (a thread of this process) with one bucket; stopped on exit."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per S3 request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        store = S3(f"http://127.0.0.1:{port}", BUCKET)
        store.client().create_bucket(Bucket=BUCKET)
        yield store
    finally:
        server.stop()


# ----------------------------------------------------------------------------- mlflow server


@dataclass
class TrackingServer:
    url: str
    backend_uri: str
    artifacts: str  # s3://bucket/prefix
    s3: S3
    postgres: Postgres
    start_seconds: float
    process: Process


@contextlib.contextmanager
def mlflow_server(backend_uri: str, artifacts: str, store: S3, workdir: Path) -> Iterator[tuple[str, Process, float]]:
    """``mlflow server`` (1 worker, job runner off) on a free port, proxying artifacts to ``artifacts``."""
    port = free_port()
    env = {
        **os.environ,
        **TELEMETRY_OFF,
        **store.env,
        # mlflow 3's server starts a job runner (huey consumers, 6 processes) for GenAI jobs: not needed here
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [
        *_as_user(None, "TERM"),
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        backend_uri,
        "--artifacts-destination",
        artifacts,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    t0 = time.monotonic()
    proc = spawn("mlflow server", cmd, workdir / "mlflow-server.log", env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = t0 + START_TIMEOUT_S
        while True:
            proc.check_alive()
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not answer /health in {START_TIMEOUT_S:g} s:\n{proc.tail()}")
            time.sleep(0.3)
        yield url, proc, time.monotonic() - t0
    finally:
        proc.stop(signal.SIGTERM, wait_s=20)


# ----------------------------------------------------------------------------- session fixtures


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3]:
    """One moto S3 server (bucket ``trls-shared``) for the session."""
    with s3() as store:
        yield store


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    """One PostgreSQL 15 for the session (trust auth on 127.0.0.1, user ``postgres``)."""
    with postgres() as pg:
        yield pg


@pytest.fixture(scope="session")
def tracking_server(
    s3_server: S3, postgres_server: Postgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TrackingServer]:
    """``mlflow server`` on PostgreSQL (database ``mlflow``) with artifacts in ``s3://trls-shared/mlartifacts``."""
    t0 = time.monotonic()
    backend = postgres_server.create_database("mlflow")
    artifacts = f"s3://{s3_server.bucket}/mlartifacts"
    workdir = tmp_path_factory.mktemp("mlflow_server")
    with mlflow_server(backend, artifacts, s3_server, workdir) as (url, proc, seconds):
        server = TrackingServer(url, backend, artifacts, s3_server, postgres_server, seconds, proc)
        print(f"\n[services] mlflow server {url} up in {seconds:.1f} s ({time.monotonic() - t0:.1f} s with the db)")
        yield server
