"""Encoder throughput: TFRNN vs a CNN of similar size, and the BYOL step.

Why: the TFRNN's RNNs run sequentially along F and T, so on the CPU it is
far slower than a CNN of the same parameter count; this measures by how
much, and whether TRLS small-profile pretraining (~7,400 windows of
1 x 17 x 45, ~25 epochs) fits in minutes on 2 cores.

    python bench/bench_encoder.py [--out bench/results/encoder.json] [--quick] [--device cpu]

Writes JSON: per shape and model, parameter count and training (forward +
backward) samples/s, median of repeats after warm-up; the TFRNN/CNN ratio;
a full BYOL step (both views, online fwd+bwd, target fwd, AdamW, EMA)
for the small shape with the projected pretraining time; and machine info.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trls_core.io import write_json  # noqa: E402
from trls_core.models import TFRNN, CNNEncoder  # noqa: E402
from trls_core.ssl.byol import BYOL  # noqa: E402

SMALL = (128, 1, 17, 45)  # epilepsy small profile: 178 samples, n_fft 32, hop 4
LARGE = (32, 1, 129, 47)  # sleep-edf-like: 3000 samples, n_fft 256, hop 64
PRETRAIN_WINDOWS = 7400
PRETRAIN_EPOCHS = 25

TFRNN_VARIANTS: dict[str, dict[str, Any]] = {
    "tfrnn_d32_l3": dict(dim=32, depth=3),
    "tfrnn_d32_l2": dict(dim=32, depth=2),
    "tfrnn_d32_l3_h16": dict(dim=32, depth=3, rnn_hidden=16),
    "tfrnn_d32_l3_h16_s2": dict(dim=32, depth=3, rnn_hidden=16, stem_stride=(1, 2)),
    "tfrnn_d32_l2_h16_s2": dict(dim=32, depth=2, rnn_hidden=16, stem_stride=(1, 2)),
    "tfrnn_d16_l2_h8_s2": dict(dim=16, depth=2, rnn_hidden=8, stem_stride=(1, 2)),
    "tfrnn_small_profile": dict(dim=16, depth=2, rnn_hidden=8, stem_stride=(1, 2), freq_bands=4),
}
REFERENCE = "tfrnn_d32_l3"


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def matched_cnn_width(target: int, in_channels: int, depth: int, rep_dim: int) -> int:
    """The CNNEncoder width whose parameter count is closest to ``target``."""
    return min(range(2, 129), key=lambda w: abs(n_params(CNNEncoder(in_channels, w, depth, rep_dim)) - target))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_it(fn: Callable[[], None], device: torch.device, warmup: int, repeats: int) -> float:
    """Median seconds per call of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def train_throughput(
    model: nn.Module, shape: tuple[int, ...], device: torch.device, warmup: int, repeats: int
) -> float:
    """Forward + backward samples/s in train mode."""
    model.to(device).train()
    x = torch.randn(*shape, device=device)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        model(x).square().mean().backward()

    return shape[0] / time_it(step, device, warmup, repeats)


