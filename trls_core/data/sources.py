"""Fetching raw data: from a local mirror folder or the official URLs, verified.

``data/raw/<dataset>/`` holds exactly what the source distributes. The fetch
is all-or-nothing: files are gathered and verified (by parsing, since the
official zips and the mirror's are packed differently) in a temporary folder
that replaces ``dest`` only on success, so a failed fetch never leaves a
half-populated folder nor damages a previous good one.
"""

from __future__ import annotations

import logging
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from trls_core.data.bonn import BONN_SETS, FS_HZ, SET_ORDER, content_digest, find_set_zip, read_bonn_zip
from trls_core.errors import DataError
from trls_core.io import atomic_dir, sha256_file, write_json

logger = logging.getLogger(__name__)

__all__ = ["BONN_SETS", "BONN_URLS", "fetch_bonn", "resolve_bonn_mirror", "sha256_file"]

#: Official download of each set (Andrzejak et al. 2001, University of Bonn).
BONN_URLS: dict[str, str] = {
    "Z": "https://www.ukbonn.de/site/assets/files/21874/z.zip",
    "O": "https://www.ukbonn.de/site/assets/files/21872/o.zip",
    "N": "https://www.ukbonn.de/site/assets/files/21871/n.zip",
    "F": "https://www.ukbonn.de/site/assets/files/21870/f.zip",
    "S": "https://www.ukbonn.de/site/assets/files/21875/s.zip",
}

MIRROR_SUBDIR = "bonn-eeg"


def resolve_bonn_mirror(mirror: Path) -> Path:
    """The folder holding the set zips: ``mirror/bonn-eeg`` if present, else ``mirror``."""
    mirror = Path(mirror)
    if not mirror.is_dir():
        raise DataError(f"Bonn mirror folder not found: {mirror}")
    sub = mirror / MIRROR_SUBDIR
    return sub if sub.is_dir() else mirror


def _download(url: str, target: Path, timeout: float, retries: int, backoff_s: float) -> None:
    """Download ``url`` to ``target`` with ``retries`` attempts and exponential back-off."""
    attempts = max(1, retries)
    last: Exception | None = None
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, open(target, "wb") as out:
                shutil.copyfileobj(resp, out)
            return
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            last = exc
            target.unlink(missing_ok=True)
            if attempt + 1 < attempts:
                time.sleep(backoff_s * (2**attempt))
    raise DataError(f"download failed after {attempts} attempt(s): {url} ({last})")


def fetch_bonn(
    dest: Path,
    mirror: Path | None,
    urls: dict[str, str] | None = None,
    expected_segments: int = 100,
    expected_samples: int = 4097,
    timeout: float = 60,
    retries: int = 3,
    backoff_s: float = 1.0,
) -> dict[str, Any]:
    """Populate ``dest`` with the five Bonn zips (Z, O, N, F, S) and ``MANIFEST.json``.

    Source: ``mirror`` when given (the folder holding ``bonn-eeg/`` or that
    folder itself; no fallback to the network, so an offline run never tries
    it), else ``urls`` (default :data:`BONN_URLS`). Each zip is copied byte
    for byte and verified by parsing it: ``expected_segments`` segments of
    ``expected_samples`` finite numbers. The manifest records per-file sha256,
    size and segment count, and a ``content_digest`` over the parsed samples
    that is equal for any packing of the same data. Returns the manifest.
    """
    dest = Path(dest)
    if mirror is not None:
        folder = resolve_bonn_mirror(Path(mirror))
        sources: dict[str, Path] = {}
        for letter in SET_ORDER:
            found = find_set_zip(folder, letter)
            if found is None:
                raise DataError(f"Bonn mirror: missing {letter}.zip in {folder.resolve()}")
            sources[letter] = found
        source = "mirror"  # no absolute path: the manifest (a DVC output) must not differ by machine
    else:
        urls = dict(BONN_URLS if urls is None else urls)
        missing = [s for s in SET_ORDER if s not in urls]
        if missing:
            raise DataError(f"no download URL for Bonn set(s) {', '.join(missing)}")
        source = "url"

    files: dict[str, Any] = {}
    all_ids: list[str] = []
    all_signals: list[np.ndarray] = []
    with atomic_dir(dest) as tmp:
        for letter in SET_ORDER:
            target = tmp / f"{letter}.zip"
            if mirror is not None:
                shutil.copyfile(sources[letter], target)
                origin = f"mirror:bonn-eeg/{sources[letter].name}"
            else:
                _download(urls[letter], target, timeout, retries, backoff_s)
                origin = urls[letter]
            ids, signals = read_bonn_zip(target, letter, expected_samples)
            if len(ids) != expected_segments:
                raise DataError(
                    f"{origin}: set {letter} has {len(ids)} segments, expected {expected_segments}"
                )
            files[target.name] = {
                "set": letter,
                "description": BONN_SETS[letter],
                "origin": origin,
                "sha256": sha256_file(target),
                "bytes": target.stat().st_size,
                "n_segments": len(ids),
                "n_samples": int(signals.shape[1]),
            }
            all_ids.extend(ids)
            all_signals.append(signals)
        manifest: dict[str, Any] = {
            "dataset": "epilepsy",
            "source": source,
            "fs": FS_HZ,
            "sets": list(SET_ORDER),
            "files": files,
            "n_segments": len(all_ids),
            "content_digest": content_digest(all_ids, np.concatenate(all_signals)),
        }
        write_json(tmp / "MANIFEST.json", manifest)
    if mirror is not None:
        logger.info("Bonn EEG copied from mirror %s", folder.resolve())
    return manifest
