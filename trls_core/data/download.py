"""Download one file, bounded: a size cap, a total deadline, a pinned sha256, retries with back-off.

The fetch stages' network access. A server can be wrong in three ways that a
plain ``urlopen`` + ``copyfileobj`` does not survive: it can send far more
than the file should be (a full disk), send a byte every few seconds (the
socket timeout is per read, so that never times out), or send other bytes
than the ones this project was validated on. Each attempt therefore runs in
a worker thread joined with the total deadline, counts the bytes it streams
against the cap (``Content-Length`` is checked first, but a server may omit
or understate it), and hashes them on the way to compare with the pin.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from trls_core.errors import DataError, NetworkError
from trls_core.io import atomic_path

__all__ = ["DownloadLimits", "download"]

logger = logging.getLogger(__name__)

CHUNK = 1 << 16
#: Defaults for callers that pass no limits (tests, scripts); the fetch stages pass the
#: ``<dataset>.fetch`` settings. 4 GiB: the largest file any plugin downloads is ~100 MB.
#: 6 h: such a file at a slow 2 Mbit/s takes ~7 min; anything near 6 h is a stuck source.
DEFAULT_MAX_BYTES = 4 << 30
DEFAULT_TOTAL_TIMEOUT_S = 6 * 3600.0


@dataclass(frozen=True)
class DownloadLimits:
    """Per-file bounds of one download; ``setting`` is where they are set, named in messages."""

    max_bytes: int = DEFAULT_MAX_BYTES
    total_timeout_s: float = DEFAULT_TOTAL_TIMEOUT_S
    setting: str = "fetch"

    @classmethod
    def from_mb(cls, max_mb: float, total_timeout_s: float, setting: str) -> DownloadLimits:
        """From the ``<dataset>.fetch`` settings (``max_mb`` in MiB)."""
        return cls(max_bytes=int(max_mb * (1 << 20)), total_timeout_s=total_timeout_s, setting=setting)


class _TotalTimeout(TimeoutError):
    """An attempt did not finish within ``total_timeout_s`` (retried like any other timeout)."""


def _stream(url: str, part: Path, timeout: float, limits: DownloadLimits, cancel: threading.Event) -> str:
    """One attempt: ``url`` into ``part``, bytes counted against the cap; returns the sha256 of what was written."""
    digest = hashlib.sha256()
    written = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            declared = _content_length(resp)
            if declared is not None and declared > limits.max_bytes:
                raise DataError(
                    f"download refused: {url} announces {declared:,} bytes (Content-Length), over the cap of "
                    f"{limits.max_bytes:,} bytes ({limits.setting}.max_mb)"
                )
            read = getattr(resp, "read1", None) or resp.read  # read1: returns what arrived, not a full chunk
            with open(part, "wb") as out:
                while not cancel.is_set():
                    block = read(CHUNK)
                    if not block:
                        break
                    written += len(block)
                    if written > limits.max_bytes:
                        raise DataError(
                            f"download stopped: {url} sent more than the cap of {limits.max_bytes:,} bytes "
                            f"({limits.setting}.max_mb)"
                        )
                    digest.update(block)
                    out.write(block)
            if not cancel.is_set() and declared is not None and written != declared:
                raise ConnectionError(f"connection closed after {written:,} of {declared:,} bytes")
    finally:
        if cancel.is_set():  # the caller gave up on this attempt: nothing of it may stay behind
            part.unlink(missing_ok=True)
    return digest.hexdigest()


def _content_length(resp: object) -> int | None:
    headers = getattr(resp, "headers", None)
    value = headers.get("Content-Length") if headers is not None else None
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _attempt(url: str, part: Path, timeout: float, limits: DownloadLimits) -> str:
    """:func:`_stream` in a worker thread, abandoned (and told to stop) at the total deadline."""
    outcome: dict[str, object] = {}
    cancel = threading.Event()

    def run() -> None:
        try:
            outcome["digest"] = _stream(url, part, min(timeout, limits.total_timeout_s), limits, cancel)
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=run, name=f"download {url}", daemon=True)
    worker.start()
    try:
        worker.join(limits.total_timeout_s)
    finally:  # the deadline, or Ctrl-C while waiting: the worker stops at its next read (<= one read timeout)
        if worker.is_alive():
            cancel.set()
    if cancel.is_set():  # even if it finished meanwhile: it was told to stop and may have cut its file short
        raise _TotalTimeout(
            f"not complete within the total timeout of {limits.total_timeout_s:g} s ({limits.setting}.total_timeout_s)"
        )
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return str(outcome["digest"])


def download(
    url: str,
    target: Path,
    timeout: float,
    retries: int,
    backoff_s: float = 1.0,
    *,
    limits: DownloadLimits | None = None,
    sha256: str | None = None,
) -> str:
    """Download ``url`` to ``target``; ``retries`` attempts with exponential back-off. Returns the file's sha256.

    ``timeout`` bounds each network operation, ``limits.total_timeout_s`` each
    attempt as a whole, ``limits.max_bytes`` the file. ``sha256``, when given,
    is the pinned digest: other bytes fail with :class:`DataError` naming the
    URL and both digests. A failed attempt leaves no partial ``target`` (it
    streams into an :func:`~trls_core.io.atomic_path` temp, which a killed
    process leaves for :mod:`trls_core.litter` to remove on the next run).

    Not retried, as retrying cannot help: HTTP 4xx, a file over the cap, a
    digest other than the pin (all :class:`DataError`). Retried, then
    :class:`NetworkError`: no network, DNS, refused, a timeout (per operation
    or total), a connection closed early, HTTP 5xx. Both name the URL and cause.
    """
    limits = limits or DownloadLimits()
    attempts = max(1, retries)
    last: BaseException | None = None
    for attempt in range(attempts):
        try:
            with atomic_path(target) as part:
                actual = _attempt(url, part, timeout, limits)
                if sha256 is not None and actual != sha256.lower():
                    raise DataError(
                        f"checksum mismatch: {url} has sha256 {actual}, pinned {sha256.lower()} "
                        f"({limits.setting}.sha256); the download is removed. If the source republished the "
                        f"file, check it and update the pin"
                    )
            return actual
        except urllib.error.HTTPError as exc:
            if 400 <= exc.code < 500:
                raise DataError(f"download failed: {url} (HTTP {exc.code} {exc.reason})") from None
            last = exc
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:  # TimeoutError is an OSError
            last = exc
        if attempt + 1 < attempts:
            logger.warning("download attempt %d/%d of %s failed (%s); retrying", attempt + 1, attempts, url, last)
            time.sleep(backoff_s * (2**attempt))
    raise NetworkError(f"download failed after {attempts} attempt(s): {url} ({last})")
