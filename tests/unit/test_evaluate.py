"""Linear probe, fine-tuning and the protocol on tiny synthetic spectrogram-shaped data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import trls_core.evaluate.probing as lp
from trls_core.errors import DataError
from trls_core.evaluate import embed, finetune, fraction_key, linear_probe
from trls_core.protocol import aggregate_units, plan_units, run_unit

SHAPE = (1, 4, 5)  # (C, F, T)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models: extra intra-op threads only fight other processes on the shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _encoder(seed: int = 0, rep: int = 8) -> nn.Module:
    """Stand-in for TFRNN: (B, C, F, T) -> (B, R)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(SHAPE)), rep), nn.BatchNorm1d(rep), nn.ReLU())


def _data(n: int, n_classes: int = 2, seed: int = 0, shift: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Separable classes: class c adds ``shift`` to frequency row c."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % n_classes
    x = torch.randn((n, *SHAPE), generator=g)
    for c in range(n_classes):
        x[y == c, :, c, :] += shift
    perm = torch.randperm(n, generator=g)
    return x[perm], y[perm]


def _simple_fraction_indices(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Stratified seeded subset with >= 1 per class (what the data engineer's helper guarantees)."""
    rng = np.random.default_rng(seed)
    out = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        out.append(rng.choice(idx, size=max(1, int(round(fraction * len(idx)))), replace=False))
    return np.sort(np.concatenate(out))


def test_embed_shape_eval_mode_and_mode_restored() -> None:
    enc = _encoder()
    enc.train()
    x, _ = _data(10)
    z = embed(enc, x, batch_size=3)
    assert z.shape == (10, 8) and z.dtype == np.float32
    assert enc.training  # restored
    # eval mode: BatchNorm uses running stats, so a row's embedding does not depend on its batch
    np.testing.assert_allclose(embed(enc, x[:1]), z[:1], rtol=1e-5, atol=1e-6)


def test_embed_moves_the_encoder_to_the_device_of_its_inputs() -> None:
    """Encoders load on the CPU; on a GPU host embed(..., device="cuda") must move them (it once did not)."""
    moved: list[str] = []

    class Recording(nn.Sequential):
        def to(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            moved.append(str(args[0] if args else kwargs.get("device")))
            return super().to(*args, **kwargs)

    enc = Recording(*_encoder())
    z = embed(enc, _data(6)[0], batch_size=4, device="cpu")
    assert moved == ["cpu"] and z.shape == (6, 8)


def test_linear_probe_separable_and_on_raw_pixels() -> None:
    x, y = _data(80, n_classes=3)
    xv, yv = _data(30, n_classes=3, seed=1)
    xt, yt = _data(30, n_classes=3, seed=2)
    flat = lambda a: a.reshape(len(a), -1).numpy()  # noqa: E731 - the spectrogram_linear features
    out = linear_probe(flat(x), y, flat(xt), yt, ["a", "b", "c"], z_val=flat(xv), y_val=yv)
    assert out["accuracy"] > 0.9
    assert out["C"] in (0.01, 0.1, 1.0, 10.0)
    assert set(out["c_scores"]) == {"0.01", "0.1", "1.0", "10.0"}
    assert out["y_pred"].shape == (30,)
    assert np.asarray(out["confusion_matrix"]).sum() == 30


def test_linear_probe_selects_c_on_validation_not_test(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = _data(60, shift=0.6)
    xv, yv = _data(24, shift=0.6, seed=1)
    xt, yt = _data(20, shift=0.6, seed=2)
    f = lambda a: a.reshape(len(a), -1).numpy()  # noqa: E731
    seen: list[tuple[str, int]] = []
    real, real_sel = lp.classification_metrics, lp.selection_score

    def spy(y_true, y_pred, names):  # type: ignore[no-untyped-def]
        seen.append(("final", len(y_true)))
        return real(y_true, y_pred, names)

    def spy_sel(y_true, y_pred, names, select=None):  # type: ignore[no-untyped-def]
        seen.append(("select", len(y_true)))
        return real_sel(y_true, y_pred, names, select)

    monkeypatch.setattr(lp, "classification_metrics", spy)
    monkeypatch.setattr(lp, "selection_score", spy_sel)
    a = linear_probe(f(x), y, f(xt), yt, ["a", "b"], z_val=f(xv), y_val=yv, c_grid=(0.001, 0.1, 10.0))
    # three selection scores on the 24 validation labels, then one final score on the 20 test labels
    assert seen == [("select", 24)] * 3 + [("final", 20)]
    # behaviour: scrambling the test labels cannot change the chosen C
    b = linear_probe(f(x), y, f(xt), 1 - yt, ["a", "b"], z_val=f(xv), y_val=yv, c_grid=(0.001, 0.1, 10.0))
    assert a["C"] == b["C"] and a["c_scores"] == b["c_scores"]
    assert b["accuracy"] == pytest.approx(1 - a["accuracy"])


def test_linear_probe_without_val_holds_out_train_not_test(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = _data(50)
    xt, yt = _data(17, seed=2)
    seen: list[int] = []
    real, real_sel = lp.classification_metrics, lp.selection_score
    monkeypatch.setattr(lp, "classification_metrics", lambda t, p, n: (seen.append(len(t)), real(t, p, n))[1])
    monkeypatch.setattr(lp, "selection_score", lambda t, p, n, s=None: (seen.append(len(t)), real_sel(t, p, n, s))[1])
    f = lambda a: a.reshape(len(a), -1).numpy()  # noqa: E731
    linear_probe(f(x), y, f(xt), yt, ["a", "b"], c_grid=(0.1, 1.0))
    assert seen == [10, 10, 17]  # 20 % of each class of the training set, then the test split once


def test_finetune_learns_and_leaves_caller_weights_untouched() -> None:
    enc = _encoder()
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    x, y = _data(64)
    xv, yv = _data(20, seed=1)
    xt, yt = _data(40, seed=2)
    seen_epochs: list[int] = []
    out = finetune(
        enc,
        2,
        x,
        y,
        xv,
        yv,
        xt,
        yt,
        ["a", "b"],
        epochs=6,
        batch_size=16,
        lr=1e-2,
        encoder_lr=1e-2,
        weight_decay=0.0,
        seed=0,
        progress=False,
        head_init="random",
        on_epoch=lambda r: seen_epochs.append(r["epoch"]),
    )
    assert out["accuracy"] >= 0.9
    for k, v in enc.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert seen_epochs == list(range(1, 7)) and len(out["history"]) == 6
    vals = [h["val_macro_f1"] for h in out["history"]]
    assert out["best_epoch"] == int(np.argmax(vals)) + 1  # first epoch with the best validation F1
    assert out["best_val_macro_f1"] == pytest.approx(max(vals))
    json.dumps({k: v for k, v in out.items() if k != "y_pred"})


def test_finetune_tiny_subset_caps_batch_and_is_deterministic() -> None:
    x, y = _data(6)  # e.g. 1 % of a small train split
    xv, yv = _data(10, seed=1)
    kw = dict(
        epochs=3,
        batch_size=256,
        lr=1e-2,
        encoder_lr=None,
        weight_decay=0.01,
        seed=3,
        progress=False,
        min_steps_per_epoch=4,
        class_weight=True,
    )
    a = finetune(_encoder(), 2, x, y, xv, yv, xv, yv, ["a", "b"], **kw)
    b = finetune(_encoder(), 2, x, y, xv, yv, xv, yv, ["a", "b"], **kw)
    assert a["n_train"] == 6 and len(a["history"]) == 3
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]
    np.testing.assert_array_equal(a["y_pred"], b["y_pred"])


def test_finetune_early_stopping_and_frozen_encoder() -> None:
    x, y = _data(30)
    xv, yv = _data(10, seed=1)
    enc = _encoder()
    out = finetune(
        enc,
        2,
        x,
        y,
        xv,
        yv,
        xv,
        yv,
        ["a", "b"],
        epochs=50,
        batch_size=8,
        lr=0.0,
        encoder_lr=0.0,
        weight_decay=0.0,
        seed=0,
        progress=False,
        patience=2,
        return_model=True,
        head_init="random",
    )
    # lr 0: validation never improves after epoch 1, so patience 2 stops at epoch 3
    assert out["epochs_run"] == 3 and out["best_epoch"] == 1
    w = out["model"].encoder[1].weight
    assert torch.equal(w, enc[1].weight)


def test_finetune_head_starts_as_the_linear_probe() -> None:
    """LP-FT: with nothing trained (lr 0) the kept model is the probe fitted on the same subset."""
    torch.manual_seed(0)  # no BatchNorm: its running stats would move even at lr 0
    enc = nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(SHAPE)), 8), nn.ReLU())
    x, y = _data(60)
    xv, yv = _data(30, seed=1)
    xt, yt = _data(40, seed=2)
    out = finetune(
        enc,
        2,
        x,
        y,
        xv,
        yv,
        xt,
        yt,
        ["a", "b"],
        epochs=3,
        batch_size=16,
        lr=0.0,
        encoder_lr=0.0,
        weight_decay=0.0,
        seed=0,
        progress=False,
    )
    f = lambda a: embed(enc, a)  # noqa: E731
    probe = linear_probe(f(x), y, f(xt), yt, ["a", "b"], z_val=f(xv), y_val=yv)
    assert out["best_epoch"] == 0
    np.testing.assert_array_equal(out["y_pred"], probe["y_pred"])
    with pytest.raises(DataError, match="head_init"):
        finetune(
            enc,
            2,
            x,
            y,
            xv,
            yv,
            xt,
            yt,
            ["a", "b"],
            epochs=1,
            batch_size=16,
            lr=0.0,
            encoder_lr=0.0,
            weight_decay=0.0,
            seed=0,
            progress=False,
            head_init="zeros",
        )


def test_finetune_rejects_bad_inputs() -> None:
    x, y = _data(10)
    with pytest.raises(DataError, match="n_classes"):
        finetune(
            _encoder(),
            3,
            x,
            y,
            x,
            y,
            x,
            y,
            ["a", "b"],
            epochs=1,
            batch_size=4,
            lr=1e-3,
            encoder_lr=None,
            weight_decay=0.0,
            seed=0,
            progress=False,
        )
    with pytest.raises(DataError, match="labels"):
        finetune(
            _encoder(),
            2,
            x,
            y[:5],
            x,
            y,
            x,
            y,
            ["a", "b"],
            epochs=1,
            batch_size=4,
            lr=1e-3,
            encoder_lr=None,
            weight_decay=0.0,
            seed=0,
            progress=False,
        )


AGG_KEYS = {"accuracy", "macro_f1", "cohen_kappa", "balanced_accuracy"}
STAT_KEYS = {"mean", "std", "min", "max", "n", "values"}


def test_protocol_units_run_and_aggregate() -> None:
    """plan_units -> run_unit per unit -> aggregate_units: the shape of ``metrics.json``."""
    x, y = _data(60)
    xv, yv = _data(20, seed=1)
    xt, yt = _data(20, seed=2)
    data = {"x_train": x, "y_train": y, "x_val": xv, "y_val": yv, "x_test": xt, "y_test": yt}
    factory_calls: list[int] = []

    def factory(seed: int) -> nn.Module:
        factory_calls.append(seed)
        return _encoder(seed)

    units = plan_units([0.5, 1.0], [0, 1])
    raw = {
        u: run_unit(
            u,
            data,
            ["a", "b"],
            factory,
            lambda s: _encoder(100 + s),
            _simple_fraction_indices,
            finetune_kwargs=dict(epochs=2, batch_size=16, lr=1e-2, encoder_lr=1e-3, weight_decay=0.0),
            probe_kwargs={"c_grid": (0.1, 1.0)},
        )
        for u in units
    }
    results = aggregate_units(raw, [0, 1], [0.5, 1.0])
    assert factory_calls == [0, 0, 0, 1, 1, 1]  # the probe and each fraction's fine-tuning, per seed
    assert set(results) == {"linear_probe", "finetune", "controls", "seeds", "fractions", "per_seed"}
    assert set(results["linear_probe"]) == AGG_KEYS
    assert all(set(v) == STAT_KEYS for v in results["linear_probe"].values())
    assert results["linear_probe"]["accuracy"]["n"] == 2
    assert set(results["finetune"]) == {"0.5", "1.0"} and results["fractions"] == ["0.5", "1.0"]
    assert all(set(v) == AGG_KEYS for v in results["finetune"].values())
    assert set(results["controls"]) == {"spectrogram_linear", "random_encoder_linear"}
    assert results["controls"]["spectrogram_linear"]["accuracy"]["n"] == 1  # seed-independent, fitted once
    assert results["controls"]["random_encoder_linear"]["macro_f1"]["n"] == 2
    assert results["seeds"] == [0, 1]
    assert [p["seed"] for p in results["per_seed"]] == [0, 1]
    first = results["per_seed"][0]
    assert set(first["finetune"]) == {"0.5", "1.0"}
    assert first["finetune"]["0.5"]["n_train"] == 30 and first["finetune"]["1.0"]["n_train"] == 60
    assert np.asarray(first["linear_probe"]["confusion_matrix"]).shape == (2, 2)
    assert "spectrogram_linear" in first["controls"] and "random_encoder_linear" in first["controls"]
    json.dumps(results)  # JSON-able: no arrays left
    probe0 = raw[units[0]]  # arrays stay in the unit result until stripped (z_test feeds the t-SNE plot)
    assert probe0["z_test"].shape == (20, 8)
    assert probe0["y_pred"].shape == (20,)
    assert [len(raw[u]["history"]) for u in units if u.method == "finetune"] == [2, 2, 2, 2]
    assert [u.name for u in units] == [
        "linear_probe/seed=0",
        "finetune/0.5/seed=0",
        "finetune/1.0/seed=0",
        "controls/spectrogram_linear/seed=0",
        "controls/random_encoder_linear/seed=0",
        "linear_probe/seed=1",
        "finetune/0.5/seed=1",
        "finetune/1.0/seed=1",
        "controls/random_encoder_linear/seed=1",
    ]


def test_fraction_key_spelling() -> None:
    assert [fraction_key(f) for f in (0.01, 0.05, 0.1, 0.5, 1, 1.0)] == ["0.01", "0.05", "0.1", "0.5", "1.0", "1.0"]


def test_run_unit_requires_fraction_indices_and_data_keys() -> None:
    x, y = _data(10)
    with pytest.raises(DataError, match="missing"):
        run_unit(plan_units([], [0])[0], {"x_train": x}, ["a", "b"], _encoder)
    data = {"x_train": x, "y_train": y, "x_val": x, "y_val": y, "x_test": x, "y_test": y}
    finetune_unit = plan_units([0.5], [0])[1]
    with pytest.raises(DataError, match="fraction_indices"):
        run_unit(finetune_unit, data, ["a", "b"], _encoder)


def _three_class(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Classes a, b well apart, and a rare class c that overlaps them (like CinC's noise class)."""
    rng = np.random.default_rng(seed)
    y = np.array([0, 1] * (n // 2) + [2] * (n // 10))
    centres = np.array([[1.5, 0.0], [-1.5, 0.0], [0.0, 0.3]])
    return centres[y] + rng.normal(size=(len(y), 2)), y


def test_linear_probe_selects_c_by_the_given_classes_f1() -> None:
    """c_scores are the mean F1 over select_classes of each C's fit on validation (macro-F1 without)."""
    from sklearn.preprocessing import StandardScaler

    from trls_core.metrics import subset_f1

    (z, y), (zv, yv), (zt, yt) = _three_class(80, 0), _three_class(60, 1), _three_class(40, 2)
    names, grid = ["a", "b", "c"], (0.001, 0.1, 10.0)
    by_task = linear_probe(z, y, zt, yt, names, z_val=zv, y_val=yv, c_grid=grid, select_classes=["a", "b"])
    by_macro = linear_probe(z, y, zt, yt, names, z_val=zv, y_val=yv, c_grid=grid)
    sc = StandardScaler().fit(z)
    for c, clf in lp.logreg_path(sc.transform(z), y, [float(c) for c in grid], 0, 2000):
        pred = clf.predict(sc.transform(zv))
        assert by_task["c_scores"][str(c)] == pytest.approx(subset_f1(yv, pred, names, ["a", "b"]))
        assert by_macro["c_scores"][str(c)] == pytest.approx(lp.classification_metrics(yv, pred, names)["macro_f1"])
    assert by_task["c_scores"] != by_macro["c_scores"]
    assert by_task["C"] == max(grid, key=lambda c: (by_task["c_scores"][str(c)], -c))


def test_finetune_keeps_the_epoch_with_the_best_selection_score() -> None:
    x, y = _data(60, n_classes=3)
    xv, yv = _data(30, n_classes=3, seed=1)
    xt, yt = _data(30, n_classes=3, seed=2)
    out = finetune(
        _encoder(),
        3,
        x,
        y,
        xv,
        yv,
        xt,
        yt,
        ["a", "b", "c"],
        epochs=5,
        batch_size=16,
        lr=1e-2,
        encoder_lr=1e-2,
        weight_decay=0.0,
        seed=0,
        progress=False,
        head_init="random",
        select_classes=["a", "b"],
    )
    scores = [h["val_score"] for h in out["history"]]
    assert out["best_epoch"] == int(np.argmax(scores)) + 1
    assert out["best_val_score"] == pytest.approx(max(scores))
    assert out["best_val_macro_f1"] == pytest.approx(out["history"][out["best_epoch"] - 1]["val_macro_f1"])
