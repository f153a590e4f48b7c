"""Does fine-tuning with full passes let pretraining pay off on CinC 2017? Judged on VALIDATION only.

Why: in the CinC comparison (docs/results/cinc2017.md) "FT 100 %" equals the linear
probe for every method. The CPU budget of ``compare.settings`` (4 rounds
of <= 4 batches of 128, i.e. <= 2,048 windows seen out of a 7,360-window
pool) never beats the probe-initialised head on validation, so the
fine-tuning columns measure the probe, not fine-tuning. The paper's claim
is about fine-tuning with few labels. This study fine-tunes the
comparison's own encoders (``compare/cinc2017/<method>/models``, the K = 5
pretraining runs) with **full passes** over the labelled subset and asks,
per method and label fraction, how much fine-tuning adds to the probe it
starts from, and whether pretrained TFRNN inits (TRLS, SimCLR) beat the
untrained one (``supervised_tfrnn``) once the encoder really trains.

* labels: the comparison's fixed stratified pool (``label_pool``) and its
  per-seed label fractions (``label_fraction_indices``, as the units draw them);
* C and the early-stopping epoch chosen on the protocol's ``val_windows``
  by the challenge F1 (the comparison's rule);
* both the probe (the fine-tuning's epoch-0 state) and the fine-tuned
  model scored on **every other validation window** (6,169): the test
  split is never read.

Everything but the budget (``epochs``, ``max_steps_per_epoch``,
``patience``) is the method's own ``evaluate.finetune`` (LP-FT, head lr,
encoder lr, weight decay). Results are merged into ``--out`` per method,
so methods can be run in separate invocations.

    python bench/cinc_finetune_val.py --methods trls supervised_tfrnn
    python bench/cinc_finetune_val.py --methods ts_tcc supervised_cnn --fractions 0.1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATASET = "cinc2017"


def _summary(values: list[float]) -> dict[str, Any]:
    """bench/cinc_views_val.py's summary (mean, std, min, max, values at 4 decimals)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from _scripts import load_script

    return load_script("cinc_views_val")._summary(values)


def held_out_context(method_root: Path) -> Any:
    """The method's evaluation context with validation cut as the protocol cuts it and the rest as "test".

    ``x_val``: the ``val_windows`` that choose C and the epoch (drawn as
    ``stages.evaluate.apply_budget`` draws them); ``x_test``: every other
    validation window. Record votes are off (the rest has no test records).
    """
    import numpy as np
    import torch

    from trls_core.config import load_params
    from trls_core.stages.evaluate import budget_indices, load_context

    params = load_params(method_root / "params.yaml")
    cap = params.evaluate.val_windows
    whole_val = params.model_copy(update={"evaluate": params.evaluate.model_copy(update={"val_windows": None})})
    ctx = load_context(method_root, whole_val)
    y_val = np.asarray(ctx.data["y_val"])
    idx = budget_indices(y_val, cap)
    rest = np.setdiff1d(np.arange(len(y_val)), idx)
    x_val = ctx.data["x_val"]
    ctx.data.update(
        x_val=x_val[torch.as_tensor(idx)],
        y_val=ctx.data["y_val"][idx],
        x_test=x_val[torch.as_tensor(rest)],
        y_test=ctx.data["y_val"][rest],
    )
    ctx.test_records = None
    ctx.params = params  # the protocol's own params (val_windows set): the selection set above is its cut
    return ctx


