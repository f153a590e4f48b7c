"""Mutation testing of the method's core (issue 19, item 6): a small AST mutation driver.

Why not mutmut 3: it instruments every function of the mutated packages with
trampolines, first runs the whole suite to map tests to functions (minutes
of torch-heavy tests on 2 shared cores) and copies the tree into
``mutants/``; here each core module is mapped by hand to the few fast unit
tests that cover it, and each mutant runs only those.

How it works:

- the working tree's tracked and untracked (not ignored) files under
  ``trls_core/``, ``tests/`` and ``flows/`` plus ``pyproject.toml`` and
  ``params.yaml`` are copied to a temp folder (the repository is never
  written);
- for each target (a module, optionally only some of its functions) every
  mutation site is listed: comparison swaps (``<``/``<=``, ``>``/``>=``,
  ``==``/``!=``, ``in``/``not in``, ``is``/``is not``), arithmetic swaps
  (``+``/``-``, ``*``/``/``, ``//``/``/``, ``%``, ``**``), ``and``/``or``,
  a dropped unary ``-``/``not``, number constants ``n -> n + 1`` (and
  ``1 -> 0``), ``True``/``False``, ``min``/``max``, ``return X -> return
  None``, and a removed call statement. Docstrings, annotations,
  decorators, ``raise`` statements (their messages) and logging calls are
  not mutated;
- one mutant at a time is written into the copy (``ast.unparse``; the
  baseline is the unparsed, unmutated module, which must pass), and the
  target's tests run in a forked child of a process that has already
  imported the heavy libraries (torch, numpy, scikit-learn...), so a mutant
  costs its tests, not an interpreter start. A mutant is killed when the
  tests fail (or time out: ``3 x baseline + 10 s``), it survives when
  they pass.

Survivors are listed in the result with the reason each is accepted, from
``bench/mutation_accepted.json`` (key ``module::function::source
line::mutation``); one without a reason says so.

    .venv/bin/python bench/mutation.py            # all targets -> bench/results/mutation.json
    .venv/bin/python bench/mutation.py --only trls_core/metrics.py --list   # the mutants, not run
"""

from __future__ import annotations

import argparse
import ast
import copy
import gc
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "bench" / "results" / "mutation.json"
ACCEPTED = ROOT / "bench" / "mutation_accepted.json"
COPIED = ("trls_core", "tests", "flows", "pyproject.toml", "params.yaml")


@dataclass(frozen=True)
class Target:
    """A module to mutate, the functions in it (None: every function) and the tests that must catch it."""

    module: str
    tests: tuple[str, ...]
    functions: tuple[str, ...] | None = None


# The method's core, each mapped to the fast unit tests that cover it.
TARGETS: tuple[Target, ...] = (
    Target("trls_core/ssl/byol.py", ("tests/unit/test_byol.py",)),
    Target("trls_core/train.py", ("tests/unit/test_train.py::test_lr_schedule",), functions=("lr_at",)),
    Target(
        "trls_core/spectrogram.py",
        ("tests/unit/test_spectrogram.py",),
        functions=(
            "spectrogram_shape",
            "_logmag_rows",
            "stft_logmag",
            "fit_normaliser",
            "apply_normaliser",
            "SpectrogramTransform.forward",
        ),
    ),
    Target("trls_core/data/windows.py", ("tests/unit/test_windows.py",)),
    Target(
        "trls_core/protocol.py",
        ("tests/unit/test_protocol_plan.py",),
        functions=("Unit.name", "Unit.slug", "plan_units", "aggregate_units", "_aggregate"),
    ),
    Target("trls_core/metrics.py", ("tests/unit/test_metrics.py",)),
    Target("trls_core/pooling.py", ("tests/unit/test_pooling.py",)),
    Target(
        "trls_core/tracking/promotion.py",
        ("tests/unit/test_promotion_rule.py",),
        functions=("_compare_and_set", "_parse_float"),
    ),
)

# --- mutation sites -----------------------------------------------------------------

