"""A shared DVC cache on S3: the project's pipeline outputs pushed to an S3 remote (moto), pulled by a fresh clone.

Same shape as test_dvc_remote.py's local round trip (its project and
helpers): `dvc repro` of the cinc2017 stages on a 40-record synthetic
mirror, `dvc remote add` of an ``s3://`` remote with ``endpointurl`` (the
S3 server of ``tests/integration/services.py``), push, fresh git clone,
pull, `dvc status` clean. Credentials come from the environment (never
committed). Then a remote whose endpoint does not answer fails, naming it.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.cinc_synth import tiny_mirror
from tests.integration.services import S3, free_port
from tests.integration.test_dvc_remote import N_RECORDS, VENV, _env, _project, _run

pytestmark = [pytest.mark.scale, pytest.mark.slow, pytest.mark.integration]

OUTPUTS = ("data/parquet/cinc2017/windows.parquet", "data/spectrograms/cinc2017/meta.json")


def test_s3_remote_push_fresh_clone_pull_status_clean(s3_server: S3, tmp_path: Path) -> None:
    env = {**_env(tmp_path / "home"), **s3_server.env}
    tiny_mirror(tmp_path / "mirror", n_records=N_RECORDS)
    proj = _project(tmp_path, env)
    t0 = time.monotonic()
    _run(proj, env, "dvc", "repro")
    print(f"\n[timing] dvc repro (cinc2017, {N_RECORDS} records): {time.monotonic() - t0:.1f} s")

    # the remote as docs/usage.md writes it: the endpoint is committed, the credentials are not
    _run(proj, env, "dvc", "remote", "add", "-d", "shared", f"s3://{s3_server.bucket}/dvc")
    _run(proj, env, "dvc", "remote", "modify", "shared", "endpointurl", s3_server.endpoint)
    assert "endpointurl" in (proj / ".dvc/config").read_text()
    _run(proj, env, "git", "add", "-A")
    _run(proj, env, "git", "commit", "-q", "-m", "tiny project")
    t0 = time.monotonic()
    out = _run(proj, env, "dvc", "push")
    print(f"[timing] dvc push: {time.monotonic() - t0:.1f} s ({out.strip().splitlines()[-1]})")
    keys = s3_server.keys("dvc/")
    assert keys and all(k.startswith("dvc/files/md5/") for k in keys), keys[:5]

    clone = tmp_path / "clone"
    _run(tmp_path, env, "git", "clone", "-q", str(proj), str(clone))
    (clone / ".venv").symlink_to(VENV)
    assert not (clone / OUTPUTS[0]).exists()
    t0 = time.monotonic()
    _run(clone, env, "dvc", "pull")
    print(f"[timing] dvc pull into a fresh clone: {time.monotonic() - t0:.1f} s")
    assert "Data and pipelines are up to date" in _run(clone, env, "dvc", "status")
    assert "Cache and remote 'shared' are in sync" in _run(clone, env, "dvc", "status", "--cloud")
    for rel in OUTPUTS:
        assert (clone / rel).read_bytes() == (proj / rel).read_bytes(), rel

    # bad input: the remote's endpoint does not answer (a closed port) -> fails in bounded time, naming it
    dead = f"http://127.0.0.1:{free_port()}"
    _run(clone, env, "dvc", "remote", "modify", "--local", "shared", "endpointurl", dead)
    (clone / "extra.txt").write_text("new data\n")
    _run(clone, env, "dvc", "add", "extra.txt")
    t0 = time.monotonic()
    res = subprocess.run(
        [str(clone / ".venv/bin/dvc"), "push"], cwd=clone, env=env, capture_output=True, text=True, timeout=120
    )
    elapsed = time.monotonic() - t0
    print(f"[timing] dvc push to a dead endpoint failed after {elapsed:.1f} s")
    assert res.returncode != 0, res.stdout
    assert f'Could not connect to the endpoint URL: "{dead}/' in res.stderr, res.stderr[-2000:]
    assert elapsed < 60, elapsed
