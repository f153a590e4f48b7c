"""BYOL pretraining loop: runs, schedules, callbacks, exact resume."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from trls_core.checkpoint import (
    load_checkpoint,
    optimizer_state_to_tensors,
    save_checkpoint,
    tensors_to_optimizer_state,
)
from trls_core.models import TFRNN
from trls_core.ssl.byol import BYOL
from trls_core.train import lr_at, pretrain_encoder


class NoiseViews(nn.Module):
    """Two views from the global RNG, like kornia augmentations do."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x + 0.3 * torch.randn_like(x), x * (1 + 0.2 * torch.rand(x.shape[0], 1, 1, 1))


def _model(seed: int = 0) -> BYOL:
    torch.manual_seed(seed)
    return BYOL(TFRNN(1, dim=4, depth=2, rep_dim=8), rep_dim=8, proj_hidden=16, proj_dim=8, pred_hidden=16)


def _data() -> Tensor:
    return torch.randn(20, 1, 9, 11, generator=torch.Generator().manual_seed(3)).half()  # float16 storage


KW = dict(batch_size=8, lr=1e-2, weight_decay=1e-4, tau_base=0.9, seed=5, warmup_epochs=1, progress=False)


def test_runs_and_reports_epochs():
    model = _model()
    target0 = [p.clone() for p in model.target_encoder.parameters()]
    seen = []
    ckpts = []
    hist = pretrain_encoder(
        model,
        _data(),
        NoiseViews(),
        epochs=2,
        on_epoch=seen.append,
        on_checkpoint=lambda e, m, o: ckpts.append((e, m is model, isinstance(o, torch.optim.AdamW))),
        **KW,
    )
    assert [h["epoch"] for h in hist] == [0, 1] and seen == hist
    assert ckpts == [(1, True, True), (2, True, True)]
    for h in hist:
        assert math.isfinite(h["loss"]) and 0 <= h["loss"] <= 4 and h["seconds"] > 0
    # 20 windows, batch 8, drop_last -> 2 steps/epoch, 4 in all, warm-up 2 steps
    assert hist[0]["lr"] == pytest.approx(1e-2)  # end of warm-up
    assert hist[1]["lr"] == pytest.approx(lr_at(3, 4, 1e-2, 2))
    assert hist[1]["tau"] > hist[0]["tau"] >= 0.9
    moved = [not torch.equal(a, b) for a, b in zip(target0, model.target_encoder.parameters())]
    assert any(moved)


def test_lr_schedule():
    assert lr_at(0, 10, 1.0, 2) == pytest.approx(0.5)
    assert lr_at(1, 10, 1.0, 2) == pytest.approx(1.0)
    assert lr_at(2, 10, 1.0, 2) == pytest.approx(1.0)
    assert lr_at(10, 10, 1.0, 2) == pytest.approx(0.0)
    assert lr_at(6, 10, 1.0, 2) == pytest.approx(0.5)
    assert lr_at(15, 10, 1.0, 2) == pytest.approx(0.0)  # past the end: stays at 0
    assert lr_at(3, 2, 1.0, 2) == pytest.approx(0.0)  # no decay steps left: 0 right after warm-up
    assert lr_at(2, 2, 1.0, 2) == pytest.approx(1.0)
    assert lr_at(0, 4, 2.0) == pytest.approx(2.0)  # no warm-up: starts at base_lr
    assert lr_at(2, 4, 2.0) == pytest.approx(1.0)


def test_caller_rng_untouched_and_seed_matters():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    m1 = _model()
    torch.manual_seed(123)
    pretrain_encoder(m1, _data(), NoiseViews(), epochs=1, **KW)
    assert torch.equal(torch.rand(3), expected)
    m2 = _model()
    pretrain_encoder(m2, _data(), NoiseViews(), epochs=1, **{**KW, "seed": 6})
    assert not torch.equal(m1.online_encoder.head.weight, m2.online_encoder.head.weight)


def test_resume_from_checkpoint_equals_uninterrupted_run(tmp_path):
    full = _model()
    pretrain_encoder(full, _data(), NoiseViews(), epochs=3, **KW)

    path = tmp_path / "ck.safetensors"

    def save(epochs_done: int, model: BYOL, opt: torch.optim.Optimizer) -> None:
        if epochs_done == 2:
            tensors = {"model": model.state_dict(), "optimizer": optimizer_state_to_tensors(opt.state_dict())}
            save_checkpoint(path, tensors, {"epochs_done": epochs_done})

    interrupted = _model()
    pretrain_encoder(interrupted, _data(), NoiseViews(), epochs=3, on_checkpoint=save, **KW)
    tensors, meta = load_checkpoint(path)

    resumed = _model(seed=99)  # different init: everything must come from the checkpoint
    resumed.load_state_dict(tensors["model"])
    hist = pretrain_encoder(
        resumed,
        _data(),
        NoiseViews(),
        epochs=3,
        start_epoch=meta["epochs_done"],
        optimizer_state=tensors_to_optimizer_state(tensors["optimizer"]),
        **KW,
    )
    assert [h["epoch"] for h in hist] == [2]
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_no_augmentation_and_bad_arguments():
    hist = pretrain_encoder(_model(), _data(), None, epochs=1, **KW)
    assert hist[0]["loss"] < 4
    with pytest.raises(ValueError, match="batch_size"):
        pretrain_encoder(_model(), _data(), None, epochs=1, **{**KW, "batch_size": 64})
    with pytest.raises(ValueError, match="start_epoch"):
        pretrain_encoder(_model(), _data(), None, epochs=1, start_epoch=2, **KW)


def test_the_checkpoint_is_saved_before_on_epoch_so_a_failing_logger_costs_no_epoch():
    """on_epoch (MLflow logging) raising after epoch 2 leaves epoch 2 saved: the rerun resumes after it."""
    order: list[tuple[str, int]] = []
    curve: list[dict] = [{"epoch": -1, "loss": 0.0}]  # a resumed run's history, continued in place

    class StoreDown(Exception):
        pass

    def log(rec: dict) -> None:
        order.append(("log", rec["epoch"] + 1))
        if rec["epoch"] == 1:
            raise StoreDown

    def save(epochs_done: int, model: BYOL, opt: torch.optim.Optimizer) -> None:
        assert curve[-1]["epoch"] == epochs_done - 1  # the epoch's record is in the curve it saves
        order.append(("save", epochs_done))

    with pytest.raises(StoreDown):
        pretrain_encoder(_model(), _data(), NoiseViews(), epochs=3, on_epoch=log, on_checkpoint=save, curve=curve, **KW)
    assert order == [("save", 1), ("log", 1), ("save", 2), ("log", 2)]
    assert [r["epoch"] for r in curve] == [-1, 0, 1]
