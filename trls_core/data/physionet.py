"""Shared plumbing for datasets fetched from PhysioNet by a third-party client.

Sleep-EDF (through MNE) and MIT-BIH (through wfdb) are downloaded by
libraries that fail deep inside with unhelpful errors when there is no
network. :func:`require_network` checks first and fails with one clear line
that says what to do instead (a mirror); :func:`files_digest` is the
manifest digest for file sets whose bytes *are* the distributed content.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterable
from pathlib import Path

from trls_core.errors import NetworkError

PHYSIONET_HOST = "physionet.org"


def require_network(dataset: str, section: str, host: str = PHYSIONET_HOST, timeout: float = 10.0) -> None:
    """Fail with a clear :class:`NetworkError` when ``host`` cannot be reached on port 443."""
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return
    except OSError as exc:
        raise NetworkError(
            f"{dataset}: no mirror given ({section}.fetch.mirror, data.mirror or TRLS_DATA_MIRROR) and {host} is "
            f"unreachable ({exc}); fetch on a machine with internet or point to a mirror folder"
        ) from None


def files_digest(files: Iterable[Path], tag: str) -> str:
    """sha256 over (base name, size, bytes) of ``files`` in name order."""
    h = hashlib.sha256(f"{tag}\n".encode())
    for path in sorted(files, key=lambda p: p.name):
        h.update(path.name.encode() + b"\0" + path.stat().st_size.to_bytes(8, "little"))
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()
