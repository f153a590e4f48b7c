"""The `paper` profile's TFRNN over several pretraining seeds, scored on validation AND test.

Why a separate script from ``sweep.py``: paper-size TFRNN runs do not share
one GPU (docs/experiments.md §4, §4b, §4c: parallel runs serialise and none
finishes in its slot), yet the linear probes are CPU work. Here the GPU runs
one seed after another while the probes of finished seeds run in a process
pool, so a seed costs its pretraining time and no more.

For every seed the same initialisation is probed before pretraining (the
untrained control), and the spectrogram pixels once. The encoder, heads,
views and schedule come from ``params.yaml`` with ``--profile`` (default
``paper``), so this measures exactly what ``TRLS_PROFILE=paper make run``
pretrains.

    python bench/paper_seeds.py --seeds 0 1 2 --device cuda --out bench/results/paper_seeds.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _sweep() -> Any:
    """bench/sweep.py's data, feature and probe helpers."""
    sys.path.insert(0, str(ROOT / "bench"))
    from _scripts import load_script

    return load_script("sweep")


def _probe_job(name: str, z: dict[str, Any], labels: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Runs in a worker process: the binary and 5-set probes of one representation."""
    sweep = _sweep()
    data = {sp: (None, labels[sp][0], labels[sp][1]) for sp in labels}
    return name, sweep._probe(z, data)


def _config(profile: str) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from trls_core.config import load_params

    p = load_params(ROOT / "params.yaml", profile=profile)
    sp = p.epilepsy.spectrogram
    return {
        "profile": profile,
        "stft": {
            "n_fft": sp.n_fft,
            "hop": sp.hop,
            "fmax_bin": sp.fmax_bin,
            "log_eps": sp.log_eps,
            "norm": sp.normalisation,
        },
        "encoder": p.model.encoder,
        "enc": p.model.encoder_kwargs(),
        "heads": p.model.heads.model_dump(),
        "view_a": [op.model_dump() for op in p.augment.view_a],
        "view_b": [op.model_dump() for op in p.augment.view_b],
        "epochs": p.pretrain.epochs,
        "batch_size": p.pretrain.batch_size,
        "lr": p.pretrain.lr,
        "weight_decay": p.pretrain.weight_decay,
        "tau_base": p.pretrain.tau_base,
        "warmup_epochs": p.pretrain.warmup_epochs,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--profile", default="paper")
    ap.add_argument("--parquet", default="data/parquet/epilepsy/windows.parquet")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--epochs", type=int, default=None, help="override the profile's epochs (a smoke run)")
    ap.add_argument("--no-pixels", action="store_true", help="skip the pixel control (already measured)")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--out", default="bench/results/paper_seeds.json")
    a = ap.parse_args()

    import torch

    from trls_core.augment import TwoViews
    from trls_core.models import build_encoder
    from trls_core.ssl.byol import BYOL
    from trls_core.train import pretrain_byol

    sweep = _sweep()
    cfg = _config(a.profile)
    if a.epochs is not None:
        cfg["epochs"] = a.epochs
    t0 = time.time()
    data = sweep._data(a.parquet, cfg["stft"])
    labels = {sp: (data[sp][1], data[sp][2]) for sp in data}
    out: dict[str, Any] = {
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "device": torch.cuda.get_device_name() if a.device == "cuda" else a.device,
        "config": cfg,
        "seeds": {},
        "data_s": round(time.time() - t0, 1),
    }

    def save() -> None:
        p = Path(a.out)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(out, indent=1))
        tmp.replace(p)

    pending: list[Future] = []

    def collect(block: bool) -> None:
        for f in list(pending):
            if block or f.done():
                name, res = f.result()
                seed, kind = name.split(":")
                out["seeds"].setdefault(seed, {})[kind] = res
                pending.remove(f)
                print(json.dumps({"seed": seed, kind: res}), flush=True)
                save()

    import multiprocessing as mp

    with ProcessPoolExecutor(a.workers, mp_context=mp.get_context("spawn")) as pool:
        if not a.no_pixels:
            px = {sp: data[sp][0].reshape(len(data[sp][0]), -1).numpy() for sp in data}
            pending.append(pool.submit(_probe_job, "pixels:rep", px, labels))
        for seed in a.seeds:
            torch.manual_seed(seed)
            enc = build_encoder(cfg["encoder"], in_channels=1, **cfg["enc"]).to(a.device)
            pending.append(
                pool.submit(_probe_job, f"{seed}:untrained", sweep._features(enc, data, a.device, False), labels)
            )
            model = BYOL(enc, enc.out_dim, **cfg["heads"])
            views = TwoViews(cfg["view_a"], cfg["view_b"])
            t1 = time.time()
            hist = pretrain_byol(
                model,
                data["train"][0],
                views,
                epochs=cfg["epochs"],
                batch_size=cfg["batch_size"],
                lr=cfg["lr"],
                weight_decay=cfg["weight_decay"],
                tau_base=cfg["tau_base"],
                device=a.device,
                seed=seed,
                warmup_epochs=cfg["warmup_epochs"],
                progress=False,
            )
            out["seeds"].setdefault(str(seed), {})["pretrain_s"] = round(time.time() - t1, 1)
            out["seeds"][str(seed)]["loss"] = [round(h["loss"], 4) for h in hist]
            print(
                json.dumps(
                    {
                        "seed": seed,
                        "pretrain_s": out["seeds"][str(seed)]["pretrain_s"],
                        "loss_last": out["seeds"][str(seed)]["loss"][-1],
                    }
                ),
                flush=True,
            )
            pending.append(
                pool.submit(
                    _probe_job, f"{seed}:pretrained", sweep._features(model.encoder, data, a.device, False), labels
                )
            )
            save()
            collect(block=False)
        collect(block=True)
    out["total_s"] = round(time.time() - t0, 1)
    save()


if __name__ == "__main__":
    main()
