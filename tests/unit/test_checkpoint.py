"""Checkpoints: safetensors round trip, AdamW resume, clear errors on bad files."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trls_core.checkpoint import (
    load_checkpoint,
    optimizer_state_to_tensors,
    save_checkpoint,
    tensors_to_optimizer_state,
)
from trls_core.errors import DataError


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))


def _steps(model: nn.Module, opt: torch.optim.Optimizer, n: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.randn(16, 4, generator=g)
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_round_trip_model_and_adamw_resume(tmp_path):
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.05, betas=(0.8, 0.95))
    _steps(model, opt, 3, seed=1)
    path = tmp_path / "ck" / "epoch3.safetensors"
    meta = {"epoch": 3, "params": {"lr": 1e-2}, "names": ["a", "b"]}
    save_checkpoint(
        path, {"model": model.state_dict(), "optimizer": optimizer_state_to_tensors(opt.state_dict())}, meta
    )
    assert path.is_file() and not list(path.parent.glob("*.tmp"))

    tensors, meta2 = load_checkpoint(path)
    assert meta2 == meta
    for k, v in model.state_dict().items():
        assert torch.equal(tensors["model"][k], v), k

    model2 = _model()
    with torch.no_grad():
        for p in model2.parameters():
            p.zero_()
    model2.load_state_dict(tensors["model"])
    opt2 = torch.optim.AdamW(model2.parameters(), lr=1.0)
    opt2.load_state_dict(tensors_to_optimizer_state(tensors["optimizer"]))
    assert opt2.param_groups[0]["betas"] == (0.8, 0.95) and opt2.param_groups[0]["lr"] == 1e-2

    _steps(model, opt, 2, seed=7)
    _steps(model2, opt2, 2, seed=7)
    for (k, a), b in zip(model.state_dict().items(), model2.state_dict().values()):
        assert torch.equal(a, b), k


def test_shared_tensors_and_empty_groups_are_saved(tmp_path):
    lin = nn.Linear(3, 3)
    sd = {"w": lin.weight, "w_tied": lin.weight, "view": lin.weight[:, 0]}  # shared storage + view
    save_checkpoint(tmp_path / "c.safetensors", {"model": sd, "empty": {}}, {})
    tensors, meta = load_checkpoint(tmp_path / "c.safetensors")
    assert torch.equal(tensors["model"]["view"], lin.weight[:, 0].detach())
    assert tensors["empty"] == {} and meta == {}


def test_python_scalar_optimizer_state_round_trips():
    sd = {"state": {0: {"step": 5, "exp_avg": torch.ones(2)}}, "param_groups": [{"lr": 0.1, "params": [0]}]}
    back = tensors_to_optimizer_state(optimizer_state_to_tensors(sd))
    assert back["state"][0]["step"] == 5 and isinstance(back["state"][0]["step"], int)
    assert torch.equal(back["state"][0]["exp_avg"], torch.ones(2))
    assert back["param_groups"] == [{"lr": 0.1, "params": [0]}]


def test_truncated_file_raises_naming_the_file(tmp_path):
    path = tmp_path / "bad.safetensors"
    save_checkpoint(path, {"model": _model().state_dict()}, {"epoch": 1})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="bad.safetensors"):
        load_checkpoint(path)
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(DataError, match="bad.safetensors"):
        load_checkpoint(path)


def test_missing_file_and_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        load_checkpoint(tmp_path / "nope.safetensors")
    with pytest.raises(TypeError, match="optimizer_state_to_tensors"):
        save_checkpoint(tmp_path / "x.safetensors", {"optimizer": {"lr": 0.1}}, {})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="JSON"):
        save_checkpoint(tmp_path / "x.safetensors", {"m": {}}, {"bad": object()})
    assert not (tmp_path / "x.safetensors").exists()


def test_failed_save_keeps_previous_checkpoint(tmp_path):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"m": {"a": torch.ones(2)}}, {"v": 1})
    with pytest.raises(TypeError):
        save_checkpoint(path, {"m": {"a": torch.zeros(2)}}, {"v": object()})
    tensors, meta = load_checkpoint(path)
    assert meta == {"v": 1} and torch.equal(tensors["m"]["a"], torch.ones(2))