def run_method(
    method: str, compare_dir: Path, fractions: list[float], seeds: list[int] | None, budget: dict[str, Any]
) -> dict[str, Any]:
    """Probe and fine-tune every (fraction, seed) of one method; held-out validation scores."""
    import numpy as np

    from trls_core.data.windows import label_fraction_indices
    from trls_core.metrics import task_scores
    from trls_core.protocol import Unit, run_unit

    root = compare_dir / method
    if not (root / "params.yaml").is_file():
        raise SystemExit(
            f"{root / 'params.yaml'}: no comparison workspace for {method!r}; run "
            f"`trls compare --dataset {DATASET} --methods {method}` first"
        )
    ctx = held_out_context(root)
    ev = ctx.params.evaluate
    ft_kwargs = {**ev.finetune.model_dump(), **budget, "select_classes": ctx.select_classes}
    probe_kwargs = {"c_grid": tuple(ev.c_grid), "select_classes": ctx.select_classes}
    classes, score = ctx.class_names, ctx.score_classes

    def scores(result: dict[str, Any]) -> dict[str, float]:
        s = task_scores(np.asarray(ctx.data["y_test"]), result["y_pred"], classes, score, None)
        return {"challenge_f1": round(float(s["challenge_f1"]), 4), "macro_f1": round(float(result["macro_f1"]), 4)}

    rows = []
    for seed in seeds or list(ev.seeds):
        for f in fractions:
            t0 = time.perf_counter()
            idx = np.asarray(label_fraction_indices(np.asarray(ctx.data["y_train"]), f, seed))
            sub = {**ctx.data, "x_train": ctx.data["x_train"][idx], "y_train": ctx.data["y_train"][idx]}
            lp = run_unit(
                Unit("linear_probe", seed),
                sub,
                classes,
                encoder_factory=ctx.encoder,
                probe_kwargs=probe_kwargs,
                device=ctx.device,
            )
            ft = run_unit(
                Unit("finetune", seed, f),
                ctx.data,
                classes,
                encoder_factory=ctx.encoder,
                fraction_indices=label_fraction_indices,
                finetune_kwargs=ft_kwargs,
                device=ctx.device,
            )
            row = {
                "seed": seed,
                "fraction": f,
                "n_train": int(len(idx)),
                "probe_C": lp["C"],
                "probe": scores(lp),
                "finetune": scores(ft),
                "best_epoch": ft["best_epoch"],
                "val_score_by_epoch": [round(float(h["val_score"]), 4) for h in ft["history"]],
                "seconds": round(time.perf_counter() - t0, 1),
            }
            row["gain_challenge_f1"] = round(row["finetune"]["challenge_f1"] - row["probe"]["challenge_f1"], 4)
            rows.append(row)
            print(
                f"{method:17s} f={f:<4} seed={seed} probe {100 * row['probe']['challenge_f1']:.2f} "
                f"FT {100 * row['finetune']['challenge_f1']:.2f} (epoch {row['best_epoch']}) "
                f"{row['seconds']:.0f}s",
                flush=True,
            )
    by_fraction = {}
    for f in fractions:
        fr = [r for r in rows if r["fraction"] == f]
        by_fraction[str(f)] = {
            "probe_challenge_f1": _summary([r["probe"]["challenge_f1"] for r in fr]),
            "finetune_challenge_f1": _summary([r["finetune"]["challenge_f1"] for r in fr]),
            "finetune_gain_challenge_f1": _summary([r["gain_challenge_f1"] for r in fr]),
            "best_epochs": [r["best_epoch"] for r in fr],
        }
    return {
        "finetune": {k: v for k, v in ft_kwargs.items() if k != "select_classes"},
        "per_unit": rows,
        "by_fraction": by_fraction,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--compare-dir", default=f"compare/{DATASET}", help="the comparison's workspaces (one per method)")
    ap.add_argument("--out", default="bench/results/cinc_finetune_val.json")
    ap.add_argument("--methods", nargs="+", default=["trls", "supervised_tfrnn"])
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.1, 1.0])
    ap.add_argument("--seeds", type=int, nargs="+", help="evaluation seeds (default: the protocol's)")
    ap.add_argument("--epochs", type=int, default=10, help="full passes over the labelled subset")
    ap.add_argument("--max-steps", type=int, help="cap an epoch at this many batches (default: full passes)")
    ap.add_argument("--patience", type=int, default=3)
    a = ap.parse_args()

    import torch

    sys.path.insert(0, str(ROOT))
    from trls_core.io import write_json
    from trls_core.runtime import tune_malloc

    tune_malloc()
    budget = {"epochs": a.epochs, "max_steps_per_epoch": a.max_steps, "patience": a.patience}
    out_path = ROOT / a.out
    out: dict[str, Any] = json.loads(out_path.read_text()) if out_path.is_file() else {}
    out.update(
        {
            "what": "CinC 2017 af: the comparison's encoders, linear probe vs LP-FT fine-tuning with full passes, "
            "labels from the pool, C and epoch chosen on the protocol's validation windows by challenge F1, "
            "both scored on the other validation windows (test never read)",
            "machine": {
                "platform": platform.platform(),
                "cpu_count": os.cpu_count(),
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
            },
        }
    )
    out.setdefault("results", {})
    for method in a.methods:
        t0 = time.perf_counter()
        res = run_method(method, ROOT / a.compare_dir, a.fractions, a.seeds, budget)
        res["seconds"] = round(time.perf_counter() - t0, 1)
        key = (
            method if a.max_steps is None and a.epochs == 10 else f"{method}@epochs={a.epochs},max_steps={a.max_steps}"
        )
        out["results"][key] = res
        for f, b in res["by_fraction"].items():
            print(
                f"{key:17s} f={f:<4} probe {100 * b['probe_challenge_f1']['mean']:.2f} ± "
                f"{100 * b['probe_challenge_f1']['std']:.2f}  FT {100 * b['finetune_challenge_f1']['mean']:.2f} ± "
                f"{100 * b['finetune_challenge_f1']['std']:.2f}"
                f"  gain {100 * b['finetune_gain_challenge_f1']['mean']:+.2f}",
                flush=True,
            )
        write_json(out_path, out)


if __name__ == "__main__":
    main()
