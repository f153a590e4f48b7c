"""pretrain.precision / pretrain.compile (GPU readiness) and the DDP pieces that need no process group."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trls_core.config import load_params
from trls_core.distributed import DistContext, settings_digest, torchrun_env
from trls_core.errors import ConfigError
from trls_core.ssl.byol import BYOL
from trls_core.stages.pretrain import fingerprint
from trls_core.train import CompileFailed, pretrain_encoder

ROOT = Path(__file__).resolve().parents[2]
META = {"parquet_sha256": "0" * 64, "stft": {"n_fft": 32, "hop": 4}}


def test_new_keys_at_their_defaults_keep_stored_fingerprints() -> None:
    # computed by the code before pretrain.precision / pretrain.compile existed (commit 4b82047)
    before = {None: "5ab367374c678ebc", "paper": "290236517e48b23c", "cinc_record": "d547f025c40dac13"}
    for profile, fp in before.items():
        assert fingerprint(load_params(ROOT / "params.yaml", profile, []), 0, META) == fp
    base = load_params(ROOT / "params.yaml")
    assert (base.pretrain.precision, base.pretrain.compile) == ("fp32", False)
    compiled = load_params(ROOT / "params.yaml", None, ["pretrain.compile=true"])
    assert fingerprint(compiled, 0, META) == fingerprint(base, 0, META)  # an execution detail, like device
    bf16 = load_params(ROOT / "params.yaml", None, ["pretrain.precision=bf16"])
    assert fingerprint(bf16, 0, META) != fingerprint(base, 0, META)  # other weights
    with pytest.raises(ConfigError, match="precision"):
        load_params(ROOT / "params.yaml", None, ["pretrain.precision=fp16"])


def _tiny() -> tuple[BYOL, torch.Tensor]:
    torch.manual_seed(0)
    enc = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(18, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU())
    return BYOL(enc, 8, proj_hidden=16, proj_dim=8, pred_hidden=16), torch.randn(32, 1, 3, 6)


def test_bf16_autocast_trains_fp32_weights_near_the_fp32_curve() -> None:
    curves = {}
    for precision in ("fp32", "bf16"):
        model, x = _tiny()
        hist = pretrain_encoder(model, x, None, 2, 8, 1e-3, 0.0, 0.99, progress=False, precision=precision)
        curves[precision] = [h["loss"] for h in hist]
        assert all(p.dtype == torch.float32 for p in model.parameters())
    assert curves["bf16"] != curves["fp32"]  # autocast did run in bf16
    assert curves["bf16"] == pytest.approx(curves["fp32"], rel=0.05)  # bf16 keeps ~3 significant digits
    with pytest.raises(ValueError, match="precision"):
        pretrain_encoder(*_tiny(), None, 1, 8, 1e-3, 0.0, 0.99, progress=False, precision="fp16")


def test_a_compile_that_fails_is_named() -> None:
    model, x = _tiny()

    def broken_compile() -> None:  # what a box without a working compiler does at the first call
        def boom(*args: object) -> None:
            raise RuntimeError("InductorError: no working C++ compiler\nmore lines")

        model.online_encoder.forward = boom

    model.online_encoder.compile = broken_compile
    with pytest.raises(CompileFailed, match="RuntimeError: InductorError: no working C\\+\\+ compiler$"):
        pretrain_encoder(model, x, None, 1, 8, 1e-3, 0.0, 0.99, progress=False, compile=True)


@pytest.mark.slow
def test_compiled_encoder_matches_eager_and_keeps_state_dict_keys() -> None:
    runs = {}
    for compile in (False, True):
        model, x = _tiny()
        keys = sorted(model.state_dict())
        runs[compile] = [h["loss"] for h in pretrain_encoder(model, x, None, 2, 8, 1e-3, 0.0, 0.99, progress=False,
                                                              compile=compile)]  # fmt: skip
        assert sorted(model.state_dict()) == keys  # checkpoints and encoder files are unchanged
    assert runs[True] == pytest.approx(runs[False], rel=1e-4)


def test_torchrun_env_and_global_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert torchrun_env() is None
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert torchrun_env() is None  # torchrun --nproc-per-node 1: one process, no group
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="RANK is not"):
        torchrun_env()
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert torchrun_env() == (1, 2, 1)

    ctx = DistContext(rank=1, world_size=2, local_rank=1, backend="gloo")
    assert ctx.local_batch(128) == 64
    assert torch.equal(ctx.shard(torch.arange(8)), torch.arange(4, 8))
    with pytest.raises(ConfigError, match="pretrain.batch_size 127 .* multiple of 2"):
        ctx.local_batch(127)
    assert settings_digest({"a": 1, "b": [2]}) == settings_digest({"b": [2], "a": 1})


def test_gpu_check_without_a_gpu_says_so_and_writes_nothing(tmp_path: Path) -> None:
    import shutil
    import subprocess

    if shutil.which("nvidia-smi"):
        pytest.skip("a GPU machine: bench/gpu_check.sh would run for minutes")
    out = tmp_path / "gpu_check.json"
    res = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh")],
        env={"PATH": "/usr/bin:/bin", "GPU_CHECK_OUT": str(out)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0 and "no GPU on this machine" in res.stdout
    assert not out.exists()
