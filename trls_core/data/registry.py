"""Which functions fetch and tabulate each dataset.

The DVC stages are generic; a dataset plugs in by adding one entry here and
one section in params.yaml. Imports are done lazily inside the functions so
that importing the registry stays cheap and side-effect free.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa

from trls_core.config import DatasetParams, data_mirror
from trls_core.errors import ConfigError


@dataclass(frozen=True)
class DatasetSpec:
    """How one dataset goes from its source to the Parquet contract."""

    name: str
    description: str
    fetch: Callable[[Path, DatasetParams], dict[str, Any]]
    to_table: Callable[[Path, DatasetParams], tuple[pa.Table, dict[str, Any]]]


def _fetch_epilepsy(dest: Path, params: DatasetParams) -> dict[str, Any]:
    from trls_core.data.sources import fetch_bonn

    return fetch_bonn(
        dest,
        mirror=data_mirror(params.fetch),
        timeout=params.fetch.timeout_s,
        retries=params.fetch.retries,
    )


def _table_epilepsy(raw_dir: Path, params: DatasetParams) -> tuple[pa.Table, dict[str, Any]]:
    from trls_core.data.bonn import read_bonn
    from trls_core.data.parquet import build_epilepsy_table

    p = params.parquet
    data = read_bonn(raw_dir)
    table, meta = build_epilepsy_table(
        data,
        window=p.window,
        protocol=p.protocol,
        val_frac=p.val_frac,
        test_frac=p.test_frac,
        seed=p.seed,
        stride=p.stride,
    )
    return table, meta


DATASETS: dict[str, DatasetSpec] = {
    "epilepsy": DatasetSpec(
        name="epilepsy",
        description="Bonn epilepsy EEG, 500 segments -> 11,500 windows of 178 samples",
        fetch=_fetch_epilepsy,
        to_table=_table_epilepsy,
    ),
}


def get_dataset(name: str) -> DatasetSpec:
    """The spec of ``name``; an unknown name fails with the list of known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r}: known datasets are {sorted(DATASETS)}") from None
