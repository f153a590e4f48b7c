"""Record pooling (trls_core/pooling.py): grouping, per-record means and labels, record subsets."""

from __future__ import annotations

import numpy as np
import pytest

from trls_core.errors import DataError
from trls_core.pooling import Groups

REC = np.array([7, 3, 7, 5, 3, 7])  # windows of records 3, 5, 7 interleaved


def test_groups_order_records_by_id_and_count_their_windows():
    g = Groups.of(REC)
    assert g.ids.tolist() == [3, 5, 7] and g.n == 3 and len(g) == 6
    assert g.inverse.tolist() == [2, 0, 2, 1, 0, 2]
    assert g.counts.tolist() == [2, 1, 3]
    assert g.order.tolist() == [1, 4, 3, 0, 2, 5]  # stable: each record's windows in window order
    assert g.starts.tolist() == [0, 2, 3]
    with pytest.raises(DataError, match="no windows"):
        Groups.of(np.array([]))


def test_mean_is_the_per_record_mean_of_each_column():
    g = Groups.of(REC)
    x = np.arange(12, dtype=np.float64).reshape(6, 2)
    expected = np.stack([x[[1, 4]].mean(0), x[[3]].mean(0), x[[0, 2, 5]].mean(0)])
    out = g.mean(x)
    assert out.dtype == np.float32 and out.shape == (3, 2)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    np.testing.assert_allclose(g.mean(x.reshape(6, 1, 2)), expected, rtol=1e-6)  # trailing dims flattened
    m = g.mean_matrix().toarray()
    assert m.shape == (3, 6)
    np.testing.assert_allclose(m.sum(axis=1), 1.0)
    with pytest.raises(DataError, match="5 rows but 6 windows"):
        g.mean(x[:5])


def test_labels_one_per_record_and_disagreement_names_the_record():
    g = Groups.of(REC)
    y = np.array([2, 0, 2, 1, 0, 2])
    assert g.labels(y).tolist() == [0, 1, 2]
    bad = y.copy()
    bad[5] = 1  # record 7's last window disagrees
    with pytest.raises(DataError, match="record 7"):
        g.labels(bad)
    with pytest.raises(DataError, match="5 labels but 6 windows"):
        g.labels(y[:5])


def test_windows_of_and_subset():
    g = Groups.of(REC)
    assert g.windows_of(np.array([2])).tolist() == [0, 2, 5]
    assert g.windows_of(np.array([0, 1])).tolist() == [1, 3, 4]
    assert g.windows_of(np.array([], dtype=np.int64)).tolist() == []
    sub = g.subset(np.array([0, 3, 5]))
    assert sub.ids.tolist() == [5, 7] and sub.counts.tolist() == [1, 2] and sub.inverse.tolist() == [1, 0, 1]
