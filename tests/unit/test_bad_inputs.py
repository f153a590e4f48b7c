"""Issue 19 item 1: each bad input found by reading or reproducing fails naming its file / record / key.

One test per case: a WFDB header or ``.mat`` that crashed the CinC stage,
the custom formats' holes, split settings that leave nothing, corrupt stage
outputs, and overrides that skipped validation. A bad *record* is rejected
with its reason (the stage fails only below ``min_keep_fraction``); every
other bad input is a :class:`TrlsError` (exit 2 from the CLI).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from tests.cinc_synth import good_records, hea_text, mat_bytes, write_archive
from trls_core.config import load_params
from trls_core.data.report import reason_kind
from trls_core.data.tensors import load_meta, load_records
from trls_core.data.wfdb_mat import parse_header, read_mat_val, resample
from trls_core.datasets.cinc2017 import Cinc2017ParquetParams, build_cinc2017_table
from trls_core.datasets.custom import CustomParquetParams, build_custom_table
from trls_core.errors import ConfigError, DataError
from trls_core.stages.evaluate.preconditions import check_splits

ROOT = Path(__file__).resolve().parents[2]
PARAMS = ROOT / "params.yaml"


# ----------------------------------------------------------------- WFDB header and .mat
def _header(gain: str = "1000/mV", fs: str = "300") -> str:
    return f"A00001 1 {fs} 9000\nA00001.mat 16+24 {gain} 16 0 -127 0 0 ECG\n"


@pytest.mark.parametrize("gain", ["--", "e", ".", "+", "1e", "nan/mV", "1e400/mV"])
def test_a_header_gain_that_is_no_number_names_the_file_and_field(gain: str) -> None:
    with pytest.raises(DataError, match=r"A00001\.hea: header field gain is malformed"):
        parse_header(_header(gain=gain), "A00001.hea")


@pytest.mark.parametrize("fs", ["inf", "nan", "-inf", "1e400", "-300"])
def test_a_sampling_rate_that_is_not_positive_and_finite_names_the_file_and_field(fs: str) -> None:
    with pytest.raises(DataError, match=r"A00001\.hea: header field fs must be a positive finite number"):
        parse_header(_header(fs=fs), "A00001.hea")


@pytest.mark.parametrize("fs", [3e6, 1e-4])
def test_an_implausible_rate_is_refused_before_the_resampler_allocates(fs: float) -> None:
    with pytest.raises(DataError, match=r"A00001\.hea: resampling .* \(beyond 1/1000\.\.1000\)"):
        resample(np.ones((1, 9000), np.float32), fs, 300.0, "A00001.hea")
    with pytest.raises(DataError, match="x.csv: sampling rate must be a positive finite number"):
        resample(np.ones((1, 10), np.float32), float("nan"), 300.0, "x.csv")


def _mat_v73() -> bytes:
    head = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan 1 00:00:00 2024 HDF5 schema 1.00 ."
    return head.ljust(116, b" ") + b"\0" * 8 + b"\x00\x02IM" + b"\x89HDF\r\n" + b"\0" * 64


def test_a_matlab_v73_file_names_the_file_and_says_what_to_save_instead() -> None:
    with pytest.raises(DataError, match=r"A00001\.mat: unsupported \.mat version .* MATLAB v4 or v5"):
        read_mat_val(_mat_v73(), "A00001.mat")


def test_a_val_of_complex_numbers_is_refused_as_not_samples() -> None:
    from scipy.io import savemat

    buf = io.BytesIO()
    savemat(buf, {"val": np.ones((1, 5)) + 1j}, format="5")
    with pytest.raises(DataError, match=r"A00001\.mat: 'val' must hold real numbers"):
        read_mat_val(buf.getvalue(), "A00001.mat")


CINC = {
    "window": 1500,
    "stride": None,
    "pad": "end",
    "target_fs": 300,
    "channels": ["ECG"],
    "val_frac": 0.2,
    "test_frac": 0.2,
    "seed": 0,
    "flat_std_mv": 0.001,
    "min_keep_fraction": 0.5,
    "chunk_records": 4,
}


def test_bad_cinc_records_are_rejected_with_their_reason_and_the_rest_kept(tmp_path: Path) -> None:
    records = good_records(6)
    records["A00002"] = ("N", records["A00002"][1], hea_text("A00002", 4500, 0).replace("1000/mV", "--/mV"))
    records["A00003"] = ("A", records["A00003"][1], hea_text("A00003", 4500, 0, fs=3_000_000))
    records["A00004"] = ("O", _mat_v73(), records["A00004"][2])
    zip_path = write_archive(tmp_path / "training2017.zip", records)
    table, meta = build_cinc2017_table(zip_path, Cinc2017ParquetParams(**CINC))
    reasons = {r["record_id"]: r["reason"] for r in meta["rejected"]}
    assert sorted(reasons) == ["A00002", "A00003", "A00004"]
    assert "A00002.hea: header field gain is malformed: '--/mV'" in reasons["A00002"]
    assert "A00003.hea: resampling 3e+06 Hz -> 300 Hz" in reasons["A00003"]
    assert "A00004.mat: unsupported .mat version" in reasons["A00004"]
    assert set(table["record_id"].to_pylist()) == {"A00001", "A00005", "A00006"}
    below = r"only 3 of 6 labelled records usable \(50\.0% < cinc2017\.parquet\.min_keep_fraction 90%\)"
    with pytest.raises(DataError, match=below):
        build_cinc2017_table(zip_path, Cinc2017ParquetParams(**{**CINC, "min_keep_fraction": 0.9}))


def test_any_other_exception_from_one_record_rejects_that_record_not_the_stage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import trls_core.datasets.cinc2017 as cinc

    real = cinc.load_record

    def flaky(arc, rid, p):  # noqa: ANN001, ANN202 - the plugin's own signature
        if rid == "A00003":
            raise ZeroDivisionError("division by zero")
        return real(arc, rid, p)

    monkeypatch.setattr(cinc, "load_record", flaky)
    zip_path = write_archive(tmp_path / "training2017.zip", good_records(4))
    table, meta = build_cinc2017_table(zip_path, Cinc2017ParquetParams(**CINC))
    (rejected,) = meta["rejected"]
    assert rejected["record_id"] == "A00003"
    assert "training2017.zip: record A00003: unexpected error ZeroDivisionError: division by zero" in rejected["reason"]
    assert reason_kind(rejected["reason"]) == "unexpected_error"
    assert table.num_rows > 0 and "A00003" not in table["record_id"].to_pylist()


# ----------------------------------------------------------------- custom formats
PARQUET = {
    "format": "auto",
    "fs": None,
    "target_fs": None,
    "channels": None,
    "group_by": "window",
    "split_from_file": False,
    "val_frac": 0.2,
    "test_frac": 0.2,
    "seed": 0,
    "class_names": None,
    "min_keep_fraction": 0.5,
}
RNG = np.random.default_rng(0)


def _params(**changes: object) -> CustomParquetParams:
    return CustomParquetParams.model_validate({**PARQUET, **changes})


def _csv(path: Path, id_columns: dict[str, list[str]], n: int = 20, length: int = 8) -> None:
    head = ["label", *id_columns, *[f"s{i}" for i in range(length)]]
    rows = [
        [str(i % 2), *[v[i] for v in id_columns.values()], *[f"{x:.3f}" for x in RNG.standard_normal(length)]]
        for i in range(n)
    ]
    path.write_text("\n".join(",".join(r) for r in [head, *rows]) + "\n")


def test_csv_n_channels_zero_rejects_the_rows_naming_file_line_and_column(tmp_path: Path) -> None:
    _csv(tmp_path / "w.csv", {"n_channels": ["0"] * 3 + ["1"] * 17})
    table, meta = build_custom_table(tmp_path, _params(fs=100))
    assert table.num_rows == 17
    assert meta["rejected"][0]["reason"] == "w.csv line 2: n_channels must be a positive integer, got '0'"


def test_csv_non_numeric_fs_rejects_the_row_naming_the_column(tmp_path: Path) -> None:
    _csv(tmp_path / "w.csv", {"fs": ["abc"] + ["100"] * 19})
    table, meta = build_custom_table(tmp_path, _params())
    assert table.num_rows == 19 and meta["fs"] == 100
    assert meta["rejected"][0]["reason"] == "w.csv line 2: fs must be a positive finite number, got 'abc'"


@pytest.mark.parametrize(
    ("fs", "message"),
    [
        (np.array([100.0, 200.0]), r"array 'fs' must be one number, got dtype float64 shape \(2,\)"),
        (np.array("abc"), r"array 'fs' must be one number"),
        (np.float64(np.inf), r"array 'fs' must be a positive finite number, got inf"),
    ],
)
def test_npz_fs_that_is_not_one_rate_names_the_file_and_array(tmp_path: Path, fs: np.ndarray, message: str) -> None:
    np.savez(tmp_path / "d.npz", x=RNG.standard_normal((20, 8)), y=np.arange(20) % 2, fs=fs)
    with pytest.raises(DataError, match=rf"d\.npz: {message}"):
        build_custom_table(tmp_path, _params())


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((20, 0))}, r"array 'x' has empty windows"),
        ({"x": np.ones((20, 8)) + 1j}, r"array 'x' must hold real numbers, got dtype complex128"),
        ({"y": np.zeros((20, 2))}, r"x must be \(N, L\) or \(N, C, L\) and y \(N,\)"),
        ({"record_id": np.arange(3)}, r"array 'record_id' must be 1-D with one value per window \(20\)"),
        ({"channel_names": np.array(["a", "b"])}, r"array 'channel_names' must name the 1 channel"),
    ],
)
def test_npz_arrays_of_the_wrong_shape_or_type_name_the_file_and_array(
    tmp_path: Path, arrays: dict[str, np.ndarray], message: str
) -> None:
    base = {"x": RNG.standard_normal((20, 8)), "y": np.arange(20) % 2, "fs": np.float64(100)}
    np.savez(tmp_path / "d.npz", **(base | arrays))
    with pytest.raises(DataError, match=rf"d\.npz: {message}"):
        build_custom_table(tmp_path, _params())


def test_ucr_lines_without_samples_are_rejected_as_empty_windows(tmp_path: Path) -> None:
    (tmp_path / "X.tsv").write_text("".join(f"{i % 2}\n" for i in range(10)))  # labels, no samples
    with pytest.raises(DataError, match=r"no usable window .*X\.tsv line 1: empty window \(no samples\)"):
        build_custom_table(tmp_path, _params(fs=100))


def test_nan_in_a_window_is_rejected_naming_where_it_came_from(tmp_path: Path) -> None:
    x = RNG.standard_normal((20, 8))
    x[5, 2] = np.nan
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(20) % 2, fs=np.float64(100), record_id=np.arange(20).astype(str))
    _, meta = build_custom_table(tmp_path, _params())
    assert meta["rejected"] == [{"record_id": "5", "reason": "d.npz window 5: 1 non-finite sample(s) (NaN/inf)"}]


def test_damaged_files_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "w.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match=r"w\.parquet: unreadable Parquet"):
        build_custom_table(tmp_path, _params())
    (tmp_path / "w.parquet").unlink()
    (tmp_path / "w.csv").write_bytes(b"label,s0\n1,\xff\xfe\n")
    with pytest.raises(DataError, match=r"w\.csv: not UTF-8 text"):
        build_custom_table(tmp_path, _params(fs=100))


def test_an_empty_split_fails_at_the_parquet_stage_naming_the_settings(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=RNG.standard_normal((3, 8)), y=np.arange(3) % 2, fs=np.float64(100))
    with pytest.raises(DataError, match=r"split\(s\) \['val', 'test'\] would be empty .*parquet\.val_frac 0\.1"):
        build_custom_table(tmp_path, _params(val_frac=0.1, test_frac=0.1))


def test_an_unreachable_target_rate_names_the_setting(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=RNG.standard_normal((20, 8)), y=np.arange(20) % 2, fs=np.float64(100))
    with pytest.raises(DataError, match=r"parquet\.fs 100 -> parquet\.target_fs.*resampling 100 Hz -> 1e\+06 Hz"):
        build_custom_table(tmp_path, _params(target_fs=1e6))


# ----------------------------------------------------------------- settings and overrides
def test_val_plus_test_fraction_of_one_or_more_is_a_config_error_naming_both_keys() -> None:
    sets = ["cinc2017.parquet.val_frac=0.5", "cinc2017.parquet.test_frac=0.5"]
    with pytest.raises(ConfigError, match=r"cinc2017\.parquet: val_frac \+ test_frac must be < 1, got 0\.5 \+ 0\.5"):
        load_params(PARAMS, None, sets)


@pytest.mark.parametrize("value", [".inf", ".nan", "-.inf"])
def test_inf_and_nan_settings_are_refused_naming_the_key(value: str) -> None:
    with pytest.raises(ConfigError, match=r"pretrain\.lr: Input should be a finite number"):
        load_params(PARAMS, None, [f"pretrain.lr={value}"])


def test_set_profile_is_refused_instead_of_silently_ignored() -> None:
    with pytest.raises(ConfigError, match=r"--set profile / profiles: choose a profile with --profile"):
        load_params(PARAMS, None, ["profile=paper"])


def test_a_params_file_whose_profiles_are_not_a_mapping_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("profile: small\nprofiles: 3\n")
    with pytest.raises(ConfigError, match=rf"{path}: profiles: expected a mapping"):
        load_params(path)


def test_cli_overrides_go_through_the_settings_models(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from trls_core.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["pretrain", "--epochs", "0", "--params", str(PARAMS), "--root", str(tmp_path)])
    assert result.exit_code == 2 and "pretrain.epochs: Input should be greater than 0" in result.output
    result = runner.invoke(app, ["evaluate", "--task", "3", "--params", str(PARAMS), "--root", str(tmp_path)])
    assert result.exit_code == 2 and "meta.json not found" in result.output  # '3' reached the settings as a string
    args = ["embed", "in.npz", "out.parquet", "--model", "models:/x@y", "--fs", "nan", "--root", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "--fs must be a positive finite number" in result.output


# ----------------------------------------------------------------- stage outputs read back
def test_a_truncated_meta_json_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "meta.json").write_text('{"dataset": "epilepsy", "tasks": {')
    with pytest.raises(DataError, match=r"meta\.json: unreadable JSON .*truncated or edited"):
        load_meta(tmp_path)
    (tmp_path / "meta.json").write_text("[1, 2]")
    with pytest.raises(DataError, match=r"meta\.json: expected a JSON object, got list"):
        load_meta(tmp_path)
    (tmp_path / "records.json").write_text('{"train": ')
    with pytest.raises(DataError, match=r"records\.json: unreadable JSON"):
        load_records(tmp_path, "train")


def test_corrupt_encoder_files_name_the_file(tmp_path: Path) -> None:
    from trls_core.models.loading import load_encoder

    save_file({"w": torch.zeros(2)}, str(tmp_path / "encoder.safetensors"))
    (tmp_path / "encoder.json").write_text('{"config": {"encoder": "tfrnn"')
    with pytest.raises(DataError, match=r"encoder\.json"):
        load_encoder(tmp_path)
    (tmp_path / "encoder.json").write_text(
        json.dumps({"config": {"encoder": "cnn", "in_channels": 1, "kwargs": {"width": 4, "depth": 1, "rep_dim": 4}}})
    )
    (tmp_path / "encoder.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{truncated")
    with pytest.raises(DataError, match=r"encoder\.safetensors"):
        load_encoder(tmp_path)


def _splits(y_train: list[int], n_val: int = 4, n_test: int = 4) -> dict[str, torch.Tensor]:
    return {
        "y_train": torch.tensor(y_train),
        "y_val": torch.zeros(n_val, dtype=torch.long),
        "y_test": torch.zeros(n_test, dtype=torch.long),
    }


def test_an_empty_validation_split_names_the_file_and_the_setting(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"val\.safetensors: split 'val' has no windows; .*cinc2017\.parquet\.val_frac"):
        check_splits(_splits([0, 1], n_val=0), ["N", "A"], tmp_path, "cinc2017", "af")
    with pytest.raises(DataError, match=r"test\.safetensors: split 'test' has no windows"):
        check_splits(_splits([0, 1], n_test=0), ["N", "A"], tmp_path, "cinc2017", "af")


def test_a_one_class_train_split_names_the_task_instead_of_a_solver_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"train\.safetensors: evaluate\.task 'af': the train split holds only class"):
        check_splits(_splits([1, 1, 1]), ["N", "A"], tmp_path, "cinc2017", "af")
    check_splits(_splits([0, 1, 1]), ["N", "A"], tmp_path, "cinc2017", "af")  # two classes: fine


def test_a_mat_with_good_header_but_wrong_variable_is_still_a_named_rejection() -> None:
    with pytest.raises(DataError, match=r"A00001\.mat: \.mat has no variable 'val'"):
        read_mat_val(mat_bytes(np.ones(5, np.int16)).replace(b"val", b"xyz"), "A00001.mat")
