"""Download one file with retries and exponential back-off (the fetch stages' network access)."""

from __future__ import annotations

import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

from trls_core.errors import DataError, NetworkError

__all__ = ["download"]


def download(url: str, target: Path, timeout: float, retries: int, backoff_s: float = 1.0) -> None:
    """Download ``url`` to ``target`` with ``retries`` attempts and exponential back-off.

    A failed attempt leaves no partial ``target``. A client error (HTTP 4xx:
    the file is not there) fails at once with :class:`DataError`, as retrying
    cannot help; a source that cannot be reached (no network, DNS, refused,
    timeout, HTTP 5xx) is retried, then fails with :class:`NetworkError`.
    Both name the URL and the cause.
    """
    attempts = max(1, retries)
    last: Exception | None = None
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, open(target, "wb") as out:
                shutil.copyfileobj(resp, out)
            return
        except urllib.error.HTTPError as exc:
            target.unlink(missing_ok=True)
            if 400 <= exc.code < 500:
                raise DataError(f"download failed: {url} (HTTP {exc.code} {exc.reason})") from None
            last = exc
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            last = exc
            target.unlink(missing_ok=True)
        if attempt + 1 < attempts:
            time.sleep(backoff_s * (2**attempt))
    raise NetworkError(f"download failed after {attempts} attempt(s): {url} ({last})")
