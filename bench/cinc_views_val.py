"""Which spectrogram views make BYOL pretraining pay off on CinC 2017 ECG? Judged on VALIDATION only.

Why: in the CinC comparison (docs/results/cinc2017.md) TRLS's probe is level with
its own untrained TFRNN: the pretraining adds nothing for AF. Its views were
chosen on Bonn EEG (docs/experiments.md §3b), where a 30 % crop of a 1-s
window still shows the seizure's spectral signature. On a 5-s ECG window
the AF cue is the *rhythm*: irregular R-R intervals over several beats and
no P waves. A crop of 30 % of the area keeps ~55 % of the time axis (about
three beats) and stretches the frequency axis; two time masks of up to
30 % remove more beats. BYOL then asks the full window and a view with a
few beats to map to one point, i.e. to ignore rhythm. This study runs the
comparison's own CinC pretraining protocol (``compare.settings`` +
``compare.datasets.cinc2017``: K = 5 seeded 5 % subsets, 8 epochs) for
view variants that keep the rhythm, and scores each encoder's linear probe
on held-out validation windows:

* labels: the comparison's fixed stratified pool (``label_pool``);
* C chosen, as the comparison chooses it, on its ``val_windows`` by the
  challenge F1 (mean F1 of N, A, O);
* the choice scored on **every other validation window** (6,169): the
  test split is never read.

The untrained encoders (the same 5 inits) are the control the pretrained
ones must beat. Variants go to ``compare.datasets.cinc2017.augment`` only
if one beats it on validation; ``trls compare`` then runs once.

    python bench/cinc_views_val.py --out bench/results/cinc_views_val.json
    python bench/cinc_views_val.py --variants strong rhythm --seeds 0 1   # a subset
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from sweep import BASE as _SWEEP_BASE  # noqa: E402 - bench/sweep.py: no import-time work

DATASET = "cinc2017"

#: View variants (``augment.view_a`` / ``view_b``); ``strong`` is params.yaml's own (no override).
VARIANTS: dict[str, dict[str, Any] | None] = {
    "strong": None,
    # the first sweep's views (bench/sweep.py BASE): crop >= 60 % of the area, one 20 % mask per axis
    "mild": {"view_a": _SWEEP_BASE["view_a"], "view_b": _SWEEP_BASE["view_b"]},
    # keeps the rhythm: crops of >= 70 % of the area, a circular shift (every beat kept), one short
    # time mask (<= 10 %, about half a beat); the spectral ops of the strong views stay
    "rhythm": {
        "view_a": [
            {"name": "resized_crop", "p": 1.0, "scale": [0.7, 1.0], "ratio": [0.75, 1.333]},
            {"name": "contrast", "p": 0.5, "range": [0.9, 1.1]},
            {"name": "time_shift", "p": 0.5, "max_fraction": 0.25},
        ],
        "view_b": [
            {"name": "gaussian_blur", "p": 0.5, "kernel_size": 3, "sigma": [0.1, 1.0]},
            {"name": "time_mask", "p": 0.8, "max_width": 0.1, "n_masks": 1},
            {"name": "freq_mask", "p": 0.8, "max_width": 0.25, "n_masks": 2},
            {"name": "noise", "p": 0.5, "std": 0.3},
            {"name": "brightness", "p": 0.3, "max_delta": 0.1},
        ],
    },
    # no geometric op on the time axis at all: every beat and interval in both views
    "spectral": {
        "view_a": [
            {"name": "contrast", "p": 0.8, "range": [0.8, 1.2]},
            {"name": "time_shift", "p": 0.5, "max_fraction": 0.25},
            {"name": "noise", "p": 0.5, "std": 0.3},
        ],
        "view_b": [
            {"name": "gaussian_blur", "p": 0.5, "kernel_size": 3, "sigma": [0.1, 1.0]},
            {"name": "freq_mask", "p": 0.8, "max_width": 0.25, "n_masks": 2},
            {"name": "noise", "p": 0.5, "std": 0.3},
            {"name": "brightness", "p": 0.3, "max_delta": 0.1},
        ],
    },
}


def _summary(values: list[float]) -> dict[str, Any]:
    return {
        "mean": round(statistics.fmean(values), 4),
        "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "values": [round(v, 4) for v in values],
    }


def _select_val() -> Any:
    """bench/cinc_select_val.py: fit one probe per C, choose on ``val``, score on ``val_rest``."""
    from _scripts import load_script

    return load_script("cinc_select_val")


def budget_splits(sdir: Path, evaluate: dict[str, Any]) -> tuple[list[str], list[str], dict[str, Any], dict[str, Any]]:
    """The stored spectrograms cut as the comparison cuts them, plus the held-out validation rest.

    ``train``: the label pool; ``val``: the windows that choose C (drawn as
    ``stages.evaluate.apply_budget`` draws them); ``val_rest``: every other
    validation window.
    """
    import numpy as np

    from trls_core.data.tensors import load_meta, load_split, task_info
    from trls_core.stages.evaluate import budget_indices

    task = task_info(load_meta(sdir), evaluate["task"])
    x, y = {}, {}
    for split, cap in (("train", evaluate["label_pool"]), ("val", evaluate["val_windows"])):
        s = load_split(sdir, split, evaluate["task"])
        ys = s.y.numpy()
        idx = budget_indices(ys, cap)
        x[split], y[split] = s.x[idx], ys[idx]
        if split == "val":
            rest = np.setdiff1d(np.arange(len(ys)), idx)
            x["val_rest"], y["val_rest"] = s.x[rest], ys[rest]
    return list(task["classes"]), list(task["score_classes"]), x, y


def probe(encoder: Any, x: dict[str, Any], y: dict[str, Any], classes: list[str], score: list[str]) -> dict[str, Any]:
    """Challenge F1 / macro-F1 on the held-out validation rest of the probe chosen by challenge F1."""
    from trls_core.evaluate import embed

    z = {k: embed(encoder, v, 512, "cpu") for k, v in x.items()}
    r = _select_val().choose_and_score(z, y, classes, score)["by_challenge_f1"]
    return {"C": r["C"], "challenge_f1": r["held_out_challenge_f1"], "macro_f1": r["held_out_macro_f1"]}


def method_params_for(variant: str, smoke: dict[str, Any]) -> dict[str, Any]:
    """params for ``trls`` on CinC as ``trls compare --dataset cinc2017`` builds them, views replaced."""
    from trls_core.config import deep_merge, read_raw_params
    from trls_core.methods import get_method, method_params

    mp_ = method_params(read_raw_params(ROOT / "params.yaml"), get_method("trls"), dataset=DATASET)
    if VARIANTS[variant] is not None:
        mp_ = deep_merge(mp_, {"augment": VARIANTS[variant]})
    if smoke:  # --epochs / --seeds: a subset or a harness check
        mp_ = deep_merge(mp_, {"pretrain": smoke})
    return mp_


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="/tmp/trls_cinc_views_val")
    ap.add_argument("--out", default="bench/results/cinc_views_val.json")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--seeds", type=int, nargs="+", help="pretraining seeds (default: the protocol's)")
    ap.add_argument("--epochs", type=int, help="override the protocol's epochs (a longer schedule, or a harness check)")
    ap.add_argument("--lr", type=float, help="override TRLS's pretraining lr")
    ap.add_argument("--tau-base", type=float, help="override TRLS's EMA tau_base")
    ap.add_argument("--subset-fraction", type=float, help="override the pretraining subset (the protocol's 5 %%)")
    a = ap.parse_args()

    import torch

    sys.path.insert(0, str(ROOT))
    from trls_core.io import write_json
    from trls_core.paths import model_dir, spectrogram_dir
    from trls_core.runtime import tune_malloc
    from trls_core.stages.pretrain import build_encoder_from_params, load_encoder, pretrain_all

    tune_malloc()
    smoke = {
        k: v
        for k, v in (
            ("epochs", a.epochs),
            ("seeds", a.seeds),
            ("lr", a.lr),
            ("tau_base", a.tau_base),
            ("subset_fraction", a.subset_fraction),
        )
        if v
    }
    tag = "".join(f"@{k}={v}" for k, v in smoke.items() if k != "seeds")
    sdir = spectrogram_dir(ROOT, DATASET).resolve()
    base = method_params_for("strong", smoke)
    classes, score, x, y = budget_splits(sdir, base["evaluate"])
    out: dict[str, Any] = {
        "what": "CinC 2017 af: linear probe of TRLS encoders pretrained with the comparison's protocol per view "
        "variant; labels from the pool, C chosen on the protocol's validation windows by challenge F1, "
        "scored on the other validation windows (test never read)",
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "sizes": {k: len(v) for k, v in y.items()},
        "protocol": {k: base["pretrain"][k] for k in ("seeds", "subset_fraction", "epochs", "lr", "tau_base")},
        "results": {},
    }
    if (ROOT / a.out).is_file():  # runs with other overrides add to the same file
        old = json.loads((ROOT / a.out).read_text())
        out["results"], out["runs"] = old.get("results", {}), old.get("runs", [])
        if old.get("untrained") and [r["seed"] for r in old["untrained"]["per_seed"]] == base["pretrain"]["seeds"]:
            out["untrained"] = old["untrained"]  # the same inits: probed once
    out.setdefault("runs", []).append({"overrides": smoke, "variants": a.variants})
    t0 = time.perf_counter()

    def save() -> None:
        out["wall_seconds"] = round(time.perf_counter() - t0, 1)
        write_json(ROOT / a.out, out)

    seeds = list(base["pretrain"]["seeds"])
    params0 = load_params_from(base, Path(a.work) / "_untrained")
    rows = []
    for s in seeds if "untrained" not in out else []:  # the control: the same inits, not pretrained
        torch.manual_seed(s)
        rows.append({"seed": s, **probe(build_encoder_from_params(params0, 1).eval(), x, y, classes, score)})
    if rows:
        out["untrained"] = {
            "per_seed": rows,
            **{k: _summary([r[k] for r in rows]) for k in ("challenge_f1", "macro_f1")},
        }
    print(
        f"untrained  challenge F1 {100 * out['untrained']['challenge_f1']['mean']:.2f} ± "
        f"{100 * out['untrained']['challenge_f1']['std']:.2f}",
        flush=True,
    )
    save()
    for variant in a.variants:
        tv = time.perf_counter()
        name = variant + tag
        ws = Path(a.work) / name.replace("@", "_")
        params = load_params_from(method_params_for(variant, smoke), ws)
        link = spectrogram_dir(ws, DATASET)
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(sdir)
        pretrain_all(ws, params, progress=False)
        t_pre = time.perf_counter() - tv
        rows = []
        for s in seeds:
            enc, info = load_encoder(model_dir(ws, DATASET, params.model.encoder, s))
            rows.append(
                {
                    "seed": s,
                    **probe(enc, x, y, classes, score),
                    "final_loss": round(float(info["history"][-1]["loss"]), 4),
                }
            )
        paired = [r["challenge_f1"] - u["challenge_f1"] for r, u in zip(rows, out["untrained"]["per_seed"])]
        out["results"][name] = {
            "overrides": smoke,
            "augment": VARIANTS[variant] or "params.yaml",
            "per_seed": rows,
            **{k: _summary([r[k] for r in rows]) for k in ("challenge_f1", "macro_f1")},
            "paired_gain_challenge_f1": _summary(paired),
            "pretrain_seconds": round(t_pre, 1),
            "seconds": round(time.perf_counter() - tv, 1),
        }
        r = out["results"][name]
        print(
            f"{name:10s} challenge F1 {100 * r['challenge_f1']['mean']:.2f} ± {100 * r['challenge_f1']['std']:.2f}"
            f"  paired gain {100 * r['paired_gain_challenge_f1']['mean']:+.2f} ± "
            f"{100 * r['paired_gain_challenge_f1']['std']:.2f}  {r['seconds']:.0f}s",
            flush=True,
        )
        save()


def load_params_from(raw: dict[str, Any], ws: Path) -> Any:
    """Write ``raw`` as the workspace's params.yaml and load it (the same validation as ``trls``)."""
    import yaml

    from trls_core.config import load_params

    ws.mkdir(parents=True, exist_ok=True)
    (ws / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_params(ws / "params.yaml")


if __name__ == "__main__":
    main()
