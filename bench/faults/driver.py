"""Entry points the fault suite starts as real processes (and kills), besides ``trls`` and ``bin/trls-stage``.

    python bench/faults/driver.py parent-run ROOT PARAMS
    python bench/faults/driver.py register ROOT PARAMS
    python bench/faults/driver.py pretrain-tracked ROOT PARAMS SEED
    python bench/faults/driver.py evaluate-tracked ROOT PARAMS
    python bench/faults/driver.py hold-sqlite DB SECONDS

``register`` is what the pipeline's register task does
(``flows.pipeline.register_task``: registration with the weights checked
against the digest the units scored, then promotion; not its Prefect
artifact) on seed 0's encoder, under the root's parent MLflow run
(``parent-run``: made once, its id kept in ``<root>/.faults-parent-run``).
``pretrain-tracked`` / ``evaluate-tracked`` are the
flows' tracked tasks (``.fn``, no Prefect API): one pretraining seed, the
linear-probe unit of evaluation seed 0. ``hold-sqlite`` holds an exclusive
transaction on an sqlite file (what another writer holding the MLflow store
looks like), prints ``locked`` and releases it after SECONDS.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # flows/ (a package at the repository root)


def parent_run(root: Path, params_path: Path) -> str:
    """The id of the root's parent MLflow run (started, and the store made, on the first call)."""
    from trls_core.config import load_params
    from trls_core.tracking import Tracker

    id_file = root / ".faults-parent-run"
    if not id_file.is_file():
        run_id = Tracker.start(root, load_params(params_path).pretrain.dataset, "pipeline").run_id
        id_file.write_text(run_id)
    return id_file.read_text().strip()


def register(root: Path, params_path: Path) -> dict:
    """What ``flows.pipeline.register_task`` does, less its Prefect artifact (a temporary Prefect server start)."""
    from flows.pipeline import promotion_score
    from trls_core.config import load_params
    from trls_core.models.loading import read_encoder_info
    from trls_core.paths import model_dir, parquet_file, spectrogram_dir
    from trls_core.stages.evaluate import evaluated_weights_sha256
    from trls_core.tracking import promote_if_better, register_encoder, registered_model_name, resume_run, split_digest

    params = load_params(params_path)
    ds, task = params.pretrain.dataset, params.evaluate.task
    mdir = model_dir(root, ds, params.model.encoder, params.pretrain.seeds[0])
    report, spec = root / "reports" / ds, spectrogram_dir(root, ds)
    name = registered_model_name(ds)
    score = promotion_score(report, task)
    evaluated = evaluated_weights_sha256(report, task, read_encoder_info(mdir).get("seed"))
    run = resume_run(root, parent_run(root, params_path))
    reg = register_encoder(
        run,
        mdir,
        spec,
        name,
        task=task,
        test_macro_f1=score,
        windows=parquet_file(root, ds),
        evaluated_sha256=evaluated,
    )
    # as register_task since 5e30e9f: a skipped (same-weights) version is decided too
    promoted, reason = promote_if_better(name, reg.version, score, split_digest(spec, task), root=root)
    reason = f"{reg.reason}; {reason}" if reg.skipped else reason
    return {"version": reg.version, "skipped": reg.skipped, "promoted": bool(promoted), "reason": reason}


def main(argv: list[str]) -> int:
    what, args = argv[0], argv[1:]
    if what == "hold-sqlite":
        con = sqlite3.connect(args[0], timeout=60, isolation_level=None)
        con.execute("BEGIN EXCLUSIVE")
        print("locked", flush=True)
        time.sleep(float(args[1]))
        con.execute("ROLLBACK")
        return 0
    root, params = Path(args[0]).resolve(), Path(args[1]).resolve()
    if what == "register":
        print(json.dumps(register(root, params)), flush=True)
    elif what == "parent-run":
        print(parent_run(root, params), flush=True)
    elif what == "pretrain-tracked":
        from flows.pretrain import pretrain_seed_task

        print(pretrain_seed_task.fn(str(root), str(params), None, int(args[2]), track=True), flush=True)
    elif what == "evaluate-tracked":
        from flows.evaluate import evaluate_unit_task

        unit = ("linear_probe", 0, None)
        print(evaluate_unit_task.fn(str(root), str(params), None, None, "linear_probe/seed=0", unit), flush=True)
    else:
        raise SystemExit(f"driver: unknown command {what!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
