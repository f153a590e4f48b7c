"""Pretraining throughput, 1 vs 2 torchrun processes (DDP, gloo) on this machine.

Why: ``trls pretrain`` under ``torchrun --nproc-per-node N`` splits each
global batch over N ranks (trls_core/distributed.py); this measures what that
buys on the machine at hand, with the small profile's TFRNN, views and global
batch on synthetic spectrograms of its shape (1 x 17 x 45).

    python bench/bench_ddp.py [--steps 4] [--batch 128] [--out bench/results/scale_out.json]

Each run is ``torchrun --standalone --nproc-per-node N`` of this file as a
worker: two epochs of ``--steps`` global batches through ``pretrain_encoder``;
the second (warm) epoch is timed. One torch thread per process (docs/stack.md:
intra-op threads stall under contention on 2 cores); ``--threads-one-process``
adds a 1-process run with that many threads, the other way to use the cores.
Writes the key ``ddp`` of ``--out`` (read-modify-write: other keys, e.g. the
Dask fan-out's, are kept), with the load average before and after, since the
machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHAPE = (1, 17, 45)


def worker(out: Path, steps: int, batch: int, threads: int) -> None:
    import torch

    from trls_core import distributed
    from trls_core.config import load_params
    from trls_core.models.loading import build_encoder_from_params
    from trls_core.ssl.factory import build_ssl, build_views
    from trls_core.train import pretrain_encoder

    torch.set_num_threads(threads)
    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    x = torch.randn(steps * batch, *SHAPE, generator=torch.Generator().manual_seed(0)).abs()
    torch.manual_seed(0)
    model = build_ssl(params, build_encoder_from_params(params, SHAPE[0]), params.model.encoder_kwargs()["rep_dim"])
    with distributed.session("cpu") as dist:
        hist = pretrain_encoder(
            model, x, build_views(params), epochs=2, batch_size=batch, lr=3e-3, weight_decay=1e-4,
            tau_base=0.97, seed=0, progress=False, dist=dist,
        )  # fmt: skip
        rank = 0 if dist is None else dist.rank
    if rank == 0:
        out.write_text(json.dumps({"warm_epoch_s": hist[1]["seconds"], "cold_epoch_s": hist[0]["seconds"]}))


def run(nproc: int, steps: int, batch: int, threads: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        res = Path(tmp) / "r.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", __file__]
        cmd += ["--worker", str(res), "--steps", str(steps), "--batch", str(batch), "--threads", str(threads)]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
        wall = time.perf_counter() - t0
        r = json.loads(res.read_text())
    sec = r["warm_epoch_s"]
    return {
        "processes": nproc,
        "threads_per_process": threads,
        "global_batch": batch,
        "steps": steps,
        "warm_epoch_s": round(sec, 3),
        "s_per_global_step": round(sec / steps, 3),
        "samples_per_s": round(steps * batch / sec, 1),
        "launch_wall_s": round(wall, 1),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "scale_out.json")
    ap.add_argument("--steps", type=int, default=4, help="global batches per epoch (the 2nd epoch is timed)")
    ap.add_argument("--batch", type=int, default=128, help="global batch (pretrain.batch_size)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--threads-one-process", type=int, default=None, help="also: 1 process with this many threads")
    ap.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker is not None:
        worker(args.worker, args.steps, args.batch, args.threads)
        return {}

    load_before = os.getloadavg()
    runs = [run(1, args.steps, args.batch, args.threads), run(2, args.steps, args.batch, args.threads)]
    if args.threads_one_process:
        runs.append(run(1, args.steps, args.batch, args.threads_one_process))
    import torch

    result = {
        "what": "trls pretrain's loop (pretrain_encoder) under torchrun, gloo; small-profile TFRNN + views, "
        "synthetic 1x17x45 spectrograms; the 2nd (warm) epoch timed",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_before": [round(v, 2) for v in load_before],
            "load_avg_after": [round(v, 2) for v in os.getloadavg()],
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "runs": runs,
        "ratio_2_vs_1_process": round(runs[1]["samples_per_s"] / runs[0]["samples_per_s"], 3),
    }
    from trls_core.io import write_json

    doc = json.loads(args.out.read_text()) if args.out.is_file() else {}  # read-modify-write: only our key
    doc["ddp"] = result
    write_json(args.out, doc)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
