"""Fuzz the readers: every generated bad input loads, or fails with a TrlsError naming the file / record / key.

    python bench/faults/fuzz.py [--examples N] [--reader NAME ...] [--seed S] [--out FILE]

Inputs come from ``fuzz_inputs.py`` (hypothesis strategies). Each one goes
through what a user runs: the CinC and custom cases through the ``parquet``
stage function into a temp project (``trls_core.stages.parquet``), Bonn zips
through ``read_bonn_zip``, params values through ``resolve_params``, a
params file through ``read_raw_params``, CLI values through ``trls`` itself
(typer's runner). Per input the outcome is

- ``ok``: it loaded (for a stage: all three outputs written);
- ``rejected``: the stage loaded and rejected bad records / rows, each
  with a reason naming it (rejected.json);
- ``named``: a :class:`TrlsError` whose message names the file, record or
  key (for the CLI: exit 2 naming the option / key / file);
- ``unnamed``: anything else: another exception type, a traceback, a
  message naming none of them, or a stage output left half-written.

``fallback`` counts the named outcomes that went through a catch-all (a
record rejected as an "unexpected error"): named, but a case no check
anticipated; a reader to teach. Distinct inputs are counted by the sha256 of
the files and settings, so hypothesis repeating an input does not inflate N.

``run_fuzz`` returns ``{reader: {"tried", "distinct", "ok", "rejected",
"named", "fallback", "n_unnamed", "unnamed": [examples], "seconds"}}``; the fast tests
(tests/unit/test_fuzz_readers.py) and ``make faults`` both call it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))  # fuzz_inputs beside this file (bench/ holds scripts)

import fuzz_inputs as fi  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PARAMS = ROOT / "params.yaml"
CUSTOM = "fz"  # the custom dataset section the custom cases are read as
UNNAMED_KEEP = 5  # examples kept per reader for the report


@dataclass(frozen=True)
class Outcome:
    kind: str  # ok | rejected | named | fallback | unnamed
    detail: str = ""


# ----------------------------------------------------------------- settings the stages read
@cache
def _raw_params() -> dict[str, Any]:
    from trls_core.config import read_raw_params

    return read_raw_params(PARAMS)


@cache
def _custom_spectrogram() -> dict[str, Any]:
    return dict(_raw_params()["ecg200"]["spectrogram"])


def _params(overrides: dict[str, Any]) -> Any:
    from trls_core.config import resolve_params

    raw = dict(_raw_params())
    raw[CUSTOM] = {
        "kind": "custom",
        "fetch": {"path": "unused"},
        "parquet": {
            "format": "auto",
            "fs": None,
            "target_fs": None,
            "channels": None,
            "group_by": "record",
            "split_from_file": False,
            "val_frac": 0.2,
            "test_frac": 0.2,
            "seed": 0,
            "class_names": None,
            "min_keep_fraction": 0.5,
        },
        "spectrogram": _custom_spectrogram(),
    }
    return resolve_params(raw, profile="small", source=str(PARAMS), overrides=overrides)


_CINC = {
    "cinc2017": {
        "parquet": {
            "window": 300,
            "stride": None,
            "pad": "end",
            "target_fs": 300,
            "channels": ["ECG"],
            "val_frac": 0.2,
            "test_frac": 0.2,
            "seed": 0,
            "flat_std_mv": 0.001,
            "min_keep_fraction": 0.5,
            "chunk_records": 512,
        }
    }
}


@cache
def param_leaves() -> list[tuple[str, ...]]:
    """Paths of every setting (free-form dicts excluded: they are validated where they are applied).

    Paths, not dotted strings: a key may hold a dot itself (``sha256: {training2017.zip: ...}``).
    """
    dump = _params({}).model_dump(mode="json")
    dump.pop(CUSTOM, None)
    free = (("compare", "settings"), ("compare", "datasets"), ("profile",))
    out: list[tuple[str, ...]] = []

    def walk(node: Any, path: tuple[str, ...]) -> None:
        if isinstance(node, dict) and node:
            for k, v in node.items():
                walk(v, (*path, str(k)))
        elif not any(path[: len(f)] == f for f in free) and "overrides" not in path:
            out.append(path)

    walk(dump, ())
    return sorted(out)


def dotted_leaves() -> list[str]:
    """The leaves a ``--set dotted.key=value`` can address (no dot inside a key)."""
    return [".".join(p) for p in param_leaves() if not any("." in k for k in p)]


# ----------------------------------------------------------------- checks, one per kind of reader
def _named(message: str, names: Iterable[str]) -> bool:
    return any(n and n in message for n in names)


def _stage(case: fi.Case, dataset: str, overrides: dict[str, Any], names: tuple[str, ...]) -> Outcome:
    """Write ``case.files`` as the dataset's raw folder, run the parquet stage, judge outcome and outputs."""
    from trls_core.data.report import UNEXPECTED
    from trls_core.errors import TrlsError
    from trls_core.paths import parquet_dir, raw_dir
    from trls_core.stages.parquet import build_parquet

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        src = raw_dir(root, dataset)
        src.mkdir(parents=True)
        for name, data in case.files.items():
            (src / name).write_bytes(data)
        try:
            params = _params(overrides)
        except TrlsError as exc:  # the drawn settings themselves are refused
            return Outcome("named" if "parquet" in str(exc) else "unnamed", f"settings: {exc}")
        out = parquet_dir(root, dataset)
        names = (*names, str(src))
        try:
            build_parquet(root, dataset, params)
        except TrlsError as exc:
            litter = sorted(p.name for p in out.parent.iterdir()) if out.parent.is_dir() else []
            if litter:
                return Outcome("unnamed", f"failed but left {litter} in {out.parent}: {exc}")
            return Outcome("named", str(exc)) if _named(str(exc), names) else Outcome("unnamed", f"no name: {exc}")
        except Exception as exc:
            return Outcome("unnamed", _raw(exc))
        missing = [f for f in ("windows.parquet", "summary.json", "rejected.json") if not (out / f).is_file()]
        if missing:
            return Outcome("unnamed", f"succeeded without {missing}")
        rejected = json.loads((out / "rejected.json").read_text())
        for r in rejected:
            if not _named(str(r.get("reason", "")) + " " + str(r.get("record_id", "")), names):
                return Outcome("unnamed", f"rejection naming nothing: {r}")
        if any(UNEXPECTED in str(r.get("reason")) for r in rejected):
            return Outcome("fallback", next(r["reason"] for r in rejected if UNEXPECTED in str(r.get("reason"))))
        return Outcome("rejected", rejected[0]["reason"]) if rejected else Outcome("ok")


