"""Record-level evaluation: pooling, record fractions, pooled fine-tuning, record positive pairs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tests.unit.test_evaluate import _one_torch_thread  # noqa: F401  (autouse: tiny models, one thread)
from trls_core.data.windows import label_fraction_indices
from trls_core.errors import DataError
from trls_core.evaluate import embed, finetune, linear_probe
from trls_core.pooling import Groups
from trls_core.protocol import Unit, run_unit
from trls_core.train import RecordPairs

SHAPE = (1, 4, 5)


def test_groups_mean_labels_and_windows() -> None:
    rec = np.array([7, 3, 7, 3, 9])
    g = Groups.of(rec)
    assert g.ids.tolist() == [3, 7, 9] and g.counts.tolist() == [2, 2, 1] and len(g) == 5 and g.n == 3
    z = np.array([[1.0, 0.0], [2.0, 2.0], [3.0, 4.0], [4.0, 6.0], [5.0, 5.0]])
    np.testing.assert_allclose(g.mean(z), [[3.0, 4.0], [2.0, 2.0], [5.0, 5.0]])
    assert g.labels(np.array([1, 0, 1, 0, 2])).tolist() == [0, 1, 2]
    assert g.windows_of(np.array([0, 2])).tolist() == [1, 3, 4]  # the windows of records 3 and 9
    with pytest.raises(DataError, match="record 7 has windows with different labels"):
        g.labels(np.array([1, 0, 2, 0, 2]))
    with pytest.raises(DataError, match="3 rows but 5 windows"):
        g.mean(z[:3])


def _record_data(n_records: int, seed: int, windows: int = 3) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Records of ``windows`` windows each; a record's class shows only weakly in each window
    (noise dominates) but clearly in the mean of its windows, as a rhythm shows over a recording."""
    g = torch.Generator().manual_seed(seed)
    y_rec = torch.arange(n_records) % 2
    rec = np.repeat(np.arange(n_records) + 1000 * seed, windows)
    y = y_rec.repeat_interleave(windows)
    x = torch.randn((len(y), *SHAPE), generator=g) * 2.0
    x[y == 1, :, 1, :] += 1.2
    return x, y, rec


def _probe(z, y, zv, yv, zt, yt):  # type: ignore[no-untyped-def]
    return linear_probe(z, y, zt, yt, ["a", "b"], z_val=zv, y_val=yv, c_grid=(0.1, 1.0))


def test_record_probe_scores_records_and_beats_windows() -> None:
    tr, va, te = _record_data(60, 0, 8), _record_data(30, 1, 8), _record_data(40, 2, 8)
    data = {"x_train": tr[0], "y_train": tr[1], "x_val": va[0], "y_val": va[1], "x_test": te[0], "y_test": te[1]}
    records = {"train": tr[2], "val": va[2], "test": te[2]}
    out = run_unit(
        Unit("spectrogram_linear", 0), data, ["a", "b"], probe_kwargs={"c_grid": (0.1, 1.0)}, records=records
    )
    assert out["y_pred"].shape == (40,) and out["y_pred_windows"].shape == (320,)
    assert out["n_train"] == 60  # fitted on records, not windows
    windows = run_unit(Unit("spectrogram_linear", 0), data, ["a", "b"], probe_kwargs={"c_grid": (0.1, 1.0)})
    assert out["accuracy"] > windows["accuracy"] + 0.1  # pooling 8 windows averages the noise out
    win_acc = float((out["y_pred_windows"] == te[1].numpy()).mean())
    assert win_acc < out["accuracy"]
    with pytest.raises(DataError, match="missing the records"):
        run_unit(Unit("spectrogram_linear", 0), data, ["a", "b"], records={"train": tr[2]})


