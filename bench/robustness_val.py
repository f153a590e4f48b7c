"""Validation-split study of the robustness protocol: which augmentation strength gives the smallest spread.

Why: on epilepsy the comparison's TRLS linear probe varies more across its
K = 5 pretraining subsets than most baselines (docs/results/epilepsy.md), and the
TRLS variant without augmentation varies least. This runs the comparison's
pretraining protocol (``compare.settings``: K seeded subsets, the same
epochs) for each method x augmentation variant and scores a linear probe of
every pretrained encoder on the VALIDATION split (C chosen on a stratified
20 % of the train split), never on test, so a setting can be chosen here
and then run through ``trls compare`` once.

    python bench/robustness_val.py --root . --out bench/results/robustness_val.json \
        --methods trls simclr --variants strong medium mild --jobs 6

Each (method, variant) runs in its own process (a GPU host runs several at
once); workspaces go under ``--work``. Writes JSON: per config the
per-seed validation accuracy / macro-F1 for the binary and 5-set tasks,
mean, std (ddof 1), min-max, and the untrained encoder's score; machine info.
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sweep import BASE as _SWEEP_BASE  # noqa: E402 - bench/sweep.py: no import-time work

#: Augmentation variants (the ``augment`` views). ``strong`` is params.yaml's own (no override).
VARIANTS: dict[str, dict[str, Any] | None] = {
    "strong": None,
    "medium": {
        "view_a": [
            {"name": "resized_crop", "p": 1.0, "scale": [0.45, 1.0], "ratio": [0.75, 1.333]},
            {"name": "contrast", "p": 0.5, "range": [0.9, 1.1]},
            {"name": "time_shift", "p": 0.5, "max_fraction": 0.25},
        ],
        "view_b": [
            {"name": "gaussian_blur", "p": 0.5, "kernel_size": 3, "sigma": [0.1, 1.0]},
            {"name": "time_mask", "p": 0.8, "max_width": 0.25, "n_masks": 1},
            {"name": "freq_mask", "p": 0.8, "max_width": 0.2, "n_masks": 1},
            {"name": "noise", "p": 0.5, "std": 0.15},
            {"name": "brightness", "p": 0.3, "max_delta": 0.1},
        ],
    },
    # the views of the first sweep's base, the same objects (bench/sweep.py BASE)
    "mild": {"view_a": _SWEEP_BASE["view_a"], "view_b": _SWEEP_BASE["view_b"]},
}
TASKS = ("binary", "five_set")


def _summary(values: list[float]) -> dict[str, Any]:
    return {
        "mean": round(statistics.fmean(values), 5),
        "std": round(statistics.stdev(values), 5) if len(values) > 1 else 0.0,
        "min": round(min(values), 5),
        "max": round(max(values), 5),
        "values": [round(v, 5) for v in values],
    }


@functools.cache
def _split(sdir: Path, split: str, task: str) -> Any:
    """One split's tensors, read once per process (each config probes 10 encoders on the same splits)."""
    from trls_core.data.tensors import load_split

    return load_split(sdir, split, task)


def _val_probe(encoder: Any, sdir: Path, device: str, seed: int) -> dict[str, float]:
    """Linear probe fitted on train (C on a train holdout), scored on validation, for both tasks."""
    from trls_core.data.tensors import load_meta, task_info
    from trls_core.evaluate import embed, linear_probe

    meta = load_meta(sdir)
    out: dict[str, float] = {}
    z: dict[str, Any] = {}
    for task in TASKS:
        tr, va = _split(sdir, "train", task), _split(sdir, "val", task)
        if not z:
            z = {"train": embed(encoder, tr.x, 512, device), "val": embed(encoder, va.x, 512, device)}
        r = linear_probe(z["train"], tr.y, z["val"], va.y, task_info(meta, task)["classes"], seed=seed)
        out[f"{task}_val_acc"], out[f"{task}_val_f1"] = float(r["accuracy"]), float(r["macro_f1"])
    return out


