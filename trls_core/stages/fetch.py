"""DVC stage `fetch`: raw files exactly as the source distributes them.

Reads params `<dataset>.fetch` and `data.mirror` (and env TRLS_DATA_MIRROR).
Writes data/raw/<dataset>/ atomically; the content is verified by parsing,
downloads are bounded and checked against pinned digests
(:mod:`trls_core.data.download`, :mod:`trls_core.data.checksums`). First it
removes what a killed fetch of this dataset left in data/raw/ (partial
downloads in a temp folder: :mod:`trls_core.litter`).

The source, first that applies: ``TRLS_DATA_MIRROR`` when set (empty: the
official download), the dataset's own ``fetch.mirror``, ``data.mirror`` where
that folder exists, else the official download. A download that cannot
reach its source fails with one line that says how to point at a mirror.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from trls_core.config import Params
from trls_core.datasets.registry import DatasetSettings, plugin_of
from trls_core.errors import DataError, NetworkError
from trls_core.litter import remove_litter
from trls_core.paths import raw_dir
from trls_core.stages._common import run_stage

MIRROR_ENV = "TRLS_DATA_MIRROR"


def with_default_mirror(root: Path, dataset: str, section: DatasetSettings, mirror: str | None) -> DatasetSettings:
    """``section`` with ``data.mirror`` as its fetch mirror where nothing more specific is set and the folder exists."""
    fetch_section = getattr(section, "fetch", None)
    if (
        not mirror
        or MIRROR_ENV in os.environ
        or fetch_section is None
        or not hasattr(fetch_section, "mirror")
        or fetch_section.mirror is not None
    ):
        return section
    folder = Path(mirror).expanduser()
    folder = folder if folder.is_absolute() else Path(root) / folder
    if not folder.is_dir():
        logging.info("data.mirror %s not found: fetching %s from its official source", folder, dataset)
        return section
    return section.model_copy(update={"fetch": fetch_section.model_copy(update={"mirror": str(folder.resolve())})})


def fetch(root: Path, dataset: str, params: Params) -> None:
    if MIRROR_ENV in os.environ:
        logging.info(
            "%s=%r overrides data.mirror for this run (DVC tracks data.mirror, not the variable)",
            MIRROR_ENV,
            os.environ[MIRROR_ENV],
        )
    dest = raw_dir(root, dataset)
    remove_litter(dest.parent, dest.name)  # each removal is logged
    remove_litter(dest)
    section = with_default_mirror(root, dataset, params.dataset(dataset), params.data.mirror)
    try:
        manifest = plugin_of(section).fetch(dest, section)
    except NetworkError as exc:
        raise DataError(
            f"{dataset}: {exc}. No network? Point at a local copy of the data instead: "
            f"{MIRROR_ENV}=/path/to/mirror make run, or data.mirror in params.yaml "
            f"(the folder's layout: docs/datasets/{plugin_of(section).name}.md)"
        ) from None
    logging.info(
        "fetched %s from %s (content digest %s)",
        dataset,
        manifest.get("source"),
        str(manifest.get("content_digest", ""))[:16],
    )


if __name__ == "__main__":
    sys.exit(run_stage("fetch", fetch))
