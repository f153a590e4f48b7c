"""TS2Vec training step time vs ``max_train_length`` on long windows (CinC 2017: 1,500 samples).

TS2Vec's temporal contrast is O(L^2) per window, so the crop bound decides
whether the baseline fits a CPU box at all. One batch (the comparison's 128)
of random 1-channel windows, the small-profile encoder (params.yaml
``model.ts2vec``), forward + backward + AdamW step; warm-up steps dropped.

    python bench/bench_ts2vec_crop.py --out bench/results/ts2vec_crop.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", type=int, nargs="*", default=[256, 384, 512])
    ap.add_argument("--window", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default="bench/results/ts2vec_crop.json")
    a = ap.parse_args()

    import torch

    from trls_core.config import load_params
    from trls_core.models import build_encoder
    from trls_core.ssl.ts2vec import TS2Vec

    kw = load_params(Path(a.params)).model.ts2vec.model_dump()
    x = torch.randn(a.batch, 1, a.window)
    rows = []
    for length in a.lengths:
        torch.manual_seed(0)
        model = TS2Vec(build_encoder("ts2vec", in_channels=1, **kw), max_train_length=length)
        opt = torch.optim.AdamW(model.parameters(), 1e-3)
        times = []
        for _ in range(a.warmup + a.steps):
            t0 = time.perf_counter()
            loss = model(x)
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t0)
        steady = times[a.warmup :]
        rows.append(
            {
                "max_train_length": length,
                "mean_step_s": round(sum(steady) / len(steady), 3),
                "max_step_s": round(max(steady), 3),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["mean_step_s"]
    for r in rows:
        r["ratio_to_first"] = round(r["mean_step_s"] / base, 2)
    out = {
        "benchmark": "ts2vec_step_vs_max_train_length",
        "window": a.window,
        "batch": a.batch,
        "encoder": kw,
        "machine": {"platform": platform.platform(), "torch_threads": torch.get_num_threads()},
        "results": rows,
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
