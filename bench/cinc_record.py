"""CinC 2017 at record level, several pretraining seeds: TRLS against its floors -> docs/results/cinc2017-record.json.

Why a benchmark and not a test: one seed's pretraining and evaluation take
~20 min on 2 cores. Everything runs through the project's own commands with
the ``cinc_record`` profile (params.yaml) plus ``--set`` overlays, so the
numbers are what a user gets from ``trls pretrain`` / ``trls evaluate`` /
``trls floors``:

    python bench/cinc_record.py --seeds 0 1 2 [--set pretrain.positives=record]
        [--out docs/results/cinc2017-record.json]

Writes ``{"metric": "record_challenge_f1", "split": "test", "methods": {"trls": {"linear_probe": [...],
"finetune_0.1": [...], "finetune_1.0": [...]}}, "floors": {"majority": x, "rr_features_gbm": [...],
"pixels_linear": x, "untrained_linear": [...]}}`` plus the settings, the window-level scores beside the
record ones, and the wall time of each step. Test scores are reported; every choice was made on validation
records (C, the fine-tuning epoch, the GBM's settings).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _scripts import run_trls as _trls  # noqa: E402

from trls_core.io import write_json  # noqa: E402


def _stored_compute(seeds: list[int]) -> dict[str, Any]:
    """What the stored results cost when they ran: BYOL epochs per seed and each evaluation unit."""
    models = ROOT / "models" / "cinc2017"
    units = ROOT / "reports" / "cinc2017" / "units" / "af"
    return {
        "pretrain_s": {
            s: round(
                sum(
                    h["seconds"]
                    for h in json.loads((models / f"tfrnn_seed{s}" / "encoder.json").read_text())["history"]
                ),
                1,
            )
            for s in seeds
        },
        "units_s": {
            f.stem: json.loads(f.read_text())["result"].get("unit_seconds") for f in sorted(units.glob("*.json"))
        },
    }


def _values(agg: dict[str, Any], key: str) -> list[float]:
    return [float(v) for v in agg.get(key, {}).get("values", [])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--set", dest="sets", action="append", default=[], help="extra --set for pretrain and evaluate")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "cinc2017-record.json")
    ap.add_argument("--skip-floors", action="store_true", help="reuse reports/cinc2017/floors.json")
    args = ap.parse_args()
    seeds = json.dumps(args.seeds)
    common = ["--profile", "cinc_record", "--set", f"pretrain.seeds={seeds}", "--set", f"evaluate.seeds={seeds}"]
    for s in args.sets:
        common += ["--set", s]
    times = {"pretrain_s": _trls("pretrain", *common), "evaluate_s": _trls("evaluate", *common)}
    if not args.skip_floors:
        times["floors_s"] = _trls("floors", "--profile", "cinc_record", "--set", f"evaluate.seeds={seeds}")
    rdir = ROOT / "reports" / "cinc2017"
    m = json.loads((rdir / "metrics_af.json").read_text())
    floors = json.loads((rdir / "floors.json").read_text())
    key = "record_challenge_f1"
    ctrl = m["controls"]
    out = {
        "metric": key,
        "split": "test (whole: every test record)",
        "methods": {
            "trls": {
                "linear_probe": _values(m["linear_probe"], key),
                **{f"finetune_{f}": _values(m["finetune"][f], key) for f in m["fractions"]},
            }
        },
        "floors": {
            "majority": floors["majority"][key],
            "rr_features_gbm": [r[key] for r in floors["rr_features_gbm"]["runs"]],
            "pixels_linear": _values(ctrl["spectrogram_linear"], key)[0],
            "untrained_linear": _values(ctrl["random_encoder_linear"], key),
        },
        "window_level": {
            "linear_probe": _values(m["linear_probe"], "window_challenge_f1"),
            **{f"finetune_{f}": _values(m["finetune"][f], "window_challenge_f1") for f in m["fractions"]},
        },
        "seeds": args.seeds,
        "settings": {
            "profile": "cinc_record",
            "set": args.sets,
            "spectrogram": m.get("spectrogram"),
            "n_records": m.get("n_records"),
            "n_windows": m.get("n_windows"),
            "finetune_budget": m.get("finetune_budget"),
            "selected_by": m.get("selected_by"),
        },
        "seconds": times,  # this run's wall time (steps whose results were current are reused)
        "stored_compute_s": _stored_compute(args.seeds),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
    }
    write_json(args.out, out)
    from trls_core.plots import plot_score_bars

    bars = {f"TRLS {k.replace('_', ' ')}": v for k, v in out["methods"]["trls"].items()}
    bars.update({f"floor: {k.replace('_', ' ')}": v for k, v in out["floors"].items()})
    plot_score_bars(
        bars,
        args.out.with_suffix(".png"),
        "record challenge F1 (test records)",
        f"CinC 2017 at record level, {len(args.seeds)} pretraining seeds",
    )
    print(json.dumps({k: out[k] for k in ("methods", "floors")}, indent=1))


if __name__ == "__main__":
    main()
