"""Concurrent promotions against one MLflow sqlite store: does the highest score always end as champion?

Issue 19's fault case "8 concurrent promotions". Each repetition takes a
fresh copy of a template store (one registered model with N versions scored
on one test split, no alias yet) and starts N processes together (behind a
barrier), each calling :func:`trls_core.tracking.promote_if_better` for its
own version with a distinct score, the scores shuffled per repetition. Then
the champion is read back: the case holds when it is the highest-scoring
version in every repetition.

The processes come from a ``forkserver`` that preloaded MLflow and the
promotion module, so a start costs milliseconds, not an MLflow import, and
no process inherits an open sqlite connection.

Reusable: ``concurrent_promotions(workdir, n=8, reps=20)`` returns the
figures as a dict (the fault suite records it); run as a script it prints
them as JSON::

    .venv/bin/python bench/faults/promotions.py --reps 20 [--promoters 8] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MODEL = "trls-bench-encoder"
DIGEST = "0123456789abcdef"  # one test split for every version: all scores are comparable
# what a promoter imports, loaded once in the forkserver (the sqlite stores are imported lazily by mlflow)
_PRELOAD = [
    "trls_core.tracking.promotion",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
]


def _uri(root: Path) -> str:
    return f"sqlite:///{Path(root).resolve() / 'mlflow.db'}"


def _make_template(root: str, n: int) -> None:
    """A store with registered model :data:`MODEL` and ``n`` versions tagged with :data:`DIGEST` (child process)."""
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    from trls_core.tracking.store import mlflow_client

    client = mlflow_client(_uri(Path(root)))
    client.create_registered_model(MODEL)
    for i in range(n):
        source = Path(root) / "models" / f"v{i + 1}"  # versions need a source; promotion never reads it
        source.mkdir(parents=True)
        client.create_model_version(MODEL, source=source.as_uri(), tags={"test_split_digest": DIGEST})


def _promote(root: str, version: str, score: float, barrier: Any) -> None:
    """One promoter: wait for the others, then promote ``version`` with ``score`` (child process)."""
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    from trls_core.tracking.promotion import promote_if_better

    barrier.wait(timeout=120)
    promote_if_better(MODEL, version, score, DIGEST, root=Path(root))


def _champion(root: str, queue: Any) -> None:
    """Put (champion version, its score tag) on ``queue`` (child process: the parent never opens the store)."""
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    from trls_core.tracking.store import mlflow_client

    mv = mlflow_client(_uri(Path(root))).get_model_version_by_alias(MODEL, "champion")
    queue.put((str(mv.version), float(mv.tags["test_macro_f1"])))


def _context() -> Any:
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


def _run(ctx: Any, target: Any, args: tuple[Any, ...], timeout: float = 300.0) -> None:
    p = ctx.Process(target=target, args=args)
    p.start()
    p.join(timeout)
    if p.exitcode != 0:
        p.kill()
        raise RuntimeError(f"{target.__name__}{args[:2]} exited with {p.exitcode}")


def concurrent_promotions(workdir: Path, n: int = 8, reps: int = 20, seed: int = 0) -> dict[str, Any]:
    """``reps`` repetitions of ``n`` promotions at once; returns the figures (``all_correct``: every time).

    Each repetition: ``<workdir>/rep<k>/mlflow.db`` (a copy of the template),
    the lock ``<workdir>/rep<k>/.trls/promotion-mlflow.db.lock``. A promoter
    that fails counts against the repetition (``failed_promoters``).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = _context()
    template = workdir / "template"
    shutil.rmtree(template, ignore_errors=True)
    template.mkdir()
    t0 = time.perf_counter()
    _run(ctx, _make_template, (str(template), n))
    setup_s = time.perf_counter() - t0
    rng = random.Random(seed)
    cases = []
    for rep in range(reps):
        root = workdir / f"rep{rep}"
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir()
        shutil.copyfile(template / "mlflow.db", root / "mlflow.db")
        scores = [round(0.5 + 0.4 * k / n, 4) for k in range(n)]
        rng.shuffle(scores)  # version i gets scores[i]: the best is a different version each time
        barrier = ctx.Barrier(n)
        procs = [
            ctx.Process(target=_promote, args=(str(root), str(i + 1), scores[i], barrier), name=f"promote-v{i + 1}")
            for i in range(n)
        ]
        t1 = time.perf_counter()
        for p in procs:
            p.start()
        for p in procs:
            p.join(300)
        seconds = time.perf_counter() - t1
        failed = [p.name for p in procs if p.exitcode != 0]
        for p in procs:
            if p.exitcode is None:
                p.kill()
        queue = ctx.Queue()
        _run(ctx, _champion, (str(root), queue))
        champion, champion_score = queue.get(timeout=60)
        expected = str(scores.index(max(scores)) + 1)
        cases.append(
            {
                "rep": rep,
                "champion": champion,
                "champion_score": champion_score,
                "expected": expected,
                "best_score": max(scores),
                "ok": champion == expected and not failed,
                "failed_promoters": failed,
                "seconds": round(seconds, 3),
            }
        )
    correct = sum(c["ok"] for c in cases)
    return {
        "case": "concurrent_promotions",
        "store": "sqlite",
        "promoters": n,
        "reps": reps,
        "champion_correct": correct,
        "all_correct": correct == reps,
        "template_seconds": round(setup_s, 2),
        "seconds_per_rep": round(sum(c["seconds"] for c in cases) / max(reps, 1), 3),
        "cases": cases,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--promoters", type=int, default=8)
    parser.add_argument("--out", type=Path, default=None, help="also write the figures here (JSON)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="trls-promotions-") as tmp:
        figures = concurrent_promotions(Path(tmp), n=args.promoters, reps=args.reps)
    text = json.dumps(figures, indent=2)
    if args.out is not None:
        args.out.write_text(text + "\n")
    print(text)
    return 0 if figures["all_correct"] else 1


if __name__ == "__main__":
    sys.exit(main())
