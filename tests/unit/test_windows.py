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


def test_segment_boundaries() -> None:
    x = np.arange(2 * 6, dtype=np.float64).reshape(2, 1, 6)
    w, rec, start = segment(x, 6)  # length == window: one window per record
    assert w.shape == (2, 1, 6) and rec.tolist() == [0, 1] and start.tolist() == [0, 0]
    w, rec, start = segment(x, 1)  # window 1 is allowed
    assert w.shape == (12, 1, 1) and start[:6].tolist() == list(range(6))
    w, _, start = segment(x, 2, stride=1)
    assert start[:5].tolist() == [0, 1, 2, 3, 4] and w.shape == (10, 1, 2)
    with pytest.raises(ValueError, match="window must be positive"):
        segment(x, 0)
    with pytest.raises(ValueError, match="stride must be positive"):
        segment(x, 2, stride=0)
    with pytest.raises(ValueError, match="stride must be positive"):
        segment(x, 2, stride=-1)


def test_split_sizes_are_exact_and_fraction_bounds() -> None:
    labels = np.array([0] * 7 + [1] * 3)
    s = assign_splits(labels, None, "random", 0.0, 0.3, seed=0)  # no val split is allowed
    assert (s == "val").sum() == 0 and (s == "test").sum() == 3 and (s == "train").sum() == 7
    s = assign_splits(labels, None, "random", 0.25, 0.0, seed=0)  # round(2.5) = 2 (banker's)
    assert (s == "test").sum() == 0 and (s == "val").sum() == 2
    # largest remainder: 7 x 0.5 = 3.5 and 3 x 0.5 = 1.5 -> 5 taken; the tie goes to the first class
    s = assign_splits(labels, None, "random", 0.0, 0.5, seed=0)
    assert (s[labels == 0] == "test").sum() == 4 and (s[labels == 1] == "test").sum() == 1
    for val_frac, test_frac in ((0.5, 0.5), (-0.1, 0.2), (0.2, -0.1), (1.0, 0.0), (0.0, 1.0)):
        with pytest.raises(ValueError, match="val_frac"):
            assign_splits(labels, None, "random", val_frac, test_frac, 0)
    with pytest.raises(ValueError, match="1-D"):
        assign_splits(labels.reshape(2, 5), None, "random", 0.1, 0.1, 0)
    with pytest.raises(ValueError, match="groups shape"):
        assign_splits(labels, np.arange(9), "grouped", 0.1, 0.1, 0)


def test_split_never_takes_more_than_a_class_has() -> None:
    labels = np.array([0] * 9 + [1])  # one window of class 1
    for seed in range(5):
        s = assign_splits(labels, None, "random", 0.0, 0.5, seed=seed)
        assert (s == "test").sum() == 5 and (s[labels == 1] == "test").sum() <= 1
        s = assign_splits(labels, None, "random", 0.4, 0.5, seed=seed)  # 5 test + 4 val of 10
        assert (s == "test").sum() == 5 and (s == "val").sum() == 4 and (s == "train").sum() == 1


def test_grouped_split_majority_label_ties_go_to_the_smallest_label() -> None:
    # group g0: labels 1, 0 (a tie -> 0); g1..g3: label 1
    groups = np.array(["g0", "g0", "g1", "g2", "g3"])
    labels = np.array([1, 0, 1, 1, 1])
    for seed in range(4):
        s = assign_splits(labels, groups, "grouped", 0.0, 0.5, seed=seed)  # round(0.5 * 4) = 2 groups
        # g0 is the only class-0 group: quotas 0.5 and 1.5, the remainder tie goes to class 0,
        # so g0 (2 windows) and one class-1 group are the test split for every seed
        assert s[0] == s[1] == "test" and (s == "test").sum() == 3


def test_label_fraction_per_evaluation_seed() -> None:
    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)
    subsets = [label_fraction_indices(labels, 0.2, seed=seed) for seed in (0, 1, 2)]
    for idx in subsets:  # the same stratified counts for every evaluation seed
        assert np.bincount(labels[idx]).tolist() == [12, 6, 2] and idx.dtype == np.int64
        assert np.unique(idx).size == idx.size and idx.min() >= 0 and idx.max() < labels.size
    assert len({tuple(idx) for idx in subsets}) == 3  # and a different subset for each
    assert label_fraction_indices(labels, 0.5, seed=0, min_per_class=0).size == 50
    one = label_fraction_indices(labels, 0.01, seed=0)  # round(1) = 1, then every class raised to 1
    assert np.bincount(labels[one]).tolist() == [1, 1, 1]
    none_raised = label_fraction_indices(labels, 0.01, seed=0, min_per_class=0)
    assert none_raised.size == 1 and labels[none_raised].tolist() == [0]


def test_val_is_apportioned_over_what_test_left() -> None:
    labels = np.array([0] * 5 + [1])
    for seed in range(3):
        s = assign_splits(labels, None, "random", 0.3, 0.5, seed=seed)
        # test: 3 of class 0 (quotas 2.5 / 0.5, tie -> class 0); val: 2 of the rest [2, 1] -> quotas 1.33 / 0.67
        assert s[5] == "val"
        assert [(s[:5] == k).sum() for k in ("train", "val", "test")] == [1, 1, 3]


def test_a_single_unit_can_be_the_test_split() -> None:
    assert assign_splits(np.array([4]), None, "random", 0.0, 0.6, seed=0).tolist() == ["test"]
    assert assign_splits(np.array([4]), None, "random", 0.0, 0.4, seed=0).tolist() == ["train"]
