"""DVC stage `fetch`: raw files exactly as the source distributes them.

Reads params `<dataset>.fetch` (and env TRLS_DATA_MIRROR). Writes
data/raw/<dataset>/ atomically; the content is verified by parsing.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from trls_core.config import Params
from trls_core.datasets.registry import plugin_of
from trls_core.paths import raw_dir
from trls_core.stages._common import run_stage


def fetch(root: Path, dataset: str, params: Params) -> None:
    section = params.dataset(dataset)
    manifest = plugin_of(section).fetch(raw_dir(root, dataset), section)
    logging.info(
        "fetched %s from %s (content digest %s)",
        dataset,
        manifest.get("source"),
        str(manifest.get("content_digest", ""))[:16],
    )


if __name__ == "__main__":
    sys.exit(run_stage("fetch", fetch))
