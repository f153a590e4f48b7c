"""DVC stage `parquet`: raw files -> data/parquet/<dataset>/windows.parquet.

Reads params `<dataset>.parquet`. One row per window with labels, record ids
and the split (protocol from params). Next to it: ``summary.json`` (counts
per split and class, rejections by kind, Parquet digest; what
`trls data describe` prints) and ``rejected.json`` (record, reason).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from trls_core.config import Params
from trls_core.data.parquet import write_windows
from trls_core.data.report import build_summary
from trls_core.datasets.registry import plugin_of
from trls_core.io import atomic_dir
from trls_core.litter import remove_litter
from trls_core.paths import parquet_dir, raw_dir
from trls_core.stages._common import run_stage


def build_parquet(root: Path, dataset: str, params: Params) -> None:
    src = raw_dir(root, dataset)
    manifest_path = src / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    section = params.dataset(dataset)
    table, meta = plugin_of(section).table(src, section)
    rejected: list[dict[str, str]] = list(meta.pop("rejected", []))
    meta = {"dataset": dataset, "source_content_digest": manifest.get("content_digest"), **meta}
    remove_litter(parquet_dir(root, dataset).parent, dataset)  # a killed run's temp folder (logged)
    with atomic_dir(parquet_dir(root, dataset)) as tmp:
        digest = write_windows(table, tmp / "windows.parquet", meta)
        summary = build_summary(table, meta, rejected, digest)
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
        (tmp / "rejected.json").write_text(json.dumps(rejected, indent=1) + "\n")
    logging.info(
        "%s: %d windows, %d rejected record(s) -> %s (sha256 %s)",
        dataset,
        table.num_rows,
        len(rejected),
        parquet_dir(root, dataset),
        digest[:16],
    )


if __name__ == "__main__":
    sys.exit(run_stage("parquet", build_parquet))
