"""Transfer to a small labelled set: the CinC 2017 encoder probed on UCR ECG200 -> docs/results/transfer-ecg200.json.

A user who brings 100 labelled heartbeats wants a representation better
than their own input. This compares, on the archive's TEST file (100 beats),
linear probes on:

- ``trls_from_cinc2017``: the encoders pretrained on all CinC 2017 training
  records (``bench/cinc_record.py`` / ``trls pretrain --profile cinc_record``),
  one per seed, the ECG200 beats resampled and transformed with that
  encoder's settings (``ecg200`` section of params.yaml; checked against
  ``encoder.json`` at evaluation);
- ``trls_own``: the same architecture pretrained with BYOL on ECG200's own
  85 training beats;
- ``untrained_linear``: the same architecture at random init;
- ``pixels_linear``: the spectrogram pixels.

Everything runs through ``trls data`` / ``trls pretrain`` / ``trls evaluate``
with ``--set`` overlays on the ``cinc_record`` profile:

    python bench/transfer_ecg200.py --seeds 0 1 2 [--own-epochs 100]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _scripts import run_trls as _trls  # noqa: E402

from trls_core.io import write_json  # noqa: E402


def _acc(path: Path) -> tuple[list[float], dict]:
    m = json.loads(path.read_text())
    return [float(v) for v in m["linear_probe"]["accuracy"]["values"]], m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument(
        "--own-epochs",
        type=int,
        default=100,
        help="BYOL epochs on ECG200's 85 training beats (one step each: the whole set is one batch)",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "transfer-ecg200.json")
    args = ap.parse_args()
    seeds = json.dumps(args.seeds)
    times = {f"data_{st}_s": _trls("data", st, "ecg200") for st in ("fetch", "parquet", "spectrogram")}
    ev = [
        "--profile",
        "cinc_record",
        "--set",
        "evaluate.dataset=ecg200",
        "--set",
        "evaluate.task=label",
        "--set",
        "evaluate.level=window",
        "--set",
        "evaluate.fractions=[]",
        "--set",
        f"evaluate.seeds={seeds}",
        "--set",
        f"pretrain.seeds={seeds}",
    ]
    times["transfer_evaluate_s"] = _trls("evaluate", *ev)  # pretrain.dataset stays cinc2017: a transfer
    own = [*ev, "--set", "pretrain.dataset=ecg200", "--set", f"pretrain.epochs={args.own_epochs}"]
    times["own_pretrain_s"] = _trls("pretrain", *own)
    times["own_evaluate_s"] = _trls("evaluate", *own)
    rdir = ROOT / "reports" / "ecg200"
    transfer, mt = _acc(rdir / "from_cinc2017" / "metrics_label.json")
    own_acc, mo = _acc(rdir / "metrics_label.json")
    ctrl = mo["controls"]
    out = {
        "metric": "accuracy",
        "split": "ECG200_TEST (100 beats)",
        "pixels_linear": float(ctrl["spectrogram_linear"]["accuracy"]["values"][0]),
        "untrained_linear": [float(v) for v in ctrl["random_encoder_linear"]["accuracy"]["values"]],
        "trls_own": own_acc,
        "trls_from_cinc2017": transfer,
        "seeds": args.seeds,
        "settings": {
            "own_pretrain_epochs": args.own_epochs,
            "spectrogram": mt.get("spectrogram"),
            "n_windows": mt.get("n_windows"),
            "selected_by": mt.get("selected_by"),
        },
        "seconds": times,
    }
    write_json(args.out, out)
    from trls_core.plots import plot_score_bars

    plot_score_bars(
        {k: out[k] for k in ("trls_from_cinc2017", "trls_own", "untrained_linear", "pixels_linear")},
        args.out.with_suffix(".png"),
        "linear-probe accuracy (ECG200_TEST)",
        "ECG200: CinC 2017 encoder vs its own data",
    )
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
