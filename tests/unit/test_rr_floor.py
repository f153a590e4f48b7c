"""The RR/HRV gradient-boosting floor: features on synthetic rhythms, record rebuild, cache, real records."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from trls_core.data.parquet import windows_frame, write_windows
from trls_core.data.wfdb_mat import cut_windows
from trls_core.errors import DataError
from trls_core.floors import rr_features as rrf
from trls_core.floors.rr_features import FEATURE_NAMES, fit_rr_floor, majority_floor, record_signals, rr_features

FS = 150.0
ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("TRLS_SHARED_DATA", ROOT.parent / "shared" / "data"))
MIRROR_ZIP = SHARED / "cinc2017" / "training2017.zip"


def synth_ecg(rr: np.ndarray, fs: float = FS, noise: float = 0.03, seed: int = 0) -> np.ndarray:
    """Narrow R bumps (plus a broad T wave) at the cumulative RR times, with white noise."""
    beats = np.cumsum(np.concatenate([[0.5], rr]))
    t = np.arange(int((beats[-1] + 0.5) * fs)) / fs
    x = np.zeros_like(t)
    for b in beats:
        x += np.exp(-0.5 * ((t - b) / 0.012) ** 2) + 0.25 * np.exp(-0.5 * ((t - b - 0.25) / 0.04) ** 2)
    return x + noise * np.random.default_rng(seed).standard_normal(t.size)


def feats(x: np.ndarray) -> dict[str, float]:
    v = rr_features(x, FS)
    assert v.shape == (len(FEATURE_NAMES),) and np.isfinite(v).all()
    return dict(zip(FEATURE_NAMES, v))


def test_regular_rhythm_has_1s_rr_and_irregular_rhythm_is_more_irregular() -> None:
    regular = feats(synth_ecg(np.full(30, 1.0)))
    assert regular["has_rr"] == 1.0 and abs(regular["n_beats"] - 31) <= 1
    assert regular["rr_mean"] == pytest.approx(1.0, abs=0.02) and regular["hr_median_bpm"] == pytest.approx(60, abs=2)
    assert regular["rr_cv"] < 0.03 and regular["pnn50"] == 0.0
    irregular = feats(synth_ecg(np.random.default_rng(1).uniform(0.45, 1.3, 40)))  # AF-like: no pattern
    for name in ("rr_cv", "rmssd", "drr_median_abs_rel", "frac_drr_gt_10pct"):
        assert irregular[name] > 5 * regular[name] + 0.05, name
    assert irregular["rr_cv"] > 0.15 and irregular["pnn50"] > 0.5


@pytest.mark.parametrize(
    "x",
    [
        np.zeros(0),
        np.zeros(5),
        np.zeros(3000),
        np.full(3000, 2.5),
        np.random.default_rng(0).standard_normal(200),
        np.full(3000, np.nan),
    ],
)
def test_flat_short_or_broken_signals_give_a_finite_flagged_vector(x: np.ndarray) -> None:
    f = feats(x)
    assert f["has_rr"] == 0.0 and f["rr_cv"] == 0.0


def write_table(path: Path, records: dict[str, tuple[np.ndarray, int, str]], window: int = 1500) -> None:
    """Windows Parquet cut like the real CinC stage (``pad='end'``) from whole records."""
    parts = []
    for rid, (sig, label, split) in records.items():
        w, start, n_pad = cut_windows(sig[None, :].astype(np.float32), window, None, "end", rid)
        parts.append((rid, label, split, w, start, n_pad))
    counts = [p[3].shape[0] for p in parts]
    rep = lambda i: np.repeat([p[i] for p in parts], counts)  # noqa: E731
    labels = rep(1).astype(np.int64)
    table = windows_frame(
        np.concatenate([p[3] for p in parts]),
        window_id=[f"w{i}" for i in range(sum(counts))],
        record_id=rep(0),
        subject_id=rep(0),
        split=rep(2),
        label=labels,
        label_name=np.asarray(["N", "A", "O", "~"])[labels],
        fs=FS,
        extra={"start": np.concatenate([p[4] for p in parts]), "n_pad": np.concatenate([p[5] for p in parts])},
    )
    meta = {
        "dataset": "cinc2017",
        "tasks": {"af": {"column": "label", "classes": ["N", "A", "O", "~"], "score_classes": ["N", "A", "O"]}},
    }
    write_windows(table, path / "windows.parquet", meta)


def test_records_rebuild_exactly_with_overlapping_last_and_padded_short_windows(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    sigs = {"R1": rng.standard_normal(3700), "R2": rng.standard_normal(1000), "R3": rng.standard_normal(3000)}
    write_table(tmp_path, {"R1": (sigs["R1"], 1, "train"), "R2": (sigs["R2"], 0, "val"), "R3": (sigs["R3"], 2, "test")})
    recs = record_signals(tmp_path)
    assert list(recs) == ["R1", "R2", "R3"]
    for rid, sig in sigs.items():
        np.testing.assert_array_equal(recs[rid].signal, sig.astype(np.float32))  # no padding, no gap
    assert (recs["R1"].label, recs["R1"].split, recs["R2"].split, recs["R1"].fs) == (1, "train", "val", FS)


def test_a_gap_between_windows_is_a_data_error(tmp_path: Path) -> None:
    x = np.random.default_rng(0).standard_normal((2, 1, 100)).astype(np.float32)
    table = windows_frame(
        x,
        ["a_0", "a_1"],
        ["a", "a"],
        ["a", "a"],
        ["train"] * 2,
        [0, 0],
        ["N", "N"],
        FS,
        extra={"start": np.asarray([0, 150]), "n_pad": np.asarray([0, 0], np.int32)},
    )
    write_windows(table, tmp_path / "windows.parquet", {"dataset": "cinc2017"})
    with pytest.raises(DataError, match="record a: field start leaves a gap"):
        record_signals(tmp_path)


def test_fit_scores_test_records_and_caches_features(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    records = {}
    for i in range(36):
        af = i % 2 == 1
        rr = rng.uniform(0.45, 1.3, 22) if af else np.full(22, rng.uniform(0.7, 1.1))
        records[f"R{i:02d}"] = (synth_ecg(rr, seed=i), int(af), ("train", "train", "val", "test")[(i // 2) % 4])
    write_table(tmp_path, records)
    cache = tmp_path / "out" / "feats.npz"
    grid = {"max_leaf_nodes": [4, 8], "min_samples_leaf": [3]}  # 20 train records: smaller leaves
    first = fit_rr_floor(tmp_path, seed=0, n_jobs=1, cache_path=cache, grid=grid)
    assert first["n_records"] == {"train": 20, "val": 8, "test": 8} and len(first["val_grid"]) == 2
    assert first["record_challenge_f1"] > 0.6 and first["record_accuracy"] == 1.0
    assert not first["features_cached"] and cache.is_file()
    again = fit_rr_floor(tmp_path, seed=0, n_jobs=1, cache_path=cache, grid=grid)
    assert again["features_cached"] and again["record_challenge_f1"] == first["record_challenge_f1"]
    monkeypatch.setattr(rrf, "FEATURES_VERSION", rrf.FEATURES_VERSION + 1)  # a code change recomputes
    assert not fit_rr_floor(tmp_path, seed=0, n_jobs=1, cache_path=cache, grid=grid)["features_cached"]
    cache.write_bytes(b"not an npz")  # a broken cache is recomputed, not trusted
    assert not fit_rr_floor(tmp_path, seed=0, n_jobs=1, cache_path=cache, grid=grid)["features_cached"]
    assert majority_floor(tmp_path)["majority_class"] in ("N", "A")


@pytest.mark.realdata
def test_real_records_have_plausible_heart_rate_and_af_is_most_irregular() -> None:
    if not MIRROR_ZIP.is_file():
        pytest.skip(f"{MIRROR_ZIP} absent: the CinC 2017 mirror is needed for the real-record check")
    from tests.settings import section
    from trls_core.datasets.cinc2017 import load_record
    from trls_core.datasets.cinc2017.source import Cinc2017Archive

    params = section("cinc2017.parquet", target_fs=FS)
    # verified by hand: A00004 is the AF record; A00002 (N) has a few missed/extra beats
    ids = ["A00001", "A00002", "A00003", "A00004", "A00006"]
    with Cinc2017Archive.open(MIRROR_ZIP) as arc:
        labels = {rid: arc.labels[rid] for rid in ids}
        f = {rid: feats(load_record(arc, rid, params)[0]) for rid in ids}
    assert [labels[r] for r in ids] == ["N", "N", "N", "A", "N"]
    for rid in ids:
        assert 30 <= f[rid]["hr_median_bpm"] <= 200, rid
    normal = [f[r] for r in ids if labels[r] == "N"]
    assert sum(f["A00004"]["rr_cv"] > n["rr_cv"] for n in normal) >= 3
    assert all(f["A00004"]["rr_cv_robust"] > n["rr_cv_robust"] for n in normal)
