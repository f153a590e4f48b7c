"""The data report of a windows Parquet: what `trls data describe` prints.

Written by the parquet stage as ``summary.json`` (+ ``rejected.json``) next
to ``windows.parquet`` and read back by the CLI, so the report a user sees
is the one the stage produced, not a recomputation that could drift.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa

from trls_core.errors import DataError

SPLITS = ("train", "val", "test")

#: What a reason says when a record failed in a way no check of the reader anticipated.
UNEXPECTED = "unexpected error"

#: Substrings of a rejection reason -> a short kind, for counting reasons.
_KINDS: tuple[tuple[str, str], ...] = (
    (UNEXPECTED, "unexpected_error"),
    ("unknown annotation", "unknown_annotation"),
    ("does not cover the recording", "hypnogram_coverage"),
    ("missing from the folder", "missing_files"),
    ("no label", "unlabelled"),
    ("unknown label", "unknown_label"),
    ("missing from the archive", "missing_files"),
    ("not listed in RECORDS", "not_in_records"),
    ("truncated or corrupt", "unreadable_mat"),
    ("unsupported .mat", "unreadable_mat"),
    ("'val' must", "unreadable_mat"),
    ("resampling", "bad_rate"),
    ("unreadable", "unreadable"),
    ("no variable 'val'", "unreadable_mat"),
    ("header", "header_mismatch"),
    ("shorter than one window", "too_short"),
    ("non-finite", "non_finite"),
    ("flat line", "flat_line"),
    ("channel(s)", "missing_channel"),
    ("ragged", "ragged_row"),
)


def unexpected_reason(where: str, exc: BaseException) -> str:
    """The rejection reason of a record that raised something other than :class:`DataError`.

    The record is rejected (and counted as ``unexpected_error`` in
    ``summary.json``) rather than failing the stage; the exception type and
    text stay in the reason so the reader can be taught that case.
    """
    text = str(exc).strip().replace("\n", " ")[:300]
    return f"{where}: {UNEXPECTED} {type(exc).__name__}: {text or '(no message)'}"


def reason_kind(reason: str) -> str:
    """A short category of a rejection reason (``other`` when none matches)."""
    for needle, kind in _KINDS:
        if needle in reason:
            return kind
    return "other"


def class_counts(table: pa.Table, tasks: dict[str, Any]) -> dict[str, dict[str, dict[str, int]]]:
    """``{task: {split: {class name: n windows}}}`` from the table's label columns."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    split = table["split"].to_pylist()
    for task, spec in tasks.items():
        classes = spec.get("classes") or []
        labels = table[spec["column"]].to_pylist()
        counter = Counter(zip(split, labels))
        out[task] = {
            s: {(classes[k] if 0 <= k < len(classes) else str(k)): counter.get((s, k), 0) for k in range(len(classes))}
            for s in SPLITS
        }
    return out


def build_summary(table: pa.Table, meta: dict[str, Any], rejected: list[dict[str, Any]], digest: str) -> dict[str, Any]:
    """The ``summary.json`` content: meta + counts per split + rejections + Parquet digest."""
    split = table["split"].to_pylist()
    records = Counter()
    for s, _ in set(zip(split, table["record_id"].to_pylist())):
        records[s] += 1
    tasks = meta.get("tasks") or {"default": {"column": "label", "classes": None}}
    kinds = Counter(reason_kind(r["reason"]) for r in rejected)
    # an entry with record_kept (e.g. MIT-BIH beats with an unknown symbol) skipped part of a record
    partial = sum(1 for r in rejected if r.get("record_kept"))
    return {
        **meta,
        "n_windows": table.num_rows,
        "windows_per_split": {s: split.count(s) for s in SPLITS},
        "records_per_split": {s: records.get(s, 0) for s in SPLITS},
        "class_counts": class_counts(table, tasks),
        "n_rejected": len(rejected),
        **({"n_rejected_records": len(rejected) - partial, "n_partially_kept": partial} if partial else {}),
        "rejected_by_kind": dict(sorted(kinds.items())),
        "parquet_sha256": digest,
    }


def load_summary(folder: Path) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """``summary.json`` and ``rejected.json`` of a parquet folder, with clear errors."""
    folder = Path(folder)
    path = folder / "summary.json"
    if not path.is_file():
        raise DataError(
            f"{path} not found: run `dvc repro parquet@{folder.name}` (or `trls data parquet {folder.name}`) first"
        )
    try:
        summary = json.loads(path.read_text())
        rej_path = folder / "rejected.json"
        rejected = json.loads(rej_path.read_text()) if rej_path.is_file() else []
    except (OSError, ValueError) as exc:
        raise DataError(f"{folder}: unreadable data report ({exc})") from None
    return summary, rejected


def format_summary(summary: dict[str, Any], rejected: list[dict[str, Any]], limit: int = 20) -> str:
    """Human-readable report (plain text, fixed-width tables)."""
    lines = [
        f"dataset   {summary.get('dataset')}  ({summary.get('dataset_version', '?')})",
        f"windows   {summary.get('n_windows')} of {summary.get('window')} samples at {summary.get('fs')} Hz, "
        f"protocol {summary.get('protocol')}",
        f"parquet   sha256 {summary.get('parquet_sha256')}",
        f"source    content digest {summary.get('source_content_digest')}",
        "",
        f"{'split':<6} {'records':>8} {'windows':>8}",
    ]
    windows = summary.get("windows_per_split") or summary.get("n_per_split") or {}  # older summaries
    for s in SPLITS:
        lines.append(f"{s:<6} {summary.get('records_per_split', {}).get(s, '?'):>8} {windows.get(s, '?'):>8}")
    for task, per_split in (summary.get("class_counts") or {}).items():
        classes = list(next(iter(per_split.values()), {}))
        lines += ["", f"task {task}: windows per class", f"{'split':<6} " + " ".join(f"{c:>12}" for c in classes)]
        for s in SPLITS:
            lines.append(f"{s:<6} " + " ".join(f"{per_split.get(s, {}).get(c, 0):>12}" for c in classes))
    partial = sum(1 for r in rejected if r.get("record_kept"))
    lines += [
        "",
        f"rejected  {len(rejected) - partial} record(s)"
        + (f", {partial} kept with part skipped" if partial else "")
        + (f" {summary.get('rejected_by_kind')}" if rejected else ""),
    ]
    for r in rejected[:limit]:
        lines.append(f"  {r['record_id']}: {r['reason']}")
    if len(rejected) > limit:
        lines.append(f"  ... {len(rejected) - limit} more in rejected.json")
    return "\n".join(lines)
