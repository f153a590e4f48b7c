"""The settings of a dataset plugin's own downloads: bounds and pinned digests (``<dataset>.fetch``).

Shared by the plugins that download with :func:`trls_core.data.download.download`
(``epilepsy``, ``cinc2017``); their fetch models add where the files come
from. What each bound and pin does: :mod:`trls_core.data.download`,
:mod:`trls_core.data.checksums`; how to raise them: docs/usage.md.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from trls_core.settings.base import Strict

__all__ = ["DownloadSettings", "Sha256Hex"]

Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{64}$")]


class DownloadSettings(Strict):
    """``max_mb`` per file (MiB, checked against Content-Length and while streaming), ``total_timeout_s``
    per attempt (``timeout_s`` bounds each read only, which a server sending a byte every few seconds
    never exceeds), ``sha256``: pinned digest per file name (None: not pinned), ``content_sha256``: the
    pinned digest of the parsed data (any packing; None: not pinned)."""

    max_mb: float = Field(gt=0)
    total_timeout_s: float = Field(gt=0)
    sha256: dict[str, Sha256Hex | None]
    content_sha256: Sha256Hex | None
