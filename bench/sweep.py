"""Hyper-parameter sweep for BYOL/TFRNN pretraining, scored on the VALIDATION split.

Each config pretrains an encoder and runs linear probes (binary and five_set
tasks) on frozen representations; the untrained encoder and the spectrogram
pixels are scored alongside as controls. Configs run as parallel processes
(a GPU host runs many at once). Test-split numbers are recorded but decisions
use the validation columns only.

    python bench/sweep.py --configs bench/sweep_configs.json --out bench/results/sweep.json --jobs 8
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import time
import traceback
from pathlib import Path
from typing import Any

BASE: dict[str, Any] = {
    "stft": {"n_fft": 32, "hop": 4, "fmax_bin": None, "log_eps": 1e-3, "norm": "train_per_freq"},
    "encoder": "tfrnn",
    "enc": {"dim": 32, "depth": 3, "rep_dim": 128},
    "heads": {"proj_hidden": 256, "proj_dim": 64, "pred_hidden": 256},
    "view_a": [
        {"name": "resized_crop", "p": 1.0, "scale": [0.6, 1.0], "ratio": [0.75, 1.333]},
        {"name": "contrast", "p": 0.5, "range": [0.9, 1.1]},
    ],
    "view_b": [
        {"name": "gaussian_blur", "p": 0.5, "kernel_size": 3, "sigma": [0.1, 1.0]},
        {"name": "time_mask", "p": 0.8, "max_width": 0.2, "n_masks": 1},
        {"name": "freq_mask", "p": 0.8, "max_width": 0.2, "n_masks": 1},
        {"name": "brightness", "p": 0.3, "max_delta": 0.1},
    ],
    "epochs": 20,
    "batch_size": 128,
    "lr": 1e-3,
    "weight_decay": 1e-4,
    "tau_base": 0.99,
    "warmup_epochs": 1,
    "seed": 0,
}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _data(parquet: str, stft: dict[str, Any]):
    import numpy as np
    import torch

    from trls_core.data.parquet import read_windows, signals_array
    from trls_core.spectrogram import apply_normaliser, fit_normaliser, stft_logmag

    df, _ = read_windows(Path(parquet))
    sig = torch.from_numpy(np.array(signals_array(Path(parquet)), copy=True))
    s = stft_logmag(sig, n_fft=stft["n_fft"], hop=stft["hop"], log_eps=stft["log_eps"], fmax_bin=stft["fmax_bin"])
    split = df["split"].to_numpy().astype(str)
    stats = fit_normaliser(s[torch.from_numpy(split == "train")], stft["norm"])
    s = apply_normaliser(s, stft["norm"], stats)
    out = {}
    for sp in ("train", "val", "test"):
        m = split == sp
        out[sp] = (s[torch.from_numpy(m)], df["label_binary"].to_numpy()[m], df["label"].to_numpy()[m])
    return out


def _probe(z: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    from trls_core.evaluate import linear_probe

    res = {}
    for task, col, names in (("binary", 1, ["n", "s"]), ("five_set", 2, list("ZONFS"))):
        r = linear_probe(
            z["train"],
            data["train"][col],
            z["test"],
            data["test"][col],
            names,
            seed=0,
            c_grid=(0.01, 0.1, 1.0, 10.0),
            z_val=z["val"],
            y_val=data["val"][col],
        )
        res[f"{task}_val_f1"] = round(r["c_scores"][str(r["C"])], 4)
        res[f"{task}_test_acc"] = round(r["accuracy"], 4)
        res[f"{task}_test_f1"] = round(r["macro_f1"], 4)
    return res


def _features(encoder, data, device: str, scales: bool):
    import numpy as np
    import torch

    out = {}
    encoder.eval()
    with torch.no_grad():
        for sp in ("train", "val", "test"):
            x = data[sp][0]
            zs = []
            for i in range(0, len(x), 1024):
                xb = x[i : i + 1024].to(device)
                if scales:
                    zs.append(torch.cat(encoder.forward_scales(xb), dim=1).cpu())
                else:
                    zs.append(encoder(xb).cpu())
            out[sp] = torch.cat(zs).numpy().astype(np.float32)
    return out


def run_one(args: tuple[dict[str, Any], str, str]) -> dict[str, Any]:
    cfg, parquet, device = args
    try:
        import torch

        torch.set_num_threads(int(os.environ.get("SWEEP_THREADS", "1")))
        from trls_core.augment import TwoViews
        from trls_core.models import build_encoder
        from trls_core.ssl.byol import BYOL
        from trls_core.train import pretrain_byol

        t0 = time.time()
        data = _data(parquet, cfg["stft"])
        torch.manual_seed(cfg["seed"])
        enc_kw = cfg["enc"]
        if cfg["encoder"] == "cnn":
            enc_kw = {k: v for k, v in enc_kw.items() if k in ("width", "depth", "rep_dim")}
        enc = build_encoder(cfg["encoder"], in_channels=1, **enc_kw)
        res: dict[str, Any] = {"name": cfg["name"], "shape": list(data["train"][0].shape[1:])}
        enc.to(device)
        if cfg.get("controls"):
            res["random_rep"] = _probe(_features(enc, data, device, False), data)
            if hasattr(enc, "forward_scales"):
                res["random_scales"] = _probe(_features(enc, data, device, True), data)
            px = {sp: data[sp][0].reshape(len(data[sp][0]), -1).numpy() for sp in data}
            res["pixels"] = _probe(px, data)
        model = BYOL(enc, enc.out_dim if hasattr(enc, "out_dim") else cfg["enc"]["rep_dim"], **cfg["heads"])
        views = TwoViews(cfg["view_a"], cfg["view_b"]) if (cfg["view_a"] or cfg["view_b"]) else None
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
            device=device,
            seed=cfg["seed"],
            warmup_epochs=cfg["warmup_epochs"],
            progress=False,
        )
        res["pretrain_s"] = round(time.time() - t1, 1)
        res["loss"] = [round(h["loss"], 4) for h in hist]
        res["rep"] = _probe(_features(model.encoder, data, device, False), data)
        if hasattr(model.encoder, "forward_scales"):
            res["scales"] = _probe(_features(model.encoder, data, device, True), data)
        res["total_s"] = round(time.time() - t0, 1)
        return res
    except Exception:
        return {"name": cfg.get("name"), "error": traceback.format_exc()[-2000:]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", required=True)
    ap.add_argument("--parquet", default="data/parquet/epilepsy/windows.parquet")
    ap.add_argument("--out", default="bench/results/sweep.json")
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--only", nargs="*", help="run only these config names")
    a = ap.parse_args()
    overrides = json.loads(Path(a.configs).read_text())
    cfgs = [_merge(BASE, o) for o in overrides if not a.only or o["name"] in a.only]
    ctx = mp.get_context("spawn")
    results = []
    with ctx.Pool(a.jobs) as pool:
        for r in pool.imap_unordered(run_one, [(c, a.parquet, a.device) for c in cfgs]):
            print(json.dumps(r), flush=True)
            results.append(r)
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            Path(a.out).write_text(
                json.dumps(
                    {"machine": platform.platform(), "cpus": os.cpu_count(), "configs": cfgs, "results": results},
                    indent=1,
                )
            )


if __name__ == "__main__":
    main()