def check_cinc(case: fi.Case) -> Outcome:
    # a rejection names its record by id (rejected.json pairs record_id and reason), the stage the zip
    return _stage(case, "cinc2017", _CINC, (*case.names, "training2017.zip", "A00001", "A00002", fi.FUZZ_RECORD))


def check_custom(case: fi.Case) -> Outcome:
    return _stage(case, CUSTOM, {CUSTOM: {"parquet": case.settings}}, case.names)


def check_bonn(case: fi.Case) -> Outcome:
    from trls_core.datasets.epilepsy.source import read_bonn_zip
    from trls_core.errors import TrlsError

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "Z.zip"
        path.write_bytes(case.files["Z.zip"])
        try:
            read_bonn_zip(path, "Z", expected_samples=fi.BONN_SAMPLES)
        except TrlsError as exc:
            return Outcome("named", str(exc)) if _named(str(exc), [str(path)]) else Outcome("unnamed", str(exc))
        except Exception as exc:
            return Outcome("unnamed", _raw(exc))
    return Outcome("ok")


def _nested(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    node = out
    for k in path[:-1]:
        node = node.setdefault(k, {})
    node[path[-1]] = value
    return out


def check_params_value(case: fi.Case) -> Outcome:
    from trls_core.errors import TrlsError

    path, value = tuple(case.settings["key"]), case.settings["value"]
    key, parent, leaf = ".".join(path), ".".join(path[:-1]), path[-1]
    try:
        _params(_nested(path, value))
    except TrlsError as exc:
        msg = str(exc)
        # a field names its dotted key; a check across fields of one section names the section and the field
        ok = key in msg or (parent and parent in msg and leaf in msg)
        return Outcome("named", msg) if ok else Outcome("unnamed", f"{key}={value!r}: {msg}")
    except Exception as exc:
        return Outcome("unnamed", f"{key}={value!r}: {_raw(exc)}")
    return Outcome("ok")


def check_params_file(case: fi.Case) -> Outcome:
    from trls_core.config import load_params
    from trls_core.errors import TrlsError

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "params.yaml"
        path.write_bytes(case.files["params.yaml"])
        try:
            load_params(path)
        except TrlsError as exc:
            return Outcome("named", str(exc)) if _named(str(exc), [str(path)]) else Outcome("unnamed", str(exc))
        except Exception as exc:
            return Outcome("unnamed", _raw(exc))
    return Outcome("ok")


def check_cli(case: fi.Case) -> Outcome:
    from typer.testing import CliRunner

    from trls_core.cli import app

    args = list(case.settings["args"])
    with tempfile.TemporaryDirectory() as tmp:
        if args[0] in ("params", "pretrain", "evaluate") or args[:2] == ["data", "describe"]:
            args += ["--params", str(PARAMS)]
        if case.settings.get("root") or args[:2] == ["data", "describe"]:
            args += ["--root", tmp]
        result = CliRunner().invoke(app, args, catch_exceptions=True)
        text = result.output + (getattr(result, "stderr", "") if _has_stderr(result) else "")
        if result.exit_code == 0:
            return Outcome("ok")
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            return Outcome("unnamed", f"{args}: {_raw(result.exception)}")
        if result.exit_code != 2:
            return Outcome("unnamed", f"{args}: exit {result.exit_code}: {text[-300:]}")
        return Outcome("named", text) if _named(text, [*case.names, tmp]) else Outcome("unnamed", f"{args}: {text}")


def _has_stderr(result: Any) -> bool:
    try:
        return isinstance(result.stderr, str) and result.stderr not in result.output
    except ValueError:  # click < 8.2 without a separate stderr
        return False


def _raw(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
    return f"{type(exc).__name__}{where}: {str(exc)[:300]}"


# ----------------------------------------------------------------- the runner
def readers() -> dict[str, tuple[Callable[[], st.SearchStrategy[fi.Case]], Callable[[fi.Case], Outcome]]]:
    """Reader name -> (its strategy, built lazily; its check)."""
    return {
        "wfdb_header": (fi.wfdb_header, check_cinc),
        "wfdb_mat": (fi.wfdb_mat, check_cinc),
        "cinc_zip": (fi.cinc_archive, check_cinc),
        "bonn_zip": (fi.bonn_zip, check_bonn),
        "custom_csv": (fi.custom_csv, check_custom),
        "custom_ucr": (fi.custom_ucr, check_custom),
        "custom_npz": (fi.custom_npz, check_custom),
        "custom_parquet": (fi.custom_parquet, check_custom),
        "params_values": (lambda: fi.params_value(param_leaves()), check_params_value),
        "params_file": (fi.yaml_text, check_params_file),
        "cli_values": (lambda: fi.cli_call(dotted_leaves()), check_cli),
    }


def fuzz_reader(name: str, examples: int, seed: int | None = 0) -> dict[str, Any]:
    """Run ``examples`` generated inputs through one reader; counts and the first unnamed examples.

    ``seed`` None derandomizes (the same inputs every run, what the test suite wants).
    """
    make, check = readers()[name]
    seen: set[str] = set()
    counts: dict[str, Any] = {"tried": 0, "distinct": 0, "ok": 0, "rejected": 0, "named": 0, "fallback": 0}
    counts["unnamed"] = []
    fallbacks: list[str] = []

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=seed is None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(make())
    def one(case: fi.Case) -> None:
        counts["tried"] += 1
        digest = case.digest(name)
        if digest in seen:
            return
        seen.add(digest)
        outcome = check(case)
        if outcome.kind == "unnamed":
            if len(counts["unnamed"]) < UNNAMED_KEEP:
                counts["unnamed"].append(outcome.detail[:500])
            counts["n_unnamed"] = counts.get("n_unnamed", 0) + 1
        else:
            counts[outcome.kind] += 1
            if outcome.kind == "fallback" and len(fallbacks) < UNNAMED_KEEP:
                fallbacks.append(outcome.detail[:300])

    t0 = time.perf_counter()
    quiet = logging.getLogger()
    handler = logging.NullHandler()  # the CLI's logging.basicConfig must not bind a runner's captured stream
    quiet.addHandler(handler)
    level = logging.getLogger("trls_core").level
    logging.getLogger("trls_core").setLevel(logging.ERROR)  # one warning per rejected record is noise here
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            (hypothesis_seed(seed)(one) if seed is not None else one)()
    finally:
        quiet.removeHandler(handler)
        logging.getLogger("trls_core").setLevel(level)
    counts["distinct"] = len(seen)
    counts["n_unnamed"] = counts.get("n_unnamed", 0)
    counts["fallback_examples"] = fallbacks
    counts["seconds"] = round(time.perf_counter() - t0, 2)
    return counts


def run_fuzz(examples: int = 60, names: Iterable[str] | None = None, seed: int | None = 0) -> dict[str, dict[str, Any]]:
    """``{reader: counts}`` for every reader (or ``names``), ``examples`` inputs each."""
    return {name: fuzz_reader(name, examples, seed) for name in (names or readers())}


def totals(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Sums over readers: what ``bench/results/faults.json`` reports as bad_inputs_tried / unnamed_errors."""
    keys = ("tried", "distinct", "ok", "rejected", "named", "fallback", "n_unnamed", "seconds")
    return {k: round(sum(r[k] for r in results.values()), 2) for k in keys}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=60, help="generated inputs per reader")
    parser.add_argument("--reader", action="append", choices=sorted(readers()), help="only this reader (repeatable)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    results = run_fuzz(args.examples, args.reader, args.seed)
    for name, r in results.items():
        print(
            f"{name:15s} tried {r['tried']:4d} distinct {r['distinct']:4d} ok {r['ok']:4d} "
            f"rejected {r['rejected']:4d} named {r['named']:4d} "
            f"fallback {r['fallback']:3d} unnamed {r['n_unnamed']:3d}  {r['seconds']:6.1f}s"
        )
        for example in r["unnamed"]:
            print(f"    unnamed: {example}")
    total = totals(results)
    print(json.dumps(total))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"totals": total, "readers": results}, indent=2, default=str) + "\n")
    return 0 if total["n_unnamed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