def test_record_fraction_takes_whole_records() -> None:
    tr, va, te = _record_data(40, 0), _record_data(10, 1), _record_data(10, 2)
    data = {"x_train": tr[0], "y_train": tr[1], "x_val": va[0], "y_val": va[1], "x_test": te[0], "y_test": te[1]}
    records = {"train": tr[2], "val": va[2], "test": te[2]}
    torch.manual_seed(0)
    enc = nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(SHAPE)), 6), nn.ReLU())
    out = run_unit(
        Unit("finetune", 0, 0.25),
        data,
        ["a", "b"],
        encoder_factory=lambda s: enc,
        fraction_indices=label_fraction_indices,
        records=records,
        finetune_kwargs=dict(epochs=1, batch_size=8, lr=1e-3, encoder_lr=0.0, weight_decay=0.0, probe_c_grid=(1.0,)),
    )
    assert out["n_train_records"] == 10 and out["n_train"] == 30  # 25 % of 40 records, all 3 windows each
    assert out["y_pred"].shape == (10,) and out["y_pred_windows"].shape == (30,)


def test_record_finetune_starts_as_the_record_probe() -> None:
    """LP-FT at record level: with nothing trained, the kept model predicts what the probe on
    record-mean embeddings predicts (a linear head of the mean = the mean of the heads)."""
    torch.manual_seed(0)
    enc = nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(SHAPE)), 8), nn.ReLU())
    (x, y, r), (xv, yv, rv), (xt, yt, rt) = _record_data(40, 0), _record_data(16, 1), _record_data(20, 2)
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
        epochs=2,
        batch_size=16,
        lr=0.0,
        encoder_lr=0.0,
        weight_decay=0.0,
        seed=0,
        progress=False,
        probe_c_grid=(0.1, 1.0),
        train_records=r,
        val_records=rv,
        test_records=rt,
    )
    g, gv, gt = Groups.of(r), Groups.of(rv), Groups.of(rt)
    z = lambda a: embed(enc, a)  # noqa: E731
    probe = _probe(g.mean(z(x)), g.labels(y), gv.mean(z(xv)), gv.labels(yv), gt.mean(z(xt)), gt.labels(yt))
    assert out["best_epoch"] == 0 and out["n_records"] == 20
    np.testing.assert_array_equal(out["y_pred"], probe["y_pred"])
    with pytest.raises(DataError, match="needs train_records, val_records and test_records"):
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
            train_records=r,
        )


def test_record_pairs_draw_another_window_of_the_same_record() -> None:
    rec = torch.tensor([5, 5, 5, 7, 9, 9, 5])
    pairs = RecordPairs(rec)
    gen = torch.Generator().manual_seed(0)
    seen: set[tuple[int, int]] = set()
    for _ in range(50):
        idx = torch.arange(7)
        q = pairs.partner(idx, gen)
        assert torch.equal(rec[q], rec)  # same record
        assert q[3] == 3  # a single-window record pairs with itself
        assert bool((q[[0, 1, 2, 4, 5, 6]] != idx[[0, 1, 2, 4, 5, 6]]).all())  # otherwise another window
        seen.update(zip(idx.tolist(), q.tolist()))
    assert {(0, 1), (0, 2), (0, 6)} <= seen  # every other window of the record is drawn


def test_transfer_check_names_the_setting_and_both_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from trls_core.stages.evaluate import check_transfer

    enc = tmp_path / "models" / "cinc2017" / "tfrnn_seed0" / "encoder.json"
    enc.parent.mkdir(parents=True)
    stft = {
        "n_fft": 128,
        "hop": 16,
        "win_length": None,
        "window": "hann",
        "center": True,
        "log_eps": 1e-3,
        "fmax_bin": 43,
        "normalisation": "train_per_freq",
    }
    enc.write_text(json.dumps({"config": {"in_channels": 1, "fs": 150.0, "stft": stft}}))
    meta_path = tmp_path / "data" / "spectrograms" / "ecg200" / "meta.json"
    ok = {"dataset": "ecg200", "n_channels": 1, "fs": 150.0, "stft": {**stft, "normalisation": "per_window"}}
    check_transfer(enc, ok, meta_path)  # the normaliser is the target's own: not a mismatch
    with pytest.raises(
        DataError,
        match=r"ecg200/meta.json with the encoder of .*encoder.json: channels: the "
        r"encoder reads 1, the data has 2 \(set ecg200.parquet.channels\)",
    ):
        check_transfer(enc, {**ok, "n_channels": 2}, meta_path)
    with pytest.raises(
        DataError, match=r"rate: .* 150 Hz, the data is at 120 Hz \(set ecg200.parquet.target_fs: 150\)"
    ):
        check_transfer(enc, {**ok, "fs": 120.0}, meta_path)
    with pytest.raises(DataError, match=r"ecg200.spectrogram.n_fft is 64, the encoder's is 128"):
        check_transfer(enc, {**ok, "stft": {**stft, "n_fft": 64}}, meta_path)
    enc.write_text("{not json")
    with pytest.raises(DataError, match="encoder.json: unreadable encoder config"):
        check_transfer(enc, ok, meta_path)


