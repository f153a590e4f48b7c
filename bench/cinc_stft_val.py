"""Which STFT settings suit CinC 2017 ECG? Linear probes on the VALIDATION split, no pretraining.

The CinC spectrogram settings (n_fft 64, hop 32 at 300 Hz) were carried
over from the EEG sizing, not chosen for ECG. This study scores each
candidate (n_fft, hop) cheaply, before any pretraining is spent on it:

* ``pixels``: logistic regression on the normalised log-spectrogram;
* ``untrained``: logistic regression on the small-profile TFRNN at its
  seeded random init (what TRLS starts from; on Bonn this control was
  within ~1 pp of the pretrained encoder, so it tracks what the
  architecture can see in the input).

It uses the comparison's evaluation budget for CinC (params.yaml
``compare.datasets.cinc2017.evaluate``): a stratified pool of 7,360 training
windows and 2,000 validation windows drawn with the same seed
(``trls_core.stages.evaluate.BUDGET_SEED``). The per-frequency normaliser is
fitted on the pool. Scores: challenge F1 (mean F1 of N, A, O) and 4-class
macro-F1 on validation, best over the C grid. The test split is not read.

    python bench/cinc_stft_val.py --out bench/results/cinc_stft_val.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

SETTINGS = [(64, 32), (32, 16), (64, 16), (128, 16), (128, 32), (128, 64)]
C_GRID = (0.01, 0.1, 1.0, 10.0)


def _probe(z_tr, y_tr, z_va, y_va, classes, score_classes) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.preprocessing import StandardScaler

    from trls_core.metrics import subset_f1

    sc = StandardScaler().fit(z_tr)
    a, b = sc.transform(z_tr), sc.transform(z_va)
    best: dict[str, Any] = {"challenge_f1": -1.0}
    for c in C_GRID:
        pred = LogisticRegression(C=c, max_iter=300).fit(a, y_tr).predict(b)
        ch = subset_f1(y_va, pred, classes, score_classes)  # the challenge score, as the evaluation computes it
        if ch > best["challenge_f1"]:
            best = {
                "C": c,
                "challenge_f1": round(ch, 4),
                "macro_f1": round(float(f1_score(y_va, pred, average="macro")), 4),
            }
    return best


def budget_windows(parquet: Path, params: Any, extra_val: bool = False):  # type: ignore[no-untyped-def]
    """The comparison's CinC evaluation budget: (class names, labels, picks, raw signals per pick).

    ``picks["train"]``: the stratified label pool; ``picks["val"]``: the
    validation windows that choose C and the early-stopping epoch, drawn as
    ``trls_core.stages.evaluate`` draws them (``BUDGET_SEED``). With
    ``extra_val``, ``picks["val_rest"]`` holds every other validation window:
    a held-out set for judging a selection rule without reading the test split.
    """
    import numpy as np
    import torch

    from trls_core.data.parquet import read_windows, signals_array
    from trls_core.data.tensors import load_meta, task_info
    from trls_core.paths import spectrogram_dir
    from trls_core.stages.evaluate import budget_indices

    task = task_info(load_meta(spectrogram_dir(Path("."), "cinc2017")), "af")
    names = (task["classes"], task["score_classes"])
    budget = params.compare.datasets["cinc2017"]["evaluate"]
    df, _ = read_windows(parquet, columns=["split", "label"])
    split, y = df["split"].to_numpy().astype(str), df["label"].to_numpy()
    picks = {}
    for sp, cap in (("train", budget["label_pool"]), ("val", budget["val_windows"])):
        idx = np.flatnonzero(split == sp)
        picks[sp] = idx[budget_indices(y[idx], cap)]
    if extra_val:
        picks["val_rest"] = np.setdiff1d(np.flatnonzero(split == "val"), picks["val"])
    sig = {}
    for name, idx in picks.items():
        sp = "val" if name.startswith("val") else name
        rows = np.searchsorted(np.flatnonzero(split == sp), idx)
        sig[name] = torch.from_numpy(np.ascontiguousarray(signals_array(parquet, split=sp)[rows]))
    return names, y, picks, sig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parquet", default="data/parquet/cinc2017/windows.parquet")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default="bench/results/cinc_stft_val.json")
    ap.add_argument("--settings", nargs="*", help="n_fft/hop pairs, e.g. 64/32 128/16")
    a = ap.parse_args()

    import torch

    from trls_core.config import load_params
    from trls_core.models import build_encoder
    from trls_core.spectrogram import apply_normaliser, fit_normaliser, stft_logmag

    params = load_params(Path(a.params))
    names, y, picks, sig = budget_windows(Path(a.parquet), params)
    settings = [tuple(int(v) for v in s.split("/")) for s in a.settings] if a.settings else SETTINGS
    results = []
    for n_fft, hop in settings:
        t0 = time.time()
        spec = {sp: stft_logmag(sig[sp], n_fft=n_fft, hop=hop, log_eps=1e-3) for sp in sig}
        stats = fit_normaliser(spec["train"], "train_per_freq")
        spec = {sp: apply_normaliser(s, "train_per_freq", stats) for sp, s in spec.items()}
        row: dict[str, Any] = {"n_fft": n_fft, "hop": hop, "shape": list(spec["train"].shape[1:])}
        flat = {sp: s.reshape(len(s), -1).numpy() for sp, s in spec.items()}
        row["pixels"] = _probe(flat["train"], y[picks["train"]], flat["val"], y[picks["val"]], *names)
        torch.manual_seed(0)
        enc = build_encoder("tfrnn", in_channels=1, **params.model.encoder_kwargs()).eval()
        with torch.no_grad():
            z = {sp: torch.cat([enc(s[i : i + 512]) for i in range(0, len(s), 512)]).numpy() for sp, s in spec.items()}
        row["untrained"] = _probe(z["train"], y[picks["train"]], z["val"], y[picks["val"]], *names)
        row["seconds"] = round(time.time() - t0, 1)
        print(json.dumps(row), flush=True)
        results.append(row)
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(
            json.dumps(
                {
                    "machine": platform.platform(),
                    "torch_threads": torch.get_num_threads(),
                    "pool": len(picks["train"]),
                    "val": len(picks["val"]),
                    "results": results,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
