"""Every study overlay (experiments/*.yaml) end to end through ``study_flow`` on tiny data.

The tiny project (``tiny_project``: Bonn-shaped epilepsy; plus a synthetic
CinC 2017 archive through the real data stages for the CinC overlays) and
``--set``-style overrides that shrink every variant to seconds (one seed, one
epoch, tiny encoders). Each overlay runs its first two variants (the dry-run
test in tests/unit/test_study_overlay.py validates all of them). Checked: one
MLflow parent run per study with one child per variant holding the variant's
overrides as params and validation scores as metrics; a table row per variant;
variants that share pretraining share its store; a bad overlay fails naming
the file and the key.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, TELEMETRY_OFF

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:sqlalchemy.*"),
    pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning"),
]

OVERLAYS = sorted((ROOT / "experiments").glob("*.yaml"))
RUN_VARIANTS = 1

#: every variant shrunk to seconds, applied over the overlay (what `trls study --set` does)
SHRINK = [
    "pretrain.epochs=1",
    "pretrain.batch_size=16",
    "pretrain.seeds=[0]",
    "pretrain.device=cpu",
    "pretrain.threads=null",  # cinc_record's 1 thread would stay set for the rest of the test session
    "evaluate.seeds=[0]",
    "evaluate.device=cpu",
    "evaluate.c_grid=[0.1, 1.0]",
    "evaluate.finetune={epochs: 1, max_steps_per_epoch: 2, batch_size: 16}",
    "model.tfrnn={dim: 8, depth: 2, rep_dim: 16, rnn_hidden: 4}",
    "model.cnn={width: 8, depth: 2, rep_dim: 16}",
    "model.tstcc={width: 8, rep_dim: 8}",
    "model.heads={proj_hidden: 16, proj_dim: 8, pred_hidden: 16}",
]


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A Prefect test API on a temp sqlite DB for this module (as tests/integration/test_flows.py)."""
    home = tmp_path_factory.mktemp("prefect_home_study")
    with pytest.MonkeyPatch.context() as mp:
        for k, v in {**TELEMETRY_OFF, "PREFECT_HOME": str(home)}.items():
            mp.setenv(k, v)
        from prefect.settings import PREFECT_HOME, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, temporary_settings
        from prefect.testing.utilities import prefect_test_harness

        with temporary_settings(updates={PREFECT_HOME: home, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: 60}):
            with prefect_test_harness(server_startup_timeout=60):
                yield


def _tiny_epilepsy(root: Path, params: Any) -> None:
    """The epilepsy Parquet of conftest's ``tiny_project`` (Bonn-shaped: 5 sets x 8 records x 4 windows of 64
    samples, S louder), then the real spectrogram stage."""
    import numpy as np

    from trls_core.data.parquet import write_windows
    from trls_core.datasets.epilepsy import build_epilepsy_table
    from trls_core.datasets.epilepsy.source import BonnData
    from trls_core.paths import parquet_file
    from trls_core.stages.spectrogram import build_spectrograms

    rng = np.random.default_rng(0)
    t = np.arange(4 * 64) / 173.61
    signals, ids, sets = [], [], []
    for k, letter in enumerate("ZONFS"):
        for i in range(8):
            amp = 5.0 if letter == "S" else 1.0
            signals.append(
                amp * np.sin(2 * np.pi * (4 + 6 * k) * t + rng.uniform(0, 6)) + 0.3 * rng.standard_normal(t.size)
            )
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
    write_windows(table, parquet_file(root, "epilepsy"), {"dataset": "epilepsy", **meta})
    build_spectrograms(root, "epilepsy", params)


@pytest.fixture(scope="module")
def study_project(tmp_path_factory: pytest.TempPathFactory, prefect_api: None) -> Iterator[tuple[Path, Path]]:
    """(root, params file): the shrunken params.yaml and both datasets built by the real data stages from
    synthetic mirrors (Bonn: 3 segments per set; CinC 2017: 40 records of 15 s). MLflow on sqlite in the
    root, cwd there (nothing lands in the repo). Shared by the module's tests, as a project's data is."""
    from tests.cinc_synth import tiny_mirror
    from tests.conftest import shrink_params
    from trls_core.config import load_params
    from trls_core.stages.fetch import fetch
    from trls_core.stages.parquet import build_parquet
    from trls_core.stages.spectrogram import build_spectrograms

    root = tmp_path_factory.mktemp("study_project")
    raw = shrink_params(yaml.safe_load((ROOT / "params.yaml").read_text()))
    raw["cinc2017"]["fetch"]["expected_records"] = None
    params_path = root / "params.yaml"
    params_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    tiny_mirror(root / "mirror", 40)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRLS_DATA_MIRROR", str(root / "mirror"))
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        mp.chdir(root)
        params = load_params(params_path)
        _tiny_epilepsy(root, params)
        for step in (fetch, build_parquet, build_spectrograms):
            step(root, "cinc2017", params)
        yield root, params_path


