"""Floors step: what a practitioner tries first, on the evaluation's own record splits -> reports/<dataset>/floors.json.

Reads params ``evaluate`` (dataset, seeds). A claim for a learned
representation is a margin over these, so they are computed on the same
train / validation / test records the encoder is evaluated on:

- ``majority``: the training split's most common record label for every test record;
- ``rr_features_gbm``: RR-interval / HRV statistics + a spectral summary per
  record, gradient boosting with its settings chosen on validation records,
  one run per evaluation seed (``trls_core.floors.rr_features``).

The other two floors (a linear probe on pooled spectrogram pixels, the
untrained encoder) are the evaluation's own controls (``trls evaluate``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from trls_core.config import Params
from trls_core.errors import DataError
from trls_core.io import write_json
from trls_core.paths import parquet_dir, report_dir

logger = logging.getLogger(__name__)

#: Datasets whose windows are single-lead ECG with record ids and a rhythm task (what the RR floor needs).
RR_DATASETS = ("cinc2017",)


def floors(root: Path, params: Params) -> Path:
    """Compute the floors of ``params.evaluate.dataset``; returns the written ``floors.json``."""
    from trls_core.floors.rr_features import FEATURE_NAMES, FEATURES_VERSION, fit_rr_floor, majority_floor
    from trls_core.metrics import aggregate

    ev = params.evaluate
    if ev.dataset not in RR_DATASETS:
        raise DataError(
            f"evaluate.dataset {ev.dataset!r}: the RR-interval floor needs single-lead ECG records "
            f"with a rhythm task (one of {list(RR_DATASETS)})"
        )
    pq = parquet_dir(root, ev.dataset)
    cache = root / "data" / "floors" / ev.dataset / "rr_features.npz"  # beside the data, git-ignored
    runs = []
    for seed in ev.seeds:
        run = fit_rr_floor(pq, seed=seed, cache_path=cache)
        logger.info(
            "rr_features_gbm seed %d: test record challenge F1 %.4f (val %.4f)",
            seed,
            run["record_challenge_f1"],
            run["val_challenge_f1"],
        )
        runs.append(run)
    keys = ("record_challenge_f1", "record_accuracy", "record_macro_f1")
    out: dict[str, Any] = {
        "dataset": ev.dataset,
        "split": "test records",
        "majority": majority_floor(pq),
        "rr_features_gbm": {
            "aggregate": {k: aggregate(r[k] for r in runs) for k in keys},
            "runs": runs,
            "detector": "wfdb.processing.gqrs_detect",
            "features_version": FEATURES_VERSION,
            "feature_names": FEATURE_NAMES,
        },
    }
    path = report_dir(root, ev.dataset) / "floors.json"
    write_json(path, out)
    return path
