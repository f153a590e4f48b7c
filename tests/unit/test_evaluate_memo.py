"""The evaluation memos change no number: a unit whose repeats are answered from memory equals one computed afresh."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from trls_core.evaluate import embed
from trls_core.evaluate.memo import Memo, array_digest, memoised
from trls_core.evaluate.probing import select_and_fit
from trls_core.protocol import Unit, run_unit

SHAPE = (1, 4, 6)
TIMING = ("fit_seconds", "seconds", "unit_seconds")


@pytest.fixture(autouse=True)
def _one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _encoder(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(SHAPE)), 8), nn.BatchNorm1d(8), nn.ReLU())


def _data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.randn((n, *SHAPE), generator=g)
    for c in range(3):
        x[y == c, :, c, :] += 1.0
    return x, y


def _fractions(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    if fraction == 1:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    out = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        out.append(rng.choice(members, size=max(2, round(fraction * len(members))), replace=False))
    return np.sort(np.concatenate(out))


def _clean(result: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in result.items():
        if k in TIMING:
            continue
        if k == "history":
            v = [{kk: vv for kk, vv in row.items() if kk not in TIMING} for row in v]
        out[k] = v.tolist() if isinstance(v, np.ndarray) else v
    return out


def test_units_with_memoised_features_and_fits_equal_units_computed_afresh() -> None:
    """What the evaluation stage does (one encoder per pretraining seed, EvalContext.embed, memoised fits)
    against plain calls: every unit's metrics, predictions and fine-tuning history are identical."""
    x, y = _data(90, 0)
    xv, yv = _data(30, 1)
    xt, yt = _data(30, 2)
    data = {"x_train": x, "y_train": y, "x_val": xv, "y_val": yv, "x_test": xt, "y_test": yt}
    encoders = {0: _encoder(0)}  # one pretraining seed serves every evaluation seed, as in the stage
    memo = Memo(max_bytes=2**24)
    calls: list[int] = []

    def memo_embed(enc: nn.Module, xx: torch.Tensor, bs: int, device: Any) -> np.ndarray:
        def compute() -> np.ndarray:
            calls.append(len(xx))
            return embed(enc, xx, bs, device)

        return memo.get_or_compute((id(enc), array_digest(xx), bs, str(device)), compute)

    kw = {
        "finetune_kwargs": dict(epochs=2, batch_size=16, lr=1e-2, encoder_lr=1e-3, weight_decay=0.0),
        "probe_kwargs": {"c_grid": (0.1, 1.0, 10.0)},
    }
    units = [
        Unit("linear_probe", 0),
        Unit("linear_probe", 1),
        *(Unit("finetune", s, f) for s in (0, 1) for f in (0.5, 1.0)),
    ]
    names = ["a", "b", "c"]
    for unit in units:
        plain = run_unit(unit, data, names, lambda s: encoders[0], None, _fractions, **kw)
        with memoised():
            fast = run_unit(unit, data, names, lambda s: encoders[0], None, _fractions, embed_fn=memo_embed, **kw)
        assert _clean(fast) == _clean(plain), unit.name
    # computed once each: the three splits (probe), then nothing new (val and the 100 % train split are the probe's)
    assert sorted(calls) == sorted([90, 30, 30]) and memo.hits > 0


def test_select_and_fit_memo_returns_copies_and_only_when_asked() -> None:
    rng = np.random.default_rng(0)
    z, y = rng.standard_normal((60, 5)), np.arange(60) % 2
    zv, yv = rng.standard_normal((20, 5)), np.arange(20) % 2
    first = select_and_fit(z, y, zv, yv, ["a", "b"], 0, [0.1, 1.0], 500)
    with memoised():
        a = select_and_fit(z, y, zv, yv, ["a", "b"], 0, [0.1, 1.0], 500)
        b = select_and_fit(z, y, zv, yv, ["a", "b"], 3, [0.1, 1.0], 500)  # lbfgs ignores the seed
    assert a[0] is not b[0]  # each caller gets its own copy
    for got in (a, b):
        np.testing.assert_array_equal(got[0].coef_, first[0].coef_)
        assert got[2:] == first[2:]


def test_memo_is_bounded_by_bytes_and_read_only() -> None:
    memo = Memo(max_bytes=3 * 8 * 100)
    with memoised():
        arrays = [memo.get_or_compute(i, lambda i=i: np.full(100, i, dtype=np.float64)) for i in range(5)]
        assert memo.get_or_compute(4, lambda: np.zeros(1)) is arrays[4]  # a hit
        assert memo.get_or_compute(0, lambda: np.zeros(1)).shape == (1,)  # evicted: computed again
    with pytest.raises(ValueError):
        arrays[4][0] = 1.0
    assert memo.get_or_compute(4, lambda: "fresh") == "fresh"  # outside memoised(): always computed
    assert array_digest(np.zeros(3)) != array_digest(np.zeros(4)) != array_digest(np.zeros(3, np.float32))