def run_config(
    root: str, work: str, method: str, variant: str, threads: int, smoke: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Pretrain the K subsets of one (method, variant) and probe each encoder on validation."""
    import torch
    import yaml

    from trls_core.config import deep_merge, load_params, read_raw_params
    from trls_core.methods import get_method, method_params
    from trls_core.paths import model_dir, spectrogram_dir
    from trls_core.runtime import tune_malloc
    from trls_core.stages.pretrain import build_encoder_from_params, load_encoder, pretrain_all, resolve_device

    tune_malloc()
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    name = f"{method}@{variant}"
    raw = read_raw_params(Path(root) / "params.yaml")
    mp_ = method_params(raw, get_method(method), dataset="epilepsy")
    if VARIANTS[variant] is not None:
        mp_ = deep_merge(mp_, {"augment": VARIANTS[variant]})
    if smoke:  # --epochs / --seeds: a quick check of the harness, not the protocol
        mp_ = deep_merge(mp_, {"pretrain": smoke})
    ws = Path(work) / name.replace("@", "_")
    ws.mkdir(parents=True, exist_ok=True)
    (ws / "params.yaml").write_text(yaml.safe_dump(mp_, sort_keys=False))
    link = spectrogram_dir(ws, "epilepsy")
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(spectrogram_dir(Path(root), "epilepsy").resolve())
    params = load_params(ws / "params.yaml")
    device = resolve_device(params.pretrain.device)
    pretrain_all(ws, params, progress=False)
    t_pre = time.perf_counter() - t0
    per_seed, untrained = [], []
    for s in params.pretrain.seeds:
        enc, _ = load_encoder(model_dir(ws, "epilepsy", params.model.encoder, s))
        per_seed.append({"seed": s, **_val_probe(enc, link, device, s)})
        with torch.random.fork_rng():
            torch.manual_seed(s)
            rnd = build_encoder_from_params(params, 1).eval()
        untrained.append({"seed": s, **_val_probe(rnd, link, device, s)})
    keys = [k for k in per_seed[0] if k != "seed"]
    return {
        "config": name,
        "method": method,
        "variant": variant,
        "augment": VARIANTS[variant] or "params.yaml",
        "pretrain_seeds": list(params.pretrain.seeds),
        "subset_fraction": params.pretrain.subset_fraction,
        "epochs": params.pretrain.epochs,
        "device": device,
        "pretrained": {k: _summary([r[k] for r in per_seed]) for k in keys},
        "untrained": {k: _summary([r[k] for r in untrained]) for k in keys},
        "per_seed": per_seed,
        "pretrain_seconds": round(t_pre, 1),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def _worker(args: tuple[Any, ...]) -> dict[str, Any]:
    try:
        return run_config(*args)
    except Exception:  # noqa: BLE001 - one failed config must not lose the others' results
        return {"config": f"{args[2]}@{args[3]}", "error": traceback.format_exc()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=".")
    ap.add_argument("--work", default="/tmp/trls_robustness_val")
    ap.add_argument("--out", default="bench/results/robustness_val.json")
    ap.add_argument("--methods", nargs="+", default=["trls", "simclr"])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--threads", type=int, help="torch threads per job (default: CPUs / jobs)")
    ap.add_argument("--epochs", type=int, help="override the protocol's epochs (harness check only)")
    ap.add_argument("--seeds", type=int, nargs="+", help="override the protocol's seeds (harness check only)")
    a = ap.parse_args()
    import torch

    from trls_core.io import write_json

    configs = [(m, v) for m in a.methods for v in a.variants]
    jobs = max(1, min(a.jobs, len(configs)))
    threads = a.threads or max(1, (os.cpu_count() or 1) // jobs)
    t0 = time.perf_counter()
    smoke = {k: v for k, v in (("epochs", a.epochs), ("seeds", a.seeds)) if v}
    todo = [(a.root, a.work, m, v, threads, smoke or None) for m, v in configs]
    machine = {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "jobs": jobs,
        "threads_per_job": threads,
    }
    results: list[dict[str, Any]] = []

    def record(r: dict[str, Any]) -> None:
        """Print one config's line and rewrite the JSON, so a run cut short keeps what finished."""
        results.append(r)
        if "error" in r:
            print(r["config"], "FAILED\n", r["error"], flush=True)
        else:
            p, u = r["pretrained"], r["untrained"]
            print(
                f"{r['config']:18s} "
                + "  ".join(
                    f"{k} {100 * p[k]['mean']:.2f}±{100 * p[k]['std']:.2f} (untrained {100 * u[k]['mean']:.2f})"
                    for k in ("binary_val_acc", "five_set_val_acc")
                )
                + f"  {r['seconds']:.0f}s",
                flush=True,
            )
        write_json(
            Path(a.out),
            {
                "what": "linear probe on the VALIDATION split of encoders pretrained with compare.settings "
                "(K seeded subsets); C chosen on a stratified 20 % of train",
                "machine": machine,
                "wall_seconds": round(time.perf_counter() - t0, 1),
                "complete": len(results) == len(todo),
                "results": results,
            },
        )

    if jobs == 1:
        for t in todo:
            record(_worker(t))
    else:
        with mp.get_context("spawn").Pool(jobs) as pool:
            for r in pool.imap_unordered(_worker, todo):
                record(r)


if __name__ == "__main__":
    main()
