"""Where each stage reads and writes, relative to the project root.

One place for the layout of docs/design.md §3 so stages, CLI and tests agree.
"""

from __future__ import annotations

from pathlib import Path


def raw_dir(root: Path, dataset: str) -> Path:
    return root / "data" / "raw" / dataset


def parquet_dir(root: Path, dataset: str) -> Path:
    return root / "data" / "parquet" / dataset


def parquet_file(root: Path, dataset: str) -> Path:
    return parquet_dir(root, dataset) / "windows.parquet"


def spectrogram_dir(root: Path, dataset: str) -> Path:
    return root / "data" / "spectrograms" / dataset


def model_dir(root: Path, dataset: str, encoder: str, seed: int) -> Path:
    return root / "models" / dataset / f"{encoder}_seed{seed}"


def report_dir(root: Path, dataset: str) -> Path:
    return root / "reports" / dataset


def report_file(directory: Path, name: str, task: str) -> Path:
    """``metrics.json`` for the default binary task, ``metrics_<task>.json`` otherwise.

    One naming rule for the evaluation step and everything that reads its
    reports (flows, tracking), so the two never drift apart.
    """
    stem, dot, ext = name.rpartition(".")
    return directory / (name if task == "binary" else f"{stem}_{task}{dot}{ext}")
