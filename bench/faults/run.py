"""The fault suite (``make faults``): fuzzed inputs and injected faults -> bench/results/faults.json.

    python bench/faults/run.py [--examples 70] [--reps 20] [--out bench/results/faults.json] [--workdir DIR]
    python bench/faults/run.py --quick   # the smoke run: one kill case, a few fuzzed inputs (seconds)
    python bench/faults/run.py --table   # the cases of bench/results/faults.json as a markdown table

- ``bad_inputs_tried``: distinct generated bad inputs over every reader
  (``fuzz.run_fuzz``), ``unnamed_errors`` those that failed without naming
  the file / record / key (a traceback, another exception, a half-written output);
- ``faults_injected``: the faults that did happen (a kill whose process had
  already ended is listed, not counted), ``recovered`` how many of them the
  rerun recovered from, ``data_lost`` how many prior output files (sha256
  before the fault vs after the rerun) changed or went missing;
- ``cases``: one record per fault (``kills.py``: kill -9 of each data stage,
  pretraining, evaluation units and registration at several points; disk
  full on a tmpfs; the MLflow store locked; two runs on one root; and
  ``promotions.py``'s concurrent promotions).

Exit 0 when every injected fault was recovered from, nothing was lost and
no error was unnamed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import kills  # noqa: E402

OUT = kills.ROOT / "bench" / "results" / "faults.json"


def _log(msg: str) -> None:
    print(f"[faults {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def fuzz(examples: int, names: list[str] | None = None) -> dict[str, Any]:
    import fuzz as fz

    results = fz.run_fuzz(examples, names, seed=0)
    return {"examples_per_reader": examples, "totals": fz.totals(results), "readers": results}


def promotions_case(workdir: Path, reps: int) -> dict[str, Any]:
    from promotions import concurrent_promotions

    t0 = time.perf_counter()
    fig = concurrent_promotions(workdir, n=8, reps=reps)
    wrong = [c for c in fig["cases"] if not c["ok"]]
    return {
        "name": "8 concurrent promotions",
        "fault": f"8 processes promote distinct scores at once (barrier), {reps} repetitions",
        "injected": True,
        "recovered": fig["all_correct"],
        "why_not": None if not wrong else f"{len(wrong)} repetition(s) without the best as champion: {wrong[:3]}",
        "prior_files": 0,
        "lost": [],
        "reps": reps,
        "champion_correct": fig["champion_correct"],
        "seconds_per_rep": fig["seconds_per_rep"],
        "seconds": round(time.perf_counter() - t0, 2),
    }


def plan(suite: kills.Suite, quick: bool) -> list[tuple[str, Callable[[], dict[str, Any]]]]:
    """(label, case) in running order."""
    out: list[tuple[str, Callable[[], dict[str, Any]]]] = []
    for step, state, trig in kills.kill_plan(suite):
        out.append((f"kill -9 {step}: {trig.describe}", lambda s=step, st=state, t=trig: suite.kill_case(s, st, t)))
        if quick:
            return out
    disk = [
        ("parquet", "data", "data/parquet", 256 << 10),
        ("spectrogram", "data", "data/spectrograms", 256 << 10),
        ("pretrain", "spec", "models", 16 << 10),
        ("evaluate", "pretrained", "reports", 8 << 10),
    ]
    for step, state, folder, slack in disk:
        out.append((f"disk full: {step}", lambda a=(step, state, folder, slack): kills.disk_full_case(suite, *a)))
    for what in ("pretrain", "evaluate"):
        out.append((f"MLflow locked: {what}", lambda w=what: kills.mlflow_locked_case(suite, w)))
    for second in ("evaluate", "pretrain"):
        out.append((f"two runs: pretrain + {second}", lambda s=second: kills.two_runs_case(suite, s)))
    return out


def summarise(fz: dict[str, Any], cases: list[dict[str, Any]], seconds: float, load: list[float]) -> dict[str, Any]:
    injected = [c for c in cases if c.get("injected")]
    return {
        "bad_inputs_tried": fz["totals"]["distinct"],
        "unnamed_errors": fz["totals"]["n_unnamed"],
        "faults_injected": len(injected),
        "recovered": sum(bool(c.get("recovered")) for c in injected),
        "data_lost": sum(len(c.get("lost") or []) for c in cases),
        "not_injected": len(cases) - len(injected),
        "litter_after_rerun": sum(len(c.get("litter_after_rerun") or []) for c in cases),
        "seconds": round(seconds, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_start": load,
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
        },
        "command": "make faults",
        "fuzz": fz,
        "cases": cases,
    }


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(res: dict[str, Any]) -> str:
    """The cases of a faults.json as a markdown table (docs/reliability.md)."""
    rows = [
        "| # | case | fault | prior files | sha256 before = after | lost | rerun | recovered | s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for i, c in enumerate(res["cases"], 1):
        same = (
            "n/a"
            if not c.get("prior_files")
            else ("yes" if c["prior_sha256_before"] == c["prior_sha256_after"] else "**no**")
        )
        if c.get("prior_files"):
            same += f" (`{c['prior_sha256_before'][:10]}`)"
        rec = (
            {True: "yes", False: "**no**", None: "skipped"}[c.get("recovered")] if c.get("injected") else "not injected"
        )
        note = c.get("message") if c.get("message") and c.get("failed_cleanly") is False else ""
        rows.append(
            f"| {i} | {_cell(c['name'])} | {_cell(c['fault'])}{' (' + _cell(note) + ')' if note else ''} "
            f"| {c.get('prior_files', 0)} | {same} | {len(c.get('lost') or [])} | {c.get('rerun_exit', '')} "
            f"| {rec} | {c['seconds']} |"
        )
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=70, help="fuzzed inputs generated per reader")
    parser.add_argument("--reps", type=int, default=20, help="repetitions of the 8 concurrent promotions")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--workdir", type=Path, help="where the temp roots go (default: a temp folder, removed)")
    parser.add_argument("--quick", action="store_true", help="smoke run: one kill case, 3 inputs of 2 readers")
    parser.add_argument("--table", action="store_true", help="print --out's cases as a markdown table, run nothing")
    args = parser.parse_args(argv)
    if args.table:
        print(table(json.loads(args.out.read_text())), end="")
        return 0

    t0 = time.perf_counter()
    load = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="trls-faults-", dir=args.workdir) as tmp:
        work = Path(tmp)
        _log("fuzzing the readers")
        fz = fuzz(3, ["bonn_zip", "params_values"]) if args.quick else fuzz(args.examples)
        _log(f"{fz['totals']['distinct']} distinct inputs, {fz['totals']['n_unnamed']} unnamed; building the roots")
        suite = kills.Suite(work / "suite").build(train=not args.quick)
        _log(f"clean runs (s): {suite.clean_s}")
        cases = []
        for label, case in plan(suite, args.quick):
            rec = case()
            cases.append(rec)
            _log(
                f"{label}: injected={rec.get('injected')} recovered={rec.get('recovered')} "
                f"lost={len(rec.get('lost') or [])} ({rec['seconds']} s)"
                + (f" WHY: {rec['why_not']}" if rec.get("why_not") and rec.get("injected") else "")
            )
        if not args.quick:
            _log("8 concurrent promotions")
            cases.append(promotions_case(work / "promotions", args.reps))
    out = summarise(fz, cases, time.perf_counter() - t0, load)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    head = {k: out[k] for k in ("bad_inputs_tried", "unnamed_errors", "faults_injected", "recovered", "data_lost")}
    _log(f"{head} in {out['seconds']} s -> {args.out}")
    good = out["unnamed_errors"] == 0 and out["recovered"] == out["faults_injected"] and out["data_lost"] == 0
    return 0 if good else 1


if __name__ == "__main__":
    raise SystemExit(main())
