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

from trls_core.config import (
    Cinc2017Params,
    CustomDatasetParams,
    DatasetParams,
    DatasetSection,
    MitdbParams,
    SleepEdfParams,
    data_mirror,
)
from trls_core.errors import ConfigError


@dataclass(frozen=True)
class DatasetSpec:
    """How one dataset goes from its source to the Parquet contract."""

    name: str
    description: str
    fetch: Callable[[Path, Any], dict[str, Any]]
    to_table: Callable[[Path, Any], tuple[pa.Table, dict[str, Any]]]


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


def _fetch_cinc2017(dest: Path, params: Cinc2017Params) -> dict[str, Any]:
    from trls_core.data.cinc2017 import fetch_cinc2017

    f = params.fetch
    return fetch_cinc2017(
        dest,
        mirror=data_mirror(f),
        url=f.url,
        expected_records=f.expected_records,
        timeout=f.timeout_s,
        retries=f.retries,
    )


def _table_cinc2017(raw_dir: Path, params: Cinc2017Params) -> tuple[pa.Table, dict[str, Any]]:
    from trls_core.data.cinc2017 import ZIP_NAME
    from trls_core.data.cinc2017_table import build_cinc2017_table

    return build_cinc2017_table(raw_dir / ZIP_NAME, params.parquet)


def _fetch_sleepedf(dest: Path, params: SleepEdfParams) -> dict[str, Any]:
    from trls_core.data.sleepedf import fetch_sleepedf

    f = params.fetch
    return fetch_sleepedf(dest, mirror=data_mirror(f), subjects=f.subjects, recordings=f.recordings,
                          timeout=f.timeout_s)


def _table_sleepedf(raw_dir: Path, params: SleepEdfParams) -> tuple[pa.Table, dict[str, Any]]:
    from trls_core.data.sleepedf_table import build_sleepedf_table

    return build_sleepedf_table(raw_dir, params.parquet)


def _fetch_mitdb(dest: Path, params: MitdbParams) -> dict[str, Any]:
    from trls_core.data.mitdb import fetch_mitdb

    f = params.fetch
    return fetch_mitdb(dest, mirror=data_mirror(f), records=f.records, expected_records=f.expected_records,
                       timeout=f.timeout_s)


def _table_mitdb(raw_dir: Path, params: MitdbParams) -> tuple[pa.Table, dict[str, Any]]:
    from trls_core.data.mitdb_table import build_mitdb_table

    return build_mitdb_table(raw_dir, params.parquet)


def _fetch_custom(dest: Path, params: CustomDatasetParams) -> dict[str, Any]:
    from trls_core.data.custom import fetch_custom

    return fetch_custom(dest, Path(params.fetch.path))


def _table_custom(raw_dir: Path, params: CustomDatasetParams) -> tuple[pa.Table, dict[str, Any]]:
    from trls_core.data.custom import build_custom_table

    return build_custom_table(raw_dir, params.parquet)


CUSTOM = DatasetSpec(
    name="custom",
    description="your own windows + labels (Parquet, CSV, NPZ or UCR .tsv) from a folder",
    fetch=_fetch_custom,
    to_table=_table_custom,
)

DATASETS: dict[str, DatasetSpec] = {
    "epilepsy": DatasetSpec(
        name="epilepsy",
        description="Bonn epilepsy EEG, 500 segments -> 11,500 windows of 178 samples",
        fetch=_fetch_epilepsy,
        to_table=_table_epilepsy,
    ),
    "cinc2017": DatasetSpec(
        name="cinc2017",
        description="PhysioNet/CinC 2017 single-lead ECG, 8,528 records, N/A/O/~",
        fetch=_fetch_cinc2017,
        to_table=_table_cinc2017,
    ),
    "sleepedf": DatasetSpec(
        name="sleepedf",
        description="PhysioNet Sleep-EDF (sleep-cassette) EEG, 30 s epochs, W/N1/N2/N3/REM",
        fetch=_fetch_sleepedf,
        to_table=_table_sleepedf,
    ),
    "mitdb": DatasetSpec(
        name="mitdb",
        description="PhysioNet MIT-BIH Arrhythmia ECG, beat-centred windows, AAMI N/S/V/F/Q",
        fetch=_fetch_mitdb,
        to_table=_table_mitdb,
    ),
}


def get_dataset(name: str, section: DatasetSection | None = None) -> DatasetSpec:
    """The spec of ``name``; an unknown name fails with the list of known ones.

    A user dataset (a ``kind: custom`` section) gets the generic reader.
    """
    if isinstance(section, CustomDatasetParams):
        return CUSTOM
    try:
        return DATASETS[name]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r}: known datasets are {sorted(DATASETS)}") from None
