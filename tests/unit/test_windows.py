"""Segmentation, split protocols and label-fraction subsets."""

from __future__ import annotations

import numpy as np
import pytest

from trls_core.data.windows import assign_splits, label_fraction_indices, segment


def test_segment_tstcc_shape_and_content() -> None:
    x = np.arange(2 * 1 * 4097, dtype=np.float32).reshape(2, 1, 4097)
    w, rec, start = segment(x, 178)
    assert w.shape == (46, 1, 178) and w.dtype == np.float32
    assert rec.tolist() == [0] * 23 + [1] * 23
    assert start[:3].tolist() == [0, 178, 356] and start[22] == 22 * 178
    for m in (0, 22, 23, 45):
        np.testing.assert_array_equal(w[m, 0], x[rec[m], 0, start[m] : start[m] + 178])
    w[0, 0, 0] = -1  # a copy, not a view of the input
    assert x[0, 0, 0] == 0


def test_segment_multichannel_and_stride() -> None:
    x = np.random.default_rng(0).normal(size=(3, 2, 10))
    w, rec, start = segment(x, 4, stride=2)  # starts 0, 2, 4, 6
    assert w.shape == (12, 2, 4)
    assert start[:4].tolist() == [0, 2, 4, 6]
    np.testing.assert_array_equal(w[5], x[1, :, 2:6])


def test_segment_errors() -> None:
    with pytest.raises(ValueError, match="record 0: length 5 < window 8"):
        segment(np.zeros((1, 1, 5)), 8)
    with pytest.raises(ValueError, match="records 0..2"):
        segment(np.zeros((3, 1, 5)), 8)
    with pytest.raises(ValueError, match=r"\(N, C, L\)"):
        segment(np.zeros((3, 5)), 2)


def test_random_split_tstcc_sizes() -> None:
    labels = np.repeat(np.arange(5), 2300)
    s = assign_splits(labels, None, "random", 0.16, 0.2, seed=42)
    assert {k: int((s == k).sum()) for k in ("train", "val", "test")} == {"train": 7360, "val": 1840, "test": 2300}
    for c in range(5):
        assert (s[labels == c] == "test").sum() == 460 and (s[labels == c] == "val").sum() == 368
    np.testing.assert_array_equal(s, assign_splits(labels, None, "random", 0.16, 0.2, seed=42))
    assert (s != assign_splits(labels, None, "random", 0.16, 0.2, seed=43)).any()


def test_random_split_unbalanced_fractions_and_proportions() -> None:
    labels = np.array([0] * 37 + [1] * 51 + [2] * 12 + [3] * 3)
    rng = np.random.default_rng(1)
    labels = rng.permutation(labels)
    s = assign_splits(labels, None, "random", 0.15, 0.25, seed=0)
    n = labels.size
    assert abs((s == "test").sum() - 0.25 * n) <= 1 and abs((s == "val").sum() - 0.15 * n) <= 1
    for c in range(4):
        nc = (labels == c).sum()
        assert abs((s[labels == c] == "test").sum() - 0.25 * nc) < 1 + 1e-9
        assert abs((s[labels == c] == "val").sum() - 0.15 * nc) <= 1.5  # val apportioned after test


def test_grouped_split_keeps_groups_whole() -> None:
    rng = np.random.default_rng(0)
    n_groups = 60
    group_label = np.repeat([0, 1, 2], 20)
    groups = np.repeat(np.array([f"r{g:03d}" for g in range(n_groups)]), 7)
    labels = np.repeat(group_label, 7)
    labels[rng.choice(labels.size, 20, replace=False)] = 2  # minority noise inside groups
    order = rng.permutation(labels.size)
    groups, labels = groups[order], labels[order]
    s = assign_splits(labels, groups, "grouped", 0.2, 0.2, seed=3)
    per_group = {g: set(s[groups == g]) for g in np.unique(groups)}
    assert all(len(v) == 1 for v in per_group.values())
    gsplit = np.array([next(iter(per_group[f"r{g:03d}"])) for g in range(n_groups)])
    assert abs((gsplit == "test").sum() - 12) <= 1 and abs((gsplit == "val").sum() - 12) <= 1
    for c in range(3):  # stratified by majority label: 4 of each class's 20 groups in test
        assert abs((gsplit[group_label == c] == "test").sum() - 4) <= 1
    np.testing.assert_array_equal(s, assign_splits(labels, groups, "grouped", 0.2, 0.2, seed=3))


def test_split_errors() -> None:
    labels = np.zeros(10, dtype=int)
    with pytest.raises(ValueError, match="allowed: random, grouped"):
        assign_splits(labels, None, "kfold", 0.1, 0.1, 0)
    with pytest.raises(ValueError, match="needs groups"):
        assign_splits(labels, None, "grouped", 0.1, 0.1, 0)
    with pytest.raises(ValueError, match="val_frac"):
        assign_splits(labels, None, "random", 0.6, 0.5, 0)


def test_label_fraction_indices() -> None:
    labels = np.array([0] * 900 + [1] * 90 + [2] * 10)
    idx = label_fraction_indices(labels, 0.1, seed=0)
    assert np.all(np.diff(idx) > 0)
    assert np.bincount(labels[idx]).tolist() == [90, 9, 1]
    tiny = label_fraction_indices(labels, 0.01, seed=0, min_per_class=2)
    assert np.bincount(labels[tiny]).tolist() == [9, 2, 2]
    np.testing.assert_array_equal(idx, label_fraction_indices(labels, 0.1, seed=0))
    assert not np.array_equal(idx, label_fraction_indices(labels, 0.1, seed=1))
    np.testing.assert_array_equal(label_fraction_indices(labels, 1.0, seed=5), np.arange(1000))
    few = label_fraction_indices(np.array([0] * 50 + [1]), 0.1, seed=0, min_per_class=3)
    assert np.bincount(np.array([0] * 50 + [1])[few]).tolist() == [5, 1]  # class 1 has only 1 member
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="fraction"):
            label_fraction_indices(labels, bad, seed=0)
