"""Downloads against a real HTTP server on 127.0.0.1: size cap, total deadline, pinned sha256, early close.

Each failure must name the URL and the setting to change, leave no partial
file, and be retried only when retrying can help.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from tests.local_http import announce, body, drip, serve
from trls_core.data.download import DownloadLimits, download
from trls_core.errors import DataError, NetworkError

LIMITS = DownloadLimits(max_bytes=100_000, total_timeout_s=5.0, setting="test.fetch")


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_content_length_over_the_cap_is_refused_before_the_body(tmp_path: Path) -> None:
    with serve({"/big.zip": announce(10_000_000, b"x" * 10)}) as (base, hits):
        with pytest.raises(DataError) as err:
            download(f"{base}/big.zip", tmp_path / "big.zip", timeout=2, retries=3, backoff_s=0, limits=LIMITS)
    msg = str(err.value)
    assert not isinstance(err.value, NetworkError)  # permanent: not retried, no "point at a mirror" advice
    assert f"{base}/big.zip" in msg and "10,000,000 bytes (Content-Length)" in msg
    assert "cap of 100,000 bytes (test.fetch.max_mb)" in msg
    assert hits["/big.zip"] == 1
    assert leftovers(tmp_path) == []


def test_body_over_the_cap_without_content_length_is_stopped(tmp_path: Path) -> None:
    with serve({"/endless.zip": body(b"y" * 300_000, content_length=False)}) as (base, hits):
        with pytest.raises(DataError, match=r"sent more than the cap of 100,000 bytes \(test\.fetch\.max_mb\)") as err:
            download(f"{base}/endless.zip", tmp_path / "e.zip", timeout=2, retries=3, backoff_s=0, limits=LIMITS)
    assert f"{base}/endless.zip" in str(err.value) and hits["/endless.zip"] == 1
    assert leftovers(tmp_path) == []


def test_slow_drip_fails_on_the_total_timeout(tmp_path: Path) -> None:
    """A byte every 0.05 s never trips the 2-s per-read timeout; the 0.6-s total must."""
    limits = DownloadLimits(max_bytes=100_000, total_timeout_s=0.6, setting="test.fetch")
    with serve({"/drip.zip": drip(1000, every_s=0.05)}) as (base, hits):
        start = time.monotonic()
        with pytest.raises(NetworkError) as err:
            download(f"{base}/drip.zip", tmp_path / "d.zip", timeout=2, retries=2, backoff_s=0, limits=limits)
        elapsed = time.monotonic() - start
    msg = str(err.value)
    assert "after 2 attempt(s)" in msg and f"{base}/drip.zip" in msg
    assert "total timeout of 0.6 s (test.fetch.total_timeout_s)" in msg
    assert 1.2 <= elapsed < 3.0, elapsed  # two attempts of 0.6 s, not 1000 x 0.05 s
    assert hits["/drip.zip"] == 2
    time.sleep(0.2)  # the abandoned worker stops at its next byte and removes what it wrote
    assert leftovers(tmp_path) == []


def test_pinned_sha256_mismatch_names_url_and_both_digests(tmp_path: Path) -> None:
    data = b"official bytes\n" * 100
    actual = hashlib.sha256(data).hexdigest()
    pinned = hashlib.sha256(b"what was validated").hexdigest()
    with serve({"/z.zip": body(data)}) as (base, hits):
        with pytest.raises(DataError) as err:
            download(f"{base}/z.zip", tmp_path / "z.zip", 2, 3, 0, limits=LIMITS, sha256=pinned.upper())
        assert leftovers(tmp_path) == []  # the file with the wrong bytes is gone
        assert not isinstance(err.value, NetworkError) and hits["/z.zip"] == 1
        msg = str(err.value)
        assert f"{base}/z.zip" in msg and actual in msg and pinned in msg and "test.fetch.sha256" in msg

        assert download(f"{base}/z.zip", tmp_path / "z.zip", 2, 3, 0, limits=LIMITS, sha256=actual) == actual
    assert (tmp_path / "z.zip").read_bytes() == data and leftovers(tmp_path) == ["z.zip"]


def test_connection_closed_early_is_retried_then_named(tmp_path: Path) -> None:
    with serve({"/cut.zip": announce(1000, b"z" * 10)}) as (base, hits):
        with pytest.raises(NetworkError, match=r"after 3 attempt\(s\).*connection closed after 10 of 1,000 bytes"):
            download(f"{base}/cut.zip", tmp_path / "c.zip", timeout=2, retries=3, backoff_s=0, limits=LIMITS)
    assert hits["/cut.zip"] == 3
    assert leftovers(tmp_path) == []


def test_http_404_from_a_real_server_is_not_retried(tmp_path: Path) -> None:
    with serve({}) as (base, hits):
        with pytest.raises(DataError, match=r"HTTP 404"):
            download(f"{base}/gone.zip", tmp_path / "g.zip", timeout=2, retries=3, backoff_s=0, limits=LIMITS)
    assert hits["/gone.zip"] == 1 and leftovers(tmp_path) == []
