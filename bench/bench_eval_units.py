"""Evaluation units in one process, as the pipeline runs them: CPU and wall seconds per unit, and every result.

Why: the evaluation is most of ``make run`` (two tasks of ~36 units after
~3.5 min of pretraining). This runs the binary then the five_set units of
``params.yaml`` (both tasks in one process, like the pipeline, so memoised
features carry over) with one torch thread, then each task's report, and
records per unit: CPU seconds (``time.process_time``, robust on a shared
machine), wall seconds and the result without its timings. Two runs of two
code versions compare as ``same results, less CPU`` (or not).

    python bench/bench_eval_units.py ROOT OUT.json [--seeds 0 1]

``ROOT`` holds ``params.yaml``, ``data/`` and ``models/`` (symlinks to the
project's are fine); unit results are written under ``ROOT/reports``, so use
a scratch root: a unit whose stored result is current would be reused.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--seeds", type=int, nargs="*", help="evaluation seeds (default: evaluate.seeds)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from trls_core.config import load_params
    from trls_core.stages.evaluate import evaluate_unit, load_context, units_for, write_reports

    doc: dict = {"units": {}, "reports": {}, "torch_threads": 1}
    t_all, c_all = time.perf_counter(), time.process_time()
    for task in ("binary", "five_set"):
        params = load_params(args.root / "params.yaml")
        update = {"task": task, **({"seeds": args.seeds} if args.seeds else {})}
        params = params.model_copy(update={"evaluate": params.evaluate.model_copy(update=update)})
        ctx = load_context(args.root, params)
        for unit in units_for(params):
            t, c = time.perf_counter(), time.process_time()
            _, res, ran = evaluate_unit(args.root, params, unit, ctx)
            doc["units"][f"{task}:{unit.name}"] = {
                "wall": round(time.perf_counter() - t, 2),
                "cpu": round(time.process_time() - c, 2),
                "ran": ran,
                "result": {k: v for k, v in res.items() if k not in ("unit_seconds", "fit_seconds", "history")},
                "history": [{k: v for k, v in h.items() if k != "seconds"} for h in res.get("history", [])],
            }
            print(task, unit.name, doc["units"][f"{task}:{unit.name}"]["cpu"], res.get("macro_f1"), flush=True)
        t, c = time.perf_counter(), time.process_time()
        write_reports(args.root, params, ctx)
        doc["reports"][task] = {"wall": round(time.perf_counter() - t, 2), "cpu": round(time.process_time() - c, 2)}
    doc["total"] = {"wall": round(time.perf_counter() - t_all, 1), "cpu": round(time.process_time() - c_all, 1)}
    args.out.write_text(json.dumps(doc, indent=1, default=str))
    print("total", doc["total"])


if __name__ == "__main__":
    main()
