"""Dataset-agnostic windowing, train/val/test splits and label-fraction subsets.

Splits come in two named protocols because they answer different questions:
``random`` (stratified over windows, as TS-TCC did for Epilepsy) is needed to
compare with published numbers but lets windows of one recording land in
both train and test; ``grouped`` keeps each group (record/subject) in one
split, which is what a clinical claim needs. Reports say which was used.
"""

from __future__ import annotations

import numpy as np

SPLIT_PROTOCOLS: tuple[str, ...] = ("random", "grouped")


def segment(signals: np.ndarray, window: int, stride: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut (N, C, L) signals into windows (M, C, window); the trailing remainder is dropped.

    Returns ``(windows, record_index, start)`` with M = N * n_per_record,
    windows of a record contiguous and in time order. Non-overlapping by
    default (``stride = window``). Vectorised: one strided view and one copy.
    """
    x = np.asarray(signals)
    if x.ndim != 3:
        raise ValueError(f"signals must be (N, C, L); got shape {x.shape}")
    if window <= 0:
        raise ValueError(f"window must be positive; got {window}")
    stride = window if stride is None else stride
    if stride <= 0:
        raise ValueError(f"stride must be positive; got {stride}")
    n, c, length = x.shape
    if length < window:
        which = "record 0" if n == 1 else f"records 0..{n - 1}"
        raise ValueError(f"{which}: length {length} < window {window}; cannot cut a single window")
    view = np.lib.stride_tricks.sliding_window_view(x, window, axis=-1)[:, :, ::stride]  # (N, C, K, W)
    k = view.shape[2]
    windows = np.ascontiguousarray(view.transpose(0, 2, 1, 3)).reshape(n * k, c, window)
    record_index = np.repeat(np.arange(n, dtype=np.int64), k)
    start = np.tile(np.arange(k, dtype=np.int64) * stride, n)
    return windows, record_index, start


def _apportion(sizes: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` across classes proportionally to ``sizes`` (largest remainder).

    Counts sum exactly to ``total`` (so overall fractions are within one unit
    of target) and never exceed a class's size.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    n = int(sizes.sum())
    total = int(min(max(total, 0), n))
    if n == 0 or total == 0:
        return np.zeros_like(sizes)
    quota = sizes * total / n
    counts = np.floor(quota).astype(np.int64)
    remainder = total - int(counts.sum())
    if remainder > 0:
        # Stable sort: ties go to the earlier class, so the result is deterministic.
        order = np.argsort(-(quota - counts), kind="stable")
        eligible = order[counts[order] < sizes[order]]
        counts[eligible[:remainder]] += 1
    return counts


def _stratified_assign(labels: np.ndarray, val_frac: float, test_frac: float, seed: int) -> np.ndarray:
    """Split units (windows or groups) stratified by label; returns 0=train, 1=val, 2=test."""
    n = labels.shape[0]
    classes, inverse = np.unique(labels, return_inverse=True)
    sizes = np.bincount(inverse, minlength=classes.size)
    n_test = _apportion(sizes, int(round(test_frac * n)))
    n_val = _apportion(sizes - n_test, int(round(val_frac * n)))
    rng = np.random.default_rng(seed)
    out = np.zeros(n, dtype=np.int8)
    for k in range(classes.size):
        idx = rng.permutation(np.flatnonzero(inverse == k))
        out[idx[: n_test[k]]] = 2
        out[idx[n_test[k] : n_test[k] + n_val[k]]] = 1
    return out


def assign_splits(
    labels: np.ndarray,
    groups: np.ndarray | None,
    protocol: str,
    val_frac: float,
    test_frac: float,
    seed: int,
) -> np.ndarray:
    """Assign each window to "train" / "val" / "test"; deterministic for a seed.

    ``random``: stratified by label over windows (``groups`` ignored).
    ``grouped``: whole groups go to one split, stratified by each group's
    majority label (ties -> the smallest label); fractions then count groups,
    not windows. Val and test sizes are ``round(frac * n_units)`` exactly.
    """
    if protocol not in SPLIT_PROTOCOLS:
        raise ValueError(f"unknown split protocol {protocol!r}; allowed: {', '.join(SPLIT_PROTOCOLS)}")
    if not (0 <= val_frac < 1 and 0 <= test_frac < 1 and val_frac + test_frac < 1):
        raise ValueError(f"need 0 <= val_frac, test_frac and val_frac + test_frac < 1; got {val_frac}, {test_frac}")
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D; got shape {labels.shape}")
    names = np.array(["train", "val", "test"])
    if protocol == "random":
        return names[_stratified_assign(labels, val_frac, test_frac, seed)]
    if groups is None:
        raise ValueError("protocol 'grouped' needs groups (e.g. record or subject ids)")
    groups = np.asarray(groups)
    if groups.shape != labels.shape:
        raise ValueError(f"groups shape {groups.shape} != labels shape {labels.shape}")
    _, g_inv = np.unique(groups, return_inverse=True)
    classes, l_inv = np.unique(labels, return_inverse=True)
    n_groups = int(g_inv.max()) + 1 if g_inv.size else 0
    n_classes = classes.size
    counts = np.bincount(g_inv * n_classes + l_inv, minlength=n_groups * n_classes).reshape(n_groups, n_classes)
    group_label = counts.argmax(axis=1)  # argmax takes the first maximum: smallest label on ties
    group_split = _stratified_assign(group_label, val_frac, test_frac, seed)
    return names[group_split[g_inv]]


def label_fraction_indices(labels: np.ndarray, fraction: float, seed: int, min_per_class: int = 1) -> np.ndarray:
    """Sorted indices of a stratified, seeded subset holding ``fraction`` of the labels.

    The subset size is ``round(fraction * n)`` apportioned across classes,
    then every class is raised to ``min_per_class`` (or all its members, if
    fewer) so a 1 % subset still shows every class to the fine-tuned head.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1]; got {fraction}")
    labels = np.asarray(labels)
    n = labels.shape[0]
    if fraction == 1:
        return np.arange(n, dtype=np.int64)
    classes, inverse = np.unique(labels, return_inverse=True)
    sizes = np.bincount(inverse, minlength=classes.size)
    take = np.minimum(np.maximum(_apportion(sizes, int(round(fraction * n))), min_per_class), sizes)
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(inverse == k), size=int(take[k]), replace=False) for k in range(classes.size)]
    return np.sort(np.concatenate(chosen)).astype(np.int64) if chosen else np.arange(0, dtype=np.int64)