BINOP_SWAP: dict[type, type] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div,
    ast.Mod: ast.FloorDiv,
    ast.Pow: ast.Mult,
    ast.BitAnd: ast.BitOr,
    ast.BitOr: ast.BitAnd,
}
CMP_SWAP: dict[type, type] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
SKIP_FIELDS = {"decorator_list", "annotation", "returns", "type_comment", "type_params"}
NOT_MUTATED_CALLS = {"logger", "logging", "warnings"}

Path_ = tuple[tuple[str, int | None], ...]  # (field, index) steps from the module


@dataclass
class Mutant:
    module: str
    function: str
    line: int
    code: str  # the source line, stripped: with the mutation, what a reviewed survivor is known by
    mutation: str
    path: Path_
    make: Callable[[ast.AST], ast.AST] = field(repr=False)
    status: str = ""


def _short(node: ast.AST) -> str:
    text = ast.unparse(node).replace("\n", " ")
    return text if len(text) <= 90 else text[:87] + "..."


def _is_docstring(stmt: ast.AST, parent: ast.AST, index: int | None) -> bool:
    return (
        index == 0
        and isinstance(parent, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        and isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


def _call_root(call: ast.Call) -> str:
    f = call.func
    while isinstance(f, ast.Attribute):
        f = f.value
    return f.id if isinstance(f, ast.Name) else ""


def _variants(node: ast.AST) -> list[tuple[str, Callable[[ast.AST], ast.AST]]]:
    """The mutations of one node: (description, node -> replacement)."""
    out: list[tuple[str, Callable[[ast.AST], ast.AST]]] = []

    def swap_op(new_op: type) -> Callable[[ast.AST], ast.AST]:
        def make(n: ast.AST) -> ast.AST:
            m = copy.deepcopy(n)
            m.op = new_op()
            return m

        return make

    if isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in BINOP_SWAP:
        new = BINOP_SWAP[type(node.op)]
        m = swap_op(new)(node)
        out.append((f"{_short(node)} -> {_short(m)}", swap_op(new)))
    elif isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            if type(op) in CMP_SWAP:

                def make(n: ast.AST, i: int = i, new: type = CMP_SWAP[type(op)]) -> ast.AST:
                    m = copy.deepcopy(n)
                    m.ops[i] = new()
                    return m

                out.append((f"{_short(node)} -> {_short(make(node))}", make))
    elif isinstance(node, ast.BoolOp):
        new = ast.Or if isinstance(node.op, ast.And) else ast.And
        out.append((f"{_short(node)} -> {_short(swap_op(new)(node))}", swap_op(new)))
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Not)):
        out.append((f"{_short(node)} -> {_short(node.operand)}", lambda n: copy.deepcopy(n.operand)))
    elif isinstance(node, ast.Constant) and not isinstance(node.value, str):
        v = node.value
        if isinstance(v, bool):
            out.append((f"{v} -> {not v}", lambda n: ast.Constant(not n.value)))
        elif isinstance(v, (int, float)) and not isinstance(v, complex):
            out.append((f"{v!r} -> {v + 1!r}", lambda n: ast.Constant(n.value + 1)))
            if v == 1:
                out.append((f"{v!r} -> {type(v)(0)!r}", lambda n: ast.Constant(type(n.value)(0))))
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("min", "max"):
        other = "max" if node.func.id == "min" else "min"

        def make_minmax(n: ast.AST, other: str = other) -> ast.AST:
            m = copy.deepcopy(n)
            m.func = ast.Name(other, ast.Load())
            return m

        out.append((f"{_short(node)} -> {_short(make_minmax(node))}", make_minmax))
    elif isinstance(node, ast.Return) and node.value is not None:
        if not (isinstance(node.value, ast.Constant) and node.value.value is None):
            out.append((f"{_short(node)} -> return None", lambda n: ast.Return(ast.Constant(None))))
    elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        if _call_root(node.value) not in NOT_MUTATED_CALLS:
            out.append((f"removed {_short(node)}", lambda n: ast.Expr(ast.Constant(None))))
    return out


