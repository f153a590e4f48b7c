"""Shared pytest fixtures. Each fixture is self-contained; add new ones below."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

# Telemetry off and slow-machine start-up limits for every test (docs/stack.md). Set
# here, before any test module imports mlflow/prefect: mlflow reads them at import.
TELEMETRY_OFF = {
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "60",
    "DVC_NO_ANALYTICS": "1",
}
for _key, _val in TELEMETRY_OFF.items():
    os.environ.setdefault(_key, _val)

# --- tiny_bonn_mirror (owner: data layer, epilepsy) -------------------------
TINY_BONN_SEGMENTS = 3
TINY_BONN_SAMPLES = 4097


@pytest.fixture
def tiny_bonn_mirror(tmp_path: Path) -> Path:
    """A ``bonn-eeg`` folder with Z/O/N/F/S.zip in the real layout, 3 segments each.

    Like the real zips: flat members ``Z001.txt`` (set N upper-case
    ``N001.TXT``), 4097 integer samples, one per line, CRLF. Set S has a
    larger amplitude, as seizure EEG does. Returns ``<tmp>/mirror/bonn-eeg``
    (its parent is also a valid mirror argument).
    """
    folder = tmp_path / "mirror" / "bonn-eeg"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k, letter in enumerate("ZONFS"):
        scale = 400 if letter == "S" else 60
        ext = ".TXT" if letter == "N" else ".txt"
        with zipfile.ZipFile(folder / f"{letter}.zip", "w", zipfile.ZIP_DEFLATED) as zf:
            for i in range(1, TINY_BONN_SEGMENTS + 1):
                values = np.round(rng.normal(10 * k, scale, TINY_BONN_SAMPLES)).astype(int)
                zf.writestr(f"{letter}{i:03d}{ext}", "\r\n".join(map(str, values)) + "\r\n")
    return folder


# --- tiny_project (owner: lead; pipeline tier) -------------------------------
ROOT = Path(__file__).resolve().parents[1]


def shrink_params(raw: dict) -> dict:
    """The real params.yaml shrunk to seconds: same keys, tiny sizes (lightning-hydra style)."""
    raw = dict(raw)
    raw["epilepsy"]["spectrogram"].update({"n_fft": 16, "hop": 8})
    raw["model"]["tfrnn"].update({"dim": 8, "depth": 2, "rep_dim": 16, "rnn_hidden": 4})
    raw["model"]["cnn"].update({"width": 8, "depth": 2, "rep_dim": 16})
    raw["model"]["timeconv"].update({"width": 8, "depth": 2, "rep_dim": 16})
    raw["model"]["tstcc"].update({"width": 8, "rep_dim": 8})
    raw["model"]["ts2vec"].update({"hidden": 8, "rep_dim": 16, "depth": 2})
    raw["model"]["heads"] = {"proj_hidden": 16, "proj_dim": 8, "pred_hidden": 16}
    raw["pretrain"].update({"epochs": 3, "batch_size": 16, "seeds": [0], "warmup_epochs": 1, "device": "cpu"})
    raw["evaluate"].update(
        {"seeds": [0, 1], "fractions": [0.5, 1.0], "tsne_points": 40, "device": "cpu", "c_grid": [0.1, 1.0]}
    )
    raw["evaluate"]["finetune"].update({"epochs": 2, "batch_size": 16, "max_steps_per_epoch": 3})
    raw["compare"]["settings"] = {
        "pretrain": {"seeds": [0, 1], "subset_fraction": 0.5},
        "evaluate": {"finetune": {"epochs": 2, "max_steps_per_epoch": 3}},
    }
    return raw


@pytest.fixture
def tiny_params(tmp_path: Path) -> Path:
    """A shrunken copy of the project's params.yaml in ``tmp_path``."""
    import yaml

    raw = shrink_params(yaml.safe_load((ROOT / "params.yaml").read_text()))
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture
def tiny_project(tmp_path: Path, tiny_params: Path) -> Path:
    """A project root with a tiny epilepsy Parquet + spectrograms built by the real stage code.

    Five classes like the Bonn sets (S louder, as seizure EEG is), 8 records
    x 4 windows of 64 samples per class, random split.
    """
    return make_tiny_project(tmp_path, tiny_params)


def make_tiny_project(root: Path, params_path: Path) -> Path:
    """:func:`tiny_project` outside pytest (the fault suite, bench/faults/kills.py, builds its roots with it)."""
    from trls_core.config import load_params
    from trls_core.data.parquet import write_windows
    from trls_core.datasets.epilepsy import build_epilepsy_table
    from trls_core.datasets.epilepsy.source import BonnData
    from trls_core.paths import parquet_file
    from trls_core.stages.spectrogram import build_spectrograms

    rng = np.random.default_rng(0)
    n_per, length = 8, 4 * 64
    t = np.arange(length) / 173.61
    signals, ids, sets = [], [], []
    for k, letter in enumerate("ZONFS"):
        for i in range(n_per):
            f = 4 + 6 * k
            amp = 5.0 if letter == "S" else 1.0
            sig = amp * np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) + 0.3 * rng.standard_normal(length)
            signals.append(sig)
            ids.append(f"{letter}{i + 1:03d}")
            sets.append(k)
    data = BonnData(
        signals=np.asarray(signals, dtype=np.float32)[:, None, :],
        record_ids=ids,
        set_index=np.asarray(sets, dtype=np.int64),
        set_names=list("ZONFS"),
        content_digest="synthetic",
        fs=173.61,
    )
    table, meta = build_epilepsy_table(
        data, window=64, protocol="random", val_frac=0.2, test_frac=0.2, seed=0, stride=None
    )
    root = Path(root)
    write_windows(table, parquet_file(root, "epilepsy"), {"dataset": "epilepsy", **meta})
    build_spectrograms(root, "epilepsy", load_params(params_path))
    return root