def _runs(uri: str, parent_id: str) -> tuple[Any, dict[str, Any]]:
    """The study's parent run and its children by run name."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    parent = client.get_run(parent_id)
    runs = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")
    return parent, {r.info.run_name: r for r in runs}


def _rows(out: dict[str, Any]) -> list[dict[str, str]]:
    with open(out["files"]["csv"], newline="") as fh:
        return list(csv.DictReader(fh))


def _check_runs(root: Path, out: dict[str, Any], study: Any, variants: list[Any]) -> None:
    """One parent run per study, one child per variant with its overrides as params and scores as metrics."""
    from trls_core.config import flatten
    from trls_core.study.overlay import nest

    parent, children = _runs(f"sqlite:///{root / 'mlflow.db'}", out["run_id"])
    assert parent.info.run_name == f"study/{study.name}" and parent.info.status == "FINISHED"
    assert parent.data.params["metric"] == study.metric
    assert sorted(children) == sorted(f"variant/{v.name}" for v in variants)
    for v in variants:
        child = children[f"variant/{v.name}"]
        assert child.info.status == "FINISHED" and "score" in child.data.metrics
        assert child.data.params["variant"] == v.name and child.data.tags["study"] == study.name
        for key in flatten(nest(v.overrides, "test")):
            assert key in child.data.params, (v.name, key)


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.stem)
def test_overlay_runs_end_to_end(overlay: Path, study_project: tuple[Path, Path]) -> None:
    from flows.study import study_flow
    from trls_core.study.overlay import load_study

    root, params_path = study_project
    study = load_study(overlay)
    variants = list(study.variants[:RUN_VARIANTS])
    out = study_flow(
        overlay=str(overlay),
        root=str(root),
        params_path=str(params_path),
        sets=SHRINK,
        variants=[v.name for v in variants],
    )
    assert sorted(out["variants"]) == sorted(v.name for v in variants)
    rows = _rows(out)
    assert [r["variant"] for r in rows] == [v.name for v in variants]
    tasks = study.overlay.score.tasks
    col = f"{tasks[0]}:{study.metric}" if tasks else next(k for k in rows[0] if k.endswith(f":{study.metric}"))
    assert all(0.0 <= float(r[col]) <= 1.0 for r in rows), rows
    assert f"`{variants[0].name}`" in Path(out["files"]["md"]).read_text()
    _check_runs(root, out, study, variants)


def test_variants_sharing_pretraining_share_its_store(study_project: tuple[Path, Path]) -> None:
    """epilepsy_epochs shrunk to one epoch: its three variants pretrain the same way, so they share one
    store (one encoder); one row and one child run per variant; a rerun reuses every stored unit."""
    from flows.study import study_flow
    from trls_core.study.plan import plan_study
    from trls_core.study.workspace import pretrain_store

    root, params_path = study_project
    overlay = ROOT / "experiments" / "epilepsy_epochs.yaml"
    kw = {"overlay": str(overlay), "root": str(root), "params_path": str(params_path), "sets": SHRINK}
    out = study_flow(**kw)
    study, plan = plan_study(overlay, params_path, SHRINK)
    assert sorted(r["variant"] for r in _rows(out)) == ["epochs=10", "epochs=20", "epochs=30"]
    _check_runs(root, out, study, list(study.variants))
    stores = {pretrain_store(root, rv.params) for rv in plan}
    assert len(stores) == 1 and len(list(next(iter(stores)).glob("models/epilepsy/*/encoder.safetensors"))) == 1
    units = sorted((root / "studies" / "epilepsy_epochs").rglob("units/*/*.json"))
    assert len(units) == 3 * 2 * 3  # 3 variants x 2 tasks x (probe, pixels, untrained)
    mtimes = {u: u.stat().st_mtime_ns for u in units}
    again = study_flow(**kw, track=False)
    assert all(u.stat().st_mtime_ns == t for u, t in mtimes.items())
    assert again["variants"] == out["variants"]


def test_bad_overlay_fails_naming_file_and_key(study_project: tuple[Path, Path], tmp_path: Path) -> None:
    from flows.study import study_flow

    root, params_path = study_project
    bad = tmp_path / "bad_study.yaml"
    bad.write_text(yaml.safe_dump({"score": {"metric": "linear_probe.macro_f1"}, "variant": {"a": {}}}))
    state = study_flow(overlay=str(bad), root=str(root), params_path=str(params_path), return_state=True)
    assert state.is_failed()
    assert str(bad) in state.message and "unknown key 'variant'" in state.message, state.message