def _walk(node: ast.AST, path: Path_, function: str, sites: list[tuple[Path_, str, ast.AST]]) -> None:
    for name, value in ast.iter_fields(node):
        if name in SKIP_FIELDS:
            continue
        items = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
        for index, child in items:
            if not isinstance(child, ast.AST) or _is_docstring(child, node, index):
                continue
            if isinstance(child, (ast.Raise, ast.JoinedStr)):
                continue  # error messages: not behaviour the method computes
            if isinstance(child, ast.Call) and _call_root(child) in NOT_MUTATED_CALLS:
                continue
            if isinstance(child, ast.Expr) and isinstance(child.value, ast.Call):
                if _call_root(child.value) in NOT_MUTATED_CALLS:
                    continue
            step = path + ((name, index),)
            sites.append((step, function, child))
            _walk(child, step, function, sites)


def _functions(tree: ast.Module) -> list[tuple[str, ast.AST, Path_]]:
    out: list[tuple[str, ast.AST, Path_]] = []
    for i, node in enumerate(tree.body):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.append((node.name, node, (("body", i),)))
        elif isinstance(node, ast.ClassDef):
            for j, sub in enumerate(node.body):
                if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    out.append((f"{node.name}.{sub.name}", sub, (("body", i), ("body", j))))
    return out


def list_mutants(target: Target, source: str) -> list[Mutant]:
    tree = ast.parse(source)
    lines = source.splitlines()
    found = {name for name, _, _ in _functions(tree)}
    missing = set(target.functions or ()) - found
    if missing:
        raise SystemExit(f"{target.module}: no function(s) {sorted(missing)} (renamed? update TARGETS)")
    mutants: list[Mutant] = []
    for name, fn, path in _functions(tree):
        if target.functions is not None and name not in target.functions:
            continue
        sites: list[tuple[Path_, str, ast.AST]] = []
        for index, stmt in enumerate(fn.body):
            if _is_docstring(stmt, fn, index):
                continue
            step = path + (("body", index),)
            sites.append((step, name, stmt))
            _walk(stmt, step, name, sites)
        for step, function, node in sites:
            for mutation, make in _variants(node):
                line = getattr(node, "lineno", 0)
                code = lines[line - 1].strip() if 0 < line <= len(lines) else ""
                mutants.append(Mutant(target.module, function, line, code, mutation, step, make))
    return mutants


def apply(source: str, mutant: Mutant) -> str:
    tree = ast.parse(source)
    parent: ast.AST = tree
    for name, index in mutant.path[:-1]:
        value = getattr(parent, name)
        parent = value[index] if index is not None else value
    name, index = mutant.path[-1]
    old = getattr(parent, name)[index] if index is not None else getattr(parent, name)
    new = ast.copy_location(mutant.make(old), old)
    if index is not None:
        getattr(parent, name)[index] = new
    else:
        setattr(parent, name, new)
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n"


# --- running ------------------------------------------------------------------------


def copy_tree(dest: Path) -> None:
    """The working tree's tracked + untracked (not ignored) files under COPIED, no bytecode."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "--", *COPIED],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\n")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def _purge_project_modules() -> None:
    for name in list(sys.modules):
        if name.split(".")[0] in ("trls_core", "tests", "flows"):
            del sys.modules[name]
    importlib.invalidate_caches()


def preload(workdir: Path, targets: list[Target]) -> None:
    """Import the heavy libraries once (pytest's plugins, the project's imports), then forget the project's modules.

    ``gc.freeze`` then keeps the preloaded heap out of the children's garbage
    collections (pytest collects at exit: seconds on a torch-sized heap).
    """
    import importlib.metadata

    import pytest  # noqa: F401

    for entry in importlib.metadata.entry_points(group="pytest11"):
        entry.load()

    sys.path.insert(0, str(workdir))
    os.chdir(workdir)
    for target in targets:
        importlib.import_module(target.module.removesuffix(".py").replace("/", "."))
        for test in target.tests:
            module = test.split("::")[0].removesuffix(".py").replace("/", ".")
            if (workdir / test.split("::")[0]).exists():
                importlib.import_module(module)
    _purge_project_modules()
    gc.collect()
    gc.freeze()


def write_module(path: Path, text: str) -> None:
    """Write a module's source and drop its bytecode (a same-size mutant in the same second would reuse it)."""
    path.write_text(text)
    for pyc in (path.parent / "__pycache__").glob(f"{path.stem}.*.pyc"):
        pyc.unlink(missing_ok=True)


