"""Sleep-EDF reader on tiny EDF + EDF+ hypnogram files with the PhysioNet names.

30 s epochs, stage labels (3 and 4 -> N3, ``?``/movement dropped), wake
trimming, channels by name, resampling, subject-wise splits, and each bad
input: an EDF without the requested channel, a hypnogram that does not
cover the recording, an unknown annotation, a missing hypnogram; the build
fails only below ``min_keep_fraction``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.edf_synth import EPOCH_S, FS, runs, write_recording
from tests.settings import section
from trls_core.data.parquet import signals_array
from trls_core.data.report import reason_kind
from trls_core.datasets.sleepedf import build_sleepedf_table
from trls_core.datasets.sleepedf.source import fetch_sleepedf, pair_files, parse_name
from trls_core.errors import DataError

P = section("sleepedf.parquet", trim_wake_min=None, min_keep_fraction=0.5, val_frac=0.25, test_frac=0.25)
N = int(EPOCH_S * FS)


def _rejected(meta: dict) -> dict[str, str]:
    return {r["record_id"]: r["reason"] for r in meta["rejected"]}


def _rows(table, rid: str):  # noqa: ANN001, ANN202 - pyarrow table in, filtered table out
    return table.filter(np.asarray(table["record_id"].to_pylist()) == rid)


def test_names_follow_physionet() -> None:
    f = parse_name(Path("SC4001E0-PSG.edf"))
    assert f is not None and (f.record_id, f.subject_id, f.night, f.kind) == ("SC4001", "SC400", 1, "PSG")
    h = parse_name(Path("x/SC4012EC-Hypnogram.edf"))
    assert h is not None and (h.record_id, h.subject_id, h.kind) == ("SC4012", "SC401", "Hypnogram")
    assert parse_name(Path("notes.edf")) is None and parse_name(Path("SC4001E0-PSG.txt")) is None


def test_epochs_labels_and_values(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = "WW1234R?MW2"
    psg, _ = write_recording(tmp_path, 0, 1, labels, rng)
    write_recording(tmp_path, 1, 1, "W12R", rng)
    table, meta = build_sleepedf_table(tmp_path, P)
    assert meta["rejected"] == [] and meta["tasks"] == {
        "stage": {"column": "label", "classes": ["W", "N1", "N2", "N3", "REM"]}
    }
    rec = _rows(table, "SC4001")
    # '?' and movement epochs dropped; stages 3 and 4 both N3
    assert rec["label_name"].to_pylist() == ["W", "W", "N1", "N2", "N3", "N3", "REM", "W", "N2"]
    assert rec["epoch"].to_pylist() == [0, 1, 2, 3, 4, 5, 6, 9, 10]
    assert rec["window_id"][0].as_py() == "SC4001_0000" and set(rec["subject_id"].to_pylist()) == {"SC400"}
    x = signals_array(rec)
    assert x.shape == (9, 1, N) and x.dtype == np.float32 and set(rec["fs"].to_pylist()) == {100.0}
    import mne

    ref = mne.io.read_raw_edf(psg, preload=True, verbose="error").get_data(picks=["EEG Fpz-Cz"], units="uV")[0]
    np.testing.assert_allclose(x[7, 0], ref[9 * N : 10 * N], rtol=1e-5, atol=1e-3)  # epoch 9, in µV


def test_channels_by_name_and_resampling(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    write_recording(tmp_path, 0, 1, "W12R", rng, fs=200)  # another rate -> resampled to 100 Hz
    write_recording(tmp_path, 1, 1, "W12R", rng)
    p = P.model_copy(update={"channels": ["EEG Pz-Oz", "EEG Fpz-Cz"]})
    table, meta = build_sleepedf_table(tmp_path, p)
    x = signals_array(table)
    assert x.shape == (8, 2, N) and meta["channels"] == ["EEG Pz-Oz", "EEG Fpz-Cz"]
    # the 10 Hz rhythm survives resampling: its spectral peak stays at 10 Hz
    spec = np.abs(np.fft.rfft(x[0, 0]))
    assert abs(np.fft.rfftfreq(N, 1 / 100)[spec.argmax()] - 10.0) < 0.1


def test_wake_trimmed_around_sleep(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    write_recording(tmp_path, 0, 1, "WWWWW12RWWWWW", rng)
    table, _ = build_sleepedf_table(tmp_path, P.model_copy(update={"trim_wake_min": 1.0}))  # 2 epochs of wake each side
    assert table["epoch"].to_pylist() == [3, 4, 5, 6, 7, 8, 9]
    full, _ = build_sleepedf_table(tmp_path, P)
    assert full.num_rows == 13


def test_missing_channel_is_rejected_and_the_rest_kept(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    write_recording(tmp_path, 0, 1, "W12R", rng)
    write_recording(tmp_path, 1, 1, "W12R", rng, channels=("EEG Pz-Oz",))
    table, meta = build_sleepedf_table(tmp_path, P)
    reason = _rejected(meta)["SC4011"]
    assert "SC4011E0-PSG.edf" in reason and "['EEG Fpz-Cz'] not in the record" in reason
    assert reason_kind(reason) == "missing_channel" and set(table["record_id"].to_pylist()) == {"SC4001"}


def test_hypnogram_not_covering_the_recording_is_rejected(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    write_recording(tmp_path, 0, 1, "W12R", rng)
    write_recording(tmp_path, 1, 1, "W12RW12R", rng, hypnogram=runs("W12R"))  # scores half the night
    write_recording(tmp_path, 2, 1, "W12R", rng, hypnogram=[(3600.0, 120.0, "Sleep stage 2")])  # after the end
    table, meta = build_sleepedf_table(tmp_path, P.model_copy(update={"min_keep_fraction": 0.3}))
    rej = _rejected(meta)
    assert "SC4011EC-Hypnogram.edf: hypnogram does not cover the recording (4 of 8 epochs, 50%" in rej["SC4011"]
    assert "(0 of 4 epochs" in rej["SC4021"]
    assert {reason_kind(r) for r in rej.values()} == {"hypnogram_coverage"}
    assert set(table["record_id"].to_pylist()) == {"SC4001"}


def test_unknown_annotation_is_rejected(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    write_recording(tmp_path, 0, 1, "W12R", rng)
    write_recording(tmp_path, 1, 1, "W12R", rng, hypnogram=runs("W1") + [(60.0, 60.0, "Sleep stage X")])
    table, meta = build_sleepedf_table(tmp_path, P)
    reason = _rejected(meta)["SC4011"]
    assert "unknown annotation 'Sleep stage X' at onset 60 s" in reason and reason_kind(reason) == "unknown_annotation"
    assert set(table["record_id"].to_pylist()) == {"SC4001"}


def test_missing_hypnogram_and_off_grid_annotation(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    write_recording(tmp_path, 0, 1, "W12R", rng)
    _, hyp = write_recording(tmp_path, 1, 1, "W12R", rng)
    hyp.unlink()
    write_recording(
        tmp_path, 2, 1, "W12R", rng, hypnogram=[(0.0, 45.0, "Sleep stage W"), (45.0, 75.0, "Sleep stage 1")]
    )
    table, meta = build_sleepedf_table(tmp_path, P.model_copy(update={"min_keep_fraction": 0.3}))
    rej = _rejected(meta)
    assert "no hypnogram file for night SC4011" in rej["SC4011"] and reason_kind(rej["SC4011"]) == "missing_files"
    assert "not on the 30 s epoch grid" in rej["SC4021"]


def test_splits_by_subject_seeded(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    for subject in range(8):
        for night in (1, 2):
            write_recording(tmp_path, subject, night, "W2", rng)
    table, meta = build_sleepedf_table(tmp_path, P)
    per_subject: dict[str, set[str]] = {}
    for sid, split in zip(table["subject_id"].to_pylist(), table["split"].to_pylist()):
        per_subject.setdefault(sid, set()).add(split)
    assert all(len(v) == 1 for v in per_subject.values()) and len(per_subject) == 8
    counts = {s: sum(1 for v in per_subject.values() if v == {s}) for s in ("train", "val", "test")}
    assert counts == {"train": 4, "val": 2, "test": 2} and meta["group"] == "subject_id"
    again, _ = build_sleepedf_table(tmp_path, P)
    assert again["split"].to_pylist() == table["split"].to_pylist()
    other, _ = build_sleepedf_table(tmp_path, P.model_copy(update={"seed": 7}))
    assert other["split"].to_pylist() != table["split"].to_pylist()


def test_too_few_nights_fail_never_silently(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    write_recording(tmp_path, 0, 1, "W12R", rng)
    write_recording(tmp_path, 1, 1, "W12R", rng, channels=("EEG Pz-Oz",))
    with pytest.raises(DataError, match=r"only 1 of 2 nights usable .*sleepedf\.parquet\.min_keep_fraction"):
        build_sleepedf_table(tmp_path, P.model_copy(update={"min_keep_fraction": 0.9}))


def test_fetch_from_mirror_filters_subjects_and_nights(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    src = tmp_path / "mirror" / "sleep-edfx" / "sleep-cassette"
    for subject, night in ((0, 1), (0, 2), (1, 1), (2, 1)):
        write_recording(src, subject, night, "W12", rng)
    m = fetch_sleepedf(tmp_path / "raw", tmp_path / "mirror", subjects=[0, 1], recordings=[1, 2])
    names = sorted(p.name for p in (tmp_path / "raw").iterdir())
    assert names == [
        "MANIFEST.json",
        "SC4001E0-PSG.edf",
        "SC4001EC-Hypnogram.edf",
        "SC4002E0-PSG.edf",
        "SC4002EC-Hypnogram.edf",
        "SC4011E0-PSG.edf",
        "SC4011EC-Hypnogram.edf",
    ]
    assert m["n_nights"] == 3 and m["missing"] == ["SC4012"]
    assert m["files"]["SC4001E0-PSG.edf"]["channels"] == ["EEG Fpz-Cz", "EEG Pz-Oz"]
    assert [n.record_id for n in pair_files(tmp_path / "raw")] == ["SC4001", "SC4002", "SC4011"]
    again = fetch_sleepedf(tmp_path / "raw2", tmp_path / "mirror", subjects=[0, 1], recordings=[1, 2])
    assert again["content_digest"] == m["content_digest"]
    with pytest.raises(DataError, match=r"no SC4ssN.*subjects \[5\]"):
        fetch_sleepedf(tmp_path / "raw3", tmp_path / "mirror", subjects=[5], recordings=[1])
    assert not (tmp_path / "raw3").exists()


def test_fetch_without_mirror_or_network_fails_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    def offline(*a: object, **k: object) -> None:
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", offline)
    with pytest.raises(DataError, match=r"sleepedf: no mirror given .*physionet\.org is unreachable"):
        fetch_sleepedf(tmp_path / "raw", None, subjects=[0], recordings=[1])
    assert not (tmp_path / "raw").exists()


def test_hypnogram_running_past_the_psg_is_clipped(tmp_path: Path) -> None:
    """PhysioNet hypnograms usually end with a long `Sleep stage ?` past the PSG end, off the 30 s grid."""
    rng = np.random.default_rng(10)
    write_recording(
        tmp_path,
        0,
        1,
        "W12R",
        rng,
        hypnogram=runs("W12") + [(90.0, 30.0, "Sleep stage R"), (120.0, 2845.0, "Sleep stage ?")],
    )
    table, meta = build_sleepedf_table(tmp_path, P)
    assert meta["rejected"] == [] and table["label_name"].to_pylist() == ["W", "N1", "N2", "REM"]