def byol_step_throughput(
    encoder: nn.Module, shape: tuple[int, ...], device: torch.device, warmup: int, repeats: int
) -> float:
    """Samples/s of one full BYOL training step (augmentation excluded)."""
    model = BYOL(encoder, rep_dim=128).to(device).train()
    opt = torch.optim.AdamW(model.online_parameters(), lr=1e-3)
    x = torch.randn(*shape, device=device)
    a, b = x + 0.1 * torch.randn_like(x), x * 0.9

    def step() -> None:
        loss = model(a, b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        model.update_target(0.99)

    return shape[0] / time_it(step, device, warmup, repeats)


def machine_info(device: torch.device) -> dict[str, Any]:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "encoder.json")
    ap.add_argument("--quick", action="store_true", help="small shape only, fewer repeats")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    warmup, repeats = (1, 3) if args.quick else (2, 5)
    shapes = {"small": SMALL} if args.quick else {"small": SMALL, "large": LARGE}
    variants = {k: TFRNN_VARIANTS[k] for k in (REFERENCE, "tfrnn_small_profile")} if args.quick else TFRNN_VARIANTS

    torch.manual_seed(0)
    ref_params = n_params(TFRNN(1, rep_dim=128, **TFRNN_VARIANTS[REFERENCE]))
    cnn_depth = 3
    cnn_width = matched_cnn_width(ref_params, 1, cnn_depth, 128)

    results: dict[str, Any] = {"machine": machine_info(device), "warmup": warmup, "repeats": repeats, "shapes": {}}
    for shape_name, shape in shapes.items():
        rows: dict[str, Any] = {}
        for name, kw in variants.items():
            m = TFRNN(shape[1], rep_dim=128, **kw)
            rows[name] = {
                "kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in kw.items()},
                "params": n_params(m),
                "train_samples_per_s": train_throughput(m, shape, device, warmup, repeats),
            }
            print(
                f"[{shape_name} {tuple(shape)}] {name}: {rows[name]['params']} params, "
                f"{rows[name]['train_samples_per_s']:.0f} samples/s",
                flush=True,
            )
        cnn = CNNEncoder(shape[1], cnn_width, cnn_depth, 128)
        rows["cnn"] = {
            "kwargs": {"width": cnn_width, "depth": cnn_depth},
            "params": n_params(cnn),
            "train_samples_per_s": train_throughput(cnn, shape, device, warmup, repeats),
        }
        print(
            f"[{shape_name} {tuple(shape)}] cnn w{cnn_width}: {rows['cnn']['params']} params, "
            f"{rows['cnn']['train_samples_per_s']:.0f} samples/s",
            flush=True,
        )
        results["shapes"][shape_name] = {
            "batch_shape": list(shape),
            "models": rows,
            "param_ratio_tfrnn_over_cnn": rows[REFERENCE]["params"] / rows["cnn"]["params"],
            "speed_ratio_tfrnn_over_cnn": rows[REFERENCE]["train_samples_per_s"] / rows["cnn"]["train_samples_per_s"],
        }

    # Full BYOL steps on the small shape and the projected pretraining time.
    byol: dict[str, Any] = {}
    byol_variants = (
        [REFERENCE, "tfrnn_small_profile"]
        if args.quick
        else [REFERENCE, "tfrnn_d32_l2", "tfrnn_d32_l3_h16_s2", "tfrnn_d32_l2_h16_s2", "tfrnn_d16_l2_h8_s2"]
    )
    for name in byol_variants:
        sps = byol_step_throughput(TFRNN(SMALL[1], rep_dim=128, **TFRNN_VARIANTS[name]), SMALL, device, warmup, repeats)
        byol[name] = {"samples_per_s": sps, "projected_pretrain_s": PRETRAIN_WINDOWS * PRETRAIN_EPOCHS / sps}
        print(
            f"[byol small] {name}: {sps:.0f} samples/s, {PRETRAIN_WINDOWS}x{PRETRAIN_EPOCHS} "
            f"-> {byol[name]['projected_pretrain_s']:.0f} s",
            flush=True,
        )
    sps = byol_step_throughput(CNNEncoder(SMALL[1], cnn_width, cnn_depth, 128), SMALL, device, warmup, repeats)
    byol["cnn"] = {"samples_per_s": sps, "projected_pretrain_s": PRETRAIN_WINDOWS * PRETRAIN_EPOCHS / sps}
    print(f"[byol small] cnn: {sps:.0f} samples/s -> {byol['cnn']['projected_pretrain_s']:.0f} s", flush=True)
    results["byol_step_small"] = {
        "pretrain_windows": PRETRAIN_WINDOWS,
        "pretrain_epochs": PRETRAIN_EPOCHS,
        "models": byol,
    }
    write_json(args.out, results)
    print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