def call_tests(tests: tuple[str, ...]) -> int:
    """Run the test functions of ``tests`` (``path`` or ``path::name``) in this process; 0 if all pass.

    A plain runner for plain unit tests: it honours ``parametrize``, ``skipif``
    and ``slow`` marks and the ``tmp_path`` fixture, stops at the first
    failure (as ``-x``) and costs no pytest start-up (most of a mutant's
    time on a busy machine). Another fixture is an error: use ``--runner pytest``.
    """
    import itertools

    for spec in tests:
        path, _, only = spec.partition("::")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        for name, func in list(vars(module).items()):
            if not name.startswith("test_") or not callable(func) or (only and name != only):
                continue
            marks = getattr(func, "pytestmark", [])
            if any(m.name == "slow" for m in marks) or any(m.name == "skipif" and m.args[0] for m in marks):
                continue
            grids = []
            for m in marks:
                if m.name == "parametrize":
                    names, values = m.args[0], m.args[1]
                    names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
                    grids.append([dict(zip(names, v if len(names) > 1 else (v,))) for v in values])
            for combo in itertools.product(*grids) if grids else [()]:
                kwargs = {k: v for part in combo for k, v in part.items()}
                params = func.__code__.co_varnames[: func.__code__.co_argcount]
                for param in params:
                    if param == "tmp_path":
                        kwargs[param] = Path(tempfile.mkdtemp(prefix="mut-"))
                    elif param not in kwargs:
                        raise RuntimeError(f"{spec}: {name} needs fixture {param!r}: use --runner pytest")
                func(**kwargs)
    return 0


def run_tests(workdir: Path, tests: tuple[str, ...], timeout: float, runner: str = "plain") -> tuple[str, float]:
    """Run ``tests`` in ``workdir`` in a forked child; ('pass' | 'fail' | 'timeout', seconds)."""
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:  # child
        rc = 99
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            os.setpgid(0, 0)
            os.chdir(workdir)
            sys.path[0] = str(workdir)
            _purge_project_modules()
            if runner == "plain":
                importlib.import_module("tests.conftest")  # its environment settings, as under pytest
                rc = call_tests(tests)
            else:
                import pytest

                quiet = ["-W", "ignore::pytest.PytestAssertRewriteWarning"]  # the plugins were preloaded
                rc = int(pytest.main([*tests, "-x", "-q", "-p", "no:cacheprovider", "-m", "not slow", *quiet]))
        except BaseException:  # a failing test (or a broken import): the mutant is killed
            rc = 1
        finally:
            os._exit(rc)
    deadline = t0 + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            return ("pass" if code == 0 else "fail"), time.monotonic() - t0
        if time.monotonic() > deadline:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "timeout", time.monotonic() - t0
        time.sleep(0.05)


def run_target(workdir: Path, target: Target, original: str, mutants: list[Mutant], tag: str, runner: str) -> list[str]:
    """Baseline, then each of ``mutants`` (a share of the target's) in ``workdir``; their statuses."""
    path = workdir / target.module
    write_module(path, ast.unparse(ast.parse(original)) + "\n")
    status, base_s = run_tests(workdir, target.tests, 600, runner)
    if status != "pass":
        raise SystemExit(f"baseline failed for {target.module}: {target.tests} ({status})")
    timeout = 3 * base_s + 10
    print(f"{tag} {target.module}: {len(mutants)} mutants, tests {base_s:.1f} s", flush=True)
    out = []
    for m in mutants:
        write_module(path, apply(original, m))
        status, _ = run_tests(workdir, target.tests, timeout, runner)
        out.append({"pass": "survived", "fail": "killed", "timeout": "timeout"}[status])
        if status == "pass":
            print(f"{tag}   SURVIVED line {m.line} {m.function}: {m.mutation}  [{m.code}]", flush=True)
    write_module(path, original)
    return out


