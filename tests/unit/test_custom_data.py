"""Your own data: the four formats, bad rows rejected with reasons, the stages end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from trls_core.config import load_params
from trls_core.data.parquet import signals_array
from trls_core.datasets.custom import CustomParquetParams, build_custom_table
from trls_core.errors import ConfigError, DataError

RNG = np.random.default_rng(0)
#: a user's parquet section: every key given (the settings models hold no defaults)
PARQUET = {
    "format": "auto",
    "fs": None,
    "target_fs": None,
    "channels": None,
    "group_by": "record",
    "split_from_file": False,
    "val_frac": 0.15,
    "test_frac": 0.15,
    "seed": 42,
    "class_names": None,
    "min_keep_fraction": 0.9,
}


def parquet_params(**changes: object) -> CustomParquetParams:
    return CustomParquetParams.model_validate({**PARQUET, **changes})


def _windows(n: int = 30, length: int = 64) -> tuple[np.ndarray, list[str]]:
    return RNG.standard_normal((n, length)).astype(np.float32), ["sick" if i % 3 == 0 else "well" for i in range(n)]


def test_csv_with_ragged_rows_keeps_the_good_rows(tmp_path: Path) -> None:
    x, y = _windows()
    lines = ["record_id,label," + ",".join(f"s{i}" for i in range(64))]
    lines += [f"r{i // 2},{y[i]}," + ",".join(f"{v:.4f}" for v in x[i]) for i in range(30)]
    lines[5] = lines[5] + ",1.0"  # one field too many
    lines[9] = ",".join(lines[9].split(",")[:20])  # truncated row
    lines[12] = lines[12].replace(lines[12].split(",")[4], "", 1)  # empty cell -> NaN
    (tmp_path / "w.csv").write_text("\n".join(lines) + "\n")
    table, meta = build_custom_table(tmp_path, parquet_params(fs=128, min_keep_fraction=0.8))
    reasons = {r["record_id"]: r["reason"] for r in meta["rejected"]}
    assert "w.csv line 6: ragged row, 67 fields where the header has 66" in reasons["w.csv:6"]
    assert "ragged row, 20 fields" in reasons["w.csv:10"]
    assert any("non-finite" in r for r in reasons.values())
    assert table.num_rows == 27 and meta["tasks"]["label"]["classes"] == ["sick", "well"]
    with pytest.raises(DataError, match="only 27 of 30 windows usable"):
        build_custom_table(tmp_path, parquet_params(fs=128, min_keep_fraction=0.95))


def test_npz_with_channels_resampling_and_subject_grouping(tmp_path: Path) -> None:
    x = RNG.standard_normal((40, 2, 100)).astype(np.float32)
    np.savez(
        tmp_path / "d.npz",
        x=x,
        y=np.arange(40) % 2,
        fs=np.float64(200.0),
        subject_id=np.array([f"s{i % 8}" for i in range(40)]),
        channel_names=np.array(["Fz", "Cz"]),
    )
    table, meta = build_custom_table(tmp_path, parquet_params(channels=["Cz"], target_fs=100, group_by="subject"))
    sig = signals_array(table)
    assert sig.shape == (40, 1, 50) and meta["fs"] == 100 and meta["channels"] == ["Cz"]
    by_subject: dict[str, set[str]] = {}
    for s, split in zip(table["subject_id"].to_pylist(), table["split"].to_pylist()):
        by_subject.setdefault(s, set()).add(split)
    assert all(len(v) == 1 for v in by_subject.values())
    with pytest.raises(DataError, match=r"channel\(s\) \['Pz'\] not found"):
        build_custom_table(tmp_path, parquet_params(channels=["Pz"]))


def test_parquet_and_ucr_tsv(tmp_path: Path) -> None:
    x, y = _windows(20)
    (tmp_path / "pq").mkdir()
    pq.write_table(
        pa.table({"label": y, "signal": [list(r) for r in x], "fs": [50.0] * 20}), tmp_path / "pq" / "a.parquet"
    )
    table, meta = build_custom_table(tmp_path / "pq", parquet_params())
    assert table.num_rows == 20 and meta["fs"] == 50
    np.testing.assert_allclose(signals_array(table)[:, 0], x)

    ucr = tmp_path / "ucr"
    ucr.mkdir()
    for name, n in (("Toy_TRAIN.tsv", 30), ("Toy_TEST.tsv", 10)):
        (ucr / name).write_text(
            "".join(
                "\t".join([str(1 + i % 2)] + [f"{v:.3f}" for v in RNG.standard_normal(32)]) + "\n" for i in range(n)
            )
        )
    table, meta = build_custom_table(ucr, parquet_params(fs=1.0, split_from_file=True))
    splits = table["split"].to_pylist()
    assert splits.count("test") == 10 and splits.count("val") > 0 and meta["tasks"]["label"]["classes"] == ["1", "2"]


def test_mixed_formats_and_missing_fs_are_errors(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("label,s0,s1\n1,0.1,0.2\n")
    with pytest.raises(DataError, match="no sampling rate"):
        build_custom_table(tmp_path, parquet_params(min_keep_fraction=0))
    np.savez(tmp_path / "b.npz", x=np.zeros((1, 3)), y=np.zeros(1))
    with pytest.raises(DataError, match="mixed formats"):
        build_custom_table(tmp_path, parquet_params())


def test_custom_section_through_the_stages(tmp_path: Path, tiny_params: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from trls_core.data.tensors import load_meta, load_split
    from trls_core.stages._common import run_stage
    from trls_core.stages.fetch import fetch
    from trls_core.stages.parquet import build_parquet
    from trls_core.stages.spectrogram import build_spectrograms

    data = tmp_path / "mydata"
    data.mkdir()
    x = RNG.standard_normal((60, 1, 128)).astype(np.float32)
    y = np.arange(60) % 3
    x[y == 2] *= 4
    np.savez(data / "w.npz", x=x, y=y, record_id=np.array([f"r{i // 3}" for i in range(60)]))
    raw = yaml.safe_load(tiny_params.read_text())
    raw["mine"] = {
        "kind": "custom",
        "fetch": {"path": str(data)},
        "parquet": {**PARQUET, "fs": 64, "class_names": ["a", "b", "c"]},
        "spectrogram": {**raw["epilepsy"]["spectrogram"], "n_fft": 16, "hop": 8},
    }
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    root = tmp_path / "proj"
    for name, fn in (("fetch", fetch), ("parquet", build_parquet), ("spectrogram", build_spectrograms)):
        assert run_stage(name, fn, ["mine", "--params", str(params), "--root", str(root)]) == 0
    meta = load_meta(root / "data/spectrograms/mine")
    assert meta["tasks"]["label"]["classes"] == ["a", "b", "c"]
    assert load_split(root / "data/spectrograms/mine", "test", "label").x.shape[1:] == (1, 9, 17)
    assert json.loads((root / "data/parquet/mine/summary.json").read_text())["n_windows"] == 60

    raw["mine"]["parquet"]["fss"] = 1
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(ConfigError, match=r"mine\.parquet\.fss: unknown key"):
        load_params(params)
