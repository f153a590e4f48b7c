"""pretrain.precision (fp32 | bf16) and pretrain.compile on one device: step time, compile time, loss.

Why: both settings exist for GPUs (bf16 autocast, torch.compile); this says
what they cost or buy where they also run (the CPU), and gives a GPU the same
measurement (``bench/gpu_check.sh`` runs it with ``--device cuda``).

    python bench/bench_precision.py [--device cpu] [--profile small] [--steps 3] [--batch 128] [--threads 1]
                                    [--variants fp32,bf16,fp32+compile] [--out bench/results/precision_cpu.json]

Each variant trains the profile's BYOL + TFRNN + views from the same seed on
the same synthetic spectrograms (the profile's shape, 1 x 17 x 45 for
small/paper) for two epochs of ``--steps`` batches through
``pretrain_encoder``: epoch 1 (warm) gives the step time, epoch 0 minus
epoch 1 the one-off cost (compilation). Losses are the two epochs' means,
compared with fp32's.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHAPE = (1, 17, 45)


def measure(profile: str | None, device: str, variant: str, steps: int, batch: int) -> dict[str, Any]:
    import torch

    from trls_core.config import load_params
    from trls_core.models.loading import build_encoder_from_params
    from trls_core.ssl.factory import build_ssl, build_views
    from trls_core.train import CompileFailed, pretrain_encoder

    precision, _, extra = variant.partition("+")
    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml", profile, [])
    x = torch.randn(steps * batch, *SHAPE, generator=torch.Generator().manual_seed(0)).abs()
    torch.manual_seed(0)
    model = build_ssl(params, build_encoder_from_params(params, SHAPE[0]), params.model.encoder_kwargs()["rep_dim"])
    t0 = time.perf_counter()
    try:
        hist = pretrain_encoder(
            model, x, build_views(params), epochs=2, batch_size=batch, lr=3e-3, weight_decay=1e-4,
            tau_base=0.97, device=device, seed=0, progress=False, precision=precision, compile=extra == "compile",
        )  # fmt: skip
    except CompileFailed as exc:
        return {"variant": variant, "error": str(exc)}
    warm = hist[1]["seconds"]
    return {
        "variant": variant,
        "s_per_step": round(warm / steps, 4),
        "samples_per_s": round(steps * batch / warm, 1),
        "first_epoch_extra_s": round(hist[0]["seconds"] - warm, 2),
        "total_s": round(time.perf_counter() - t0, 1),
        "losses": [round(h["loss"], 6) for h in hist],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "precision_cpu.json")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--profile", default=None, help="params.yaml profile (default: the base, small)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--variants", default="fp32,bf16,fp32+compile")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    runs = [measure(args.profile, args.device, v, args.steps, args.batch) for v in args.variants.split(",")]
    base = next((r for r in runs if r["variant"] == "fp32" and "error" not in r), None)
    for r in runs:
        if base is not None and "error" not in r and r is not base:
            r["step_time_vs_fp32"] = round(r["s_per_step"] / base["s_per_step"], 3)
            r["max_rel_loss_diff_vs_fp32"] = round(
                max(abs(a - b) / abs(b) for a, b in zip(r["losses"], base["losses"])), 5
            )
    info: dict[str, Any] = {
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "threads": args.threads,
        "load_avg_before": [round(v, 2) for v in load_before],
        "load_avg_after": [round(v, 2) for v in os.getloadavg()],
        "torch": torch.__version__,
    }
    if args.device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
    result = {
        "what": "BYOL step of the profile's TFRNN + views (pretrain_encoder), synthetic 1x17x45 spectrograms; "
        "2 epochs of --steps batches, the 2nd timed; first_epoch_extra_s: the one-off cost (compilation)",
        "profile": args.profile or "small",
        "device": args.device,
        "batch": args.batch,
        "steps": args.steps,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": info,
        "runs": runs,
    }
    from trls_core.io import write_json

    write_json(args.out, result)
    import json

    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