def run_all(
    plan: list[tuple[Target, list[Mutant]]], sources: dict[str, str], workdirs: list[Path], runner: str
) -> None:
    """Share every target's mutants round-robin over one forked worker per workdir; sets ``status``."""
    jobs = len(workdirs)
    pids: dict[int, Path] = {}
    for w, workdir in enumerate(workdirs):
        out = workdir.parent / f"statuses-{w}.json"
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                statuses = {}
                for t, ms in plan:
                    statuses[t.module] = run_target(workdir, t, sources[t.module], ms[w::jobs], f"[w{w}]", runner)
                out.write_text(json.dumps(statuses))
                code = 0
            finally:
                os._exit(code)
        pids[pid] = out
    failed = False
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        failed |= os.waitstatus_to_exitcode(status) != 0
    if failed:
        raise SystemExit("a mutation worker failed (see above)")
    for w, out in enumerate(pids.values()):
        statuses = json.loads(out.read_text())
        for t, ms in plan:
            for m, s in zip(ms[w::jobs], statuses[t.module]):
                m.status = s


def load_accepted() -> dict[str, str]:
    return json.loads(ACCEPTED.read_text()) if ACCEPTED.exists() else {}


def survivor_key(m: Mutant) -> str:
    """``module::function::source line::mutation`` (no line number: other edits move lines)."""
    return f"{m.module}::{m.function}::{m.code}::{m.mutation}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", action="append", help="a target module (repeatable); default: all")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--out", type=Path, default=RESULT)
    ap.add_argument(
        "--runner", choices=("plain", "pytest"), default="plain", help="how a mutant's tests run (default plain)"
    )
    ap.add_argument("--jobs", type=int, default=2, help="worker processes, each with its own copy (default 2)")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    targets = [t for t in TARGETS if not args.only or t.module in args.only]
    t_start = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="trls-mutation-"))
    workdirs = [work / f"w{w}" for w in range(max(1, args.jobs))]
    try:
        for workdir in workdirs:
            workdir.mkdir()
            copy_tree(workdir)
        sources = {t.module: (workdirs[0] / t.module).read_text() for t in targets}
        plan = [(t, list_mutants(t, sources[t.module])) for t in targets]
        if args.list:
            for t, mutants in plan:
                print(f"{t.module}: {len(mutants)} mutants")
                for m in mutants:
                    print(f"  {m.line:4d} {m.function}: {m.mutation}")
            return 0
        import torch

        torch.set_num_threads(1)
        preload(workdirs[0], targets)
        accepted = load_accepted()
        run_all(plan, sources, workdirs, args.runner)
        per_module: dict[str, dict[str, object]] = {}
        all_mutants: list[Mutant] = []
        for target, mutants in plan:
            killed = sum(m.status != "survived" for m in mutants)
            per_module[target.module] = {
                "functions": list(target.functions) if target.functions else "all",
                "tests": list(target.tests),
                "mutants": len(mutants),
                "killed": killed,
                "score": round(killed / len(mutants), 4) if mutants else None,
            }
            print(f"{target.module}: {killed}/{len(mutants)} killed", flush=True)
            all_mutants += mutants
        n = len(all_mutants)
        k = sum(m.status != "survived" for m in all_mutants)
        result = {
            "tool": "bench/mutation.py (AST mutants; each mutant's mapped unit tests in a forked, preloaded child)",
            "jobs": len(workdirs),
            "runner": args.runner,
            "modules": [t.module + ("" if t.functions is None else f"::{','.join(t.functions)}") for t in targets],
            "mutants": n,
            "killed": k,
            "score": round(k / n, 4) if n else None,
            "timeouts": sum(m.status == "timeout" for m in all_mutants),
            "wall_s": round(time.monotonic() - t_start, 1),
            "per_module": per_module,
            "survivors": [
                {
                    "module": m.module,
                    "function": m.function,
                    "line": m.line,
                    "code": m.code,
                    "mutation": m.mutation,
                    "why": accepted.get(survivor_key(m), "not reviewed"),
                }
                for m in all_mutants
                if m.status == "survived"
            ],
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"score {k}/{n} = {result['score']} in {result['wall_s']} s -> {args.out}")
        return 0
    finally:
        os.chdir(ROOT)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