def test_set_overrides_are_validated_like_params() -> None:
    from trls_core.config import ConfigError, load_params, parse_overrides

    assert parse_overrides(["pretrain.epochs=3", "model.tfrnn.stem_stride=[2, 2]", "evaluate.fractions=[]"]) == {
        "pretrain": {"epochs": 3},
        "model": {"tfrnn": {"stem_stride": [2, 2]}},
        "evaluate": {"fractions": []},
    }
    p = load_params(profile="cinc_record", sets=["pretrain.positives=record", "pretrain.epochs=2"])
    assert p.pretrain.positives == "record" and p.pretrain.epochs == 2 and p.evaluate.level == "record"
    with pytest.raises(ConfigError, match="pretrain.epochs: Input should be greater than 0"):
        load_params(sets=["pretrain.epochs=0"])
    with pytest.raises(ConfigError, match="pretrain.positve: unknown key"):
        load_params(sets=["pretrain.positve=record"])
    with pytest.raises(ConfigError, match="expected dotted.key=value"):
        parse_overrides(["pretrain.epochs"])
    with pytest.raises(ConfigError, match="label_pool and val_windows must be null"):
        load_params(profile="cinc_record", sets=["evaluate.label_pool=100"])


def test_record_batches_cover_every_record_once_per_pass() -> None:
    from trls_core.evaluate.record_batches import RecordBatches

    rec = np.array([5, 5, 7, 9, 9, 9, 7, 11])  # windows of 4 records, interleaved
    g = Groups.of(rec)
    labels = torch.tensor([0, 1, 0, 1])
    batches = RecordBatches(g, 2, labels)
    gen = torch.Generator().manual_seed(0)
    batches.shuffle(gen)
    seen = []
    for _ in range(2):
        idx, seg, yb = batches.next(gen)
        rows = np.unique(g.inverse[idx.numpy()])
        assert len(rows) == 2 and len(yb) == 2
        for k in range(2):  # seg k holds exactly the windows of the k-th record of the batch
            mine = idx.numpy()[seg.numpy() == k]
            assert len(np.unique(g.inverse[mine])) == 1
            r = g.inverse[mine[0]]
            assert sorted(mine) == sorted(np.flatnonzero(g.inverse == r)) and int(yb[k]) == int(labels[r])
        seen.extend(rows.tolist())
    assert sorted(seen) == [0, 1, 2, 3]


def test_record_loss_trains_on_record_means() -> None:
    """loss='record': from a random head on a frozen encoder, training on the mean window logits of
    each record learns the record task; without record ids it is refused."""
    torch.manual_seed(0)
    enc = nn.Flatten()
    (x, y, r), (xv, yv, rv), (xt, yt, rt) = _record_data(200, 0, 8), _record_data(40, 1, 8), _record_data(60, 2, 8)
    kw = dict(
        epochs=4,
        batch_size=64,
        lr=5e-2,
        encoder_lr=0.0,
        weight_decay=0.0,
        seed=0,
        progress=False,
        head_init="random",
    )
    out = finetune(
        enc, 2, x, y, xv, yv, xt, yt, ["a", "b"], train_records=r, val_records=rv, test_records=rt, loss="record", **kw
    )
    assert out["best_epoch"] >= 1 and out["accuracy"] >= 0.75  # chance 0.5; 0.8 measured
    losses = [h["train_loss"] for h in out["history"]]
    assert losses[-1] < losses[0]
    with pytest.raises(DataError, match="loss 'record' needs record ids"):
        finetune(enc, 2, x, y, xv, yv, xt, yt, ["a", "b"], loss="record", **kw)
    with pytest.raises(DataError, match="evaluate.finetune.loss"):
        finetune(enc, 2, x, y, xv, yv, xt, yt, ["a", "b"], loss="records", **kw)


def test_frozen_batchnorm_keeps_the_pretrained_statistics() -> None:
    """batch_norm='frozen': fine-tuning leaves the encoder's BatchNorm running statistics as they were;
    'train' replaces them with the fine-tuning batches' (what shifts the features under an LP head)."""
    torch.manual_seed(0)
    enc = nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(SHAPE)), 8), nn.BatchNorm1d(8), nn.ReLU())
    with torch.no_grad():  # statistics "from pretraining" that differ from the data's
        enc[2].running_mean.fill_(3.0)
        enc[2].running_var.fill_(5.0)
    (x, y, r), (xv, yv, rv), (xt, yt, rt) = _record_data(40, 0), _record_data(16, 1), _record_data(20, 2)
    kw = dict(epochs=1, batch_size=16, lr=1e-3, encoder_lr=1e-3, weight_decay=0.0, seed=0, progress=False)
    # a random head and one epoch: the kept state is the trained one (no probe start competes as epoch 0)
    kw.update(head_init="random", return_model=True, train_records=r, val_records=rv, test_records=rt)
    frozen = finetune(enc, 2, x, y, xv, yv, xt, yt, ["a", "b"], batch_norm="frozen", **kw)["model"]
    torch.testing.assert_close(frozen.encoder[2].running_mean, torch.full((8,), 3.0))
    torch.testing.assert_close(frozen.encoder[2].weight, enc[2].weight)  # affine weights not trained either
    assert frozen.encoder[1].weight.ne(enc[1].weight).any()  # the rest of the encoder did train
    adapted = finetune(enc, 2, x, y, xv, yv, xt, yt, ["a", "b"], batch_norm="train", **kw)["model"]
    assert (adapted.encoder[2].running_mean - 3.0).abs().max() > 0.1  # moved towards the batches' statistics
    with pytest.raises(DataError, match="batch_norm"):
        finetune(enc, 2, x, y, xv, yv, xt, yt, ["a", "b"], batch_norm="eval", **kw)


def test_batch_norm_head_starts_as_the_folded_probe_head() -> None:
    """head_norm='batch_norm': the BatchNorm holds the probe's standardisation, so in eval mode the head
    gives the folded head's logits; in train mode it re-standardises a drifted feature scale."""
    from trls_core.evaluate.lpft import Classifier, head_logits, init_head_from_probe, make_head

    torch.manual_seed(0)
    enc = nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(SHAPE)), 8), nn.ReLU())
    (x, y, _), (xv, yv, _) = _record_data(40, 0), _record_data(16, 1)
    models = {}
    for norm in ("folded", "batch_norm"):
        models[norm] = Classifier(enc, make_head(8, 2, norm))
        init_head_from_probe(models[norm], x, y.numpy(), xv, yv.numpy(), 2, ["a", "b"], 0, [1.0], 64, "cpu")
    z = embed(enc, xv)
    folded, normed = (head_logits(models[k], z, 64, "cpu") for k in ("folded", "batch_norm"))
    np.testing.assert_allclose(normed, folded, rtol=1e-4, atol=1e-4)
    head = models["batch_norm"].head.train()
    zt = torch.as_tensor(z, dtype=torch.float32)
    drifted = head(zt * 100.0 + 5.0)  # a feature scale the folded head would multiply into huge logits
    assert drifted.abs().max() < 100.0 * 0.5 * models["folded"].head(zt * 100.0 + 5.0).abs().max()
    with pytest.raises(ValueError, match="head norm"):
        make_head(8, 2, "layer_norm")
