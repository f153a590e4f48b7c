"""Faults injected into real ``trls`` processes on tiny data in temp roots, each followed by a rerun.

Issue 19's fault cases besides the fuzzing (``fuzz.py``) and the concurrent
promotions (``promotions.py``): ``kill -9`` at many points of every step
(each data stage, pretraining, evaluation units, registration), a disk that
fills up (a small tmpfs), an MLflow sqlite store held locked by another
process for longer than its timeout, and two runs started on one root.

Every case starts from a copy of a finished state of a tiny project (built
once per suite, ``Suite``): the three epilepsy data stages on a Bonn-shaped
mirror (100 segments a set, 11,500 windows: each stage takes seconds), and
the integration tests' tiny project (``tests.conftest.make_tiny_project``,
``shrink_params``) for pretraining (2 seeds), evaluation and registration.
Per case:

1. ``prior``: the sha256 of every file in the root before the faulty run
   (MLflow's store, locks and the suite's own files aside: they change by design);
2. the faulty run: a real process (``bin/trls-stage``, ``trls``, or
   ``driver.py`` for the flows' tracked tasks and registration), killed with
   SIGKILL when its trigger fires (a delay, a file appearing, the n-th
   rewrite of a file); outputs the killed run finished (a finished seed's
   encoder, a unit result) join ``prior``;
3. the rerun (the same command, no fault): ``recovered`` when it exits 0 and
   the step's check passes (data stages: every output file byte-identical
   to the clean run's; pretraining: each seed's encoder loads with its
   weights digest checked and the last checkpoint holds every epoch;
   evaluation: every unit result and the report; registration: the champion
   is the encoder the units scored);
4. ``lost``: the files of ``prior`` changed or missing after the rerun;
   ``litter``: temp files or moved-aside outputs left after the rerun.

A trigger that never fires (the process finished first) is recorded with
``injected: false`` and not counted as a fault.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[2]
PY = Path(sys.executable)
TRLS = PY.with_name("trls")
STAGE = ROOT / "bin" / "trls-stage"
DRIVER = Path(__file__).resolve().with_name("driver.py")
DS = "epilepsy"
SEEDS = (0, 1)
EPOCHS = 3
EVAL_SEEDS = [0]  # 5 evaluation units
# not outputs: MLflow's store and artifacts, locks, the suite's own run-id file (they change by design)
VOLATILE = ("mlflow.db*", "mlartifacts/*", ".trls/*", ".faults-parent-run", "*.log")
LITTER_NAME = re.compile(r"\..*(\.tmp|\.old\.\d+)")
POLL_S = 0.005


# ----------------------------------------------------------------------------- files
def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files(root: Path) -> Iterator[tuple[str, Path]]:
    for dirpath, _, names in os.walk(root):
        for name in names:
            p = Path(dirpath) / name
            yield p.relative_to(root).as_posix(), p


def snapshot(root: Path, under: str = "") -> dict[str, str]:
    """``{relative path: sha256}`` of the outputs in ``root`` (or its folder ``under``).

    Volatile files (:data:`VOLATILE`) and litter (temp files, moved-aside outputs) are left out.
    """
    base = root / under if under else root
    if not base.exists():
        return {}
    out = {}
    for rel, p in _files(base):
        rel = f"{under}/{rel}" if under else rel
        if any(_is_litter(part) for part in rel.split("/")) or any(fnmatch.fnmatch(rel, g) for g in VOLATILE):
            continue
        with contextlib.suppress(FileNotFoundError):
            out[rel] = sha256(p)
    return out


def digest(files: dict[str, str]) -> str:
    """One sha256 over a snapshot (sorted ``path sha`` lines)."""
    return hashlib.sha256("".join(f"{k} {v}\n" for k, v in sorted(files.items())).encode()).hexdigest()


def _is_litter(name: str) -> bool:
    return LITTER_NAME.fullmatch(name) is not None


def litter(root: Path) -> list[str]:
    """Temp files/folders and moved-aside outputs (``.<name>...tmp``, ``.<name>.old.<pid>``) in ``root``."""
    found = []
    for dirpath, dirs, names in os.walk(root):
        found += [(Path(dirpath) / n).relative_to(root).as_posix() for n in [*dirs, *names] if _is_litter(n)]
        dirs[:] = [d for d in dirs if not _is_litter(d)]
    return sorted(found)


def copy_root(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, symlinks=True)
    return dest


# ----------------------------------------------------------------------------- triggers
@dataclass
class Trigger:
    """When to kill: ``delay`` seconds after the start, or once ``glob`` (in the root) matches
    ``count`` files, or once the file ``path`` has been (re)written ``count`` times; then ``after`` seconds more."""

    describe: str
    delay: float | None = None
    glob: str | None = None
    path: str | None = None
    sql: tuple[str, str] | None = None  # (sqlite file in the root, a query returning one count)
    count: int = 1
    after: float = 0.0

    def fired(self, root: Path, started: float, state: dict[str, Any]) -> bool:
        now = time.perf_counter()
        if "at" in state:
            return now >= state["at"]
        hit = False
        if self.delay is not None:
            hit = now - started >= self.delay
        elif self.glob is not None:
            hit = len(list(root.glob(self.glob))) >= self.count
        elif self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                st = (root / self.path).stat()
                key = (st.st_ino, st.st_mtime_ns)
                if key != state.get("last"):
                    state["last"] = key
                    state["writes"] = state.get("writes", 0) + 1
            hit = state.get("writes", 0) >= self.count
        elif self.sql is not None:
            hit = _count(root / self.sql[0], self.sql[1]) >= self.count
        if hit:
            state["at"] = now + self.after
            return self.after <= 0
        return False


def _count(db: Path, query: str) -> int:
    """``query``'s count on the sqlite file ``db``, read-only and without waiting (0 while it is missing or busy)."""
    if not db.is_file():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0)
        try:
            return int(con.execute(query).fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def on_sql(db: str, query: str, what: str) -> Trigger:
    return Trigger(what, sql=(db, query))


def delay(seconds: float) -> Trigger:
    return Trigger(f"{seconds:.2f} s after the start", delay=seconds)


def on_glob(glob: str, count: int = 1, after: float = 0.0) -> Trigger:
    more = f" + {after:.2f} s" if after else ""
    return Trigger(f"{count} x {glob} present{more}", glob=glob, count=count, after=after)


def on_write(path: str, count: int = 1, after: float = 0.0) -> Trigger:
    more = f" + {after:.2f} s" if after else ""
    return Trigger(f"{path} written {count} time(s){more}", path=path, count=count, after=after)


# ----------------------------------------------------------------------------- processes
def env_for(workdir: Path, mirror: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    env.update(
        DO_NOT_TRACK="true",
        MLFLOW_DISABLE_TELEMETRY="true",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="90",
        DVC_NO_ANALYTICS="1",
        PREFECT_HOME=str(workdir / "prefect"),
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        TQDM_DISABLE="1",
    )
    if mirror is not None:
        env["TRLS_DATA_MIRROR"] = str(mirror)
    return env


@dataclass
class Ran:
    rc: int | None
    seconds: float
    killed: bool = False
    killed_at: float | None = None
    output: str = ""


def run(argv: list[str], root: Path, env: dict[str, str], trigger: Trigger | None = None, timeout: float = 600) -> Ran:
    """Run ``argv`` in ``root``; SIGKILL it when ``trigger`` fires (its own process group's leftovers too)."""
    log = root.parent / f"{root.name}.{time.monotonic_ns()}.log"
    with open(log, "w+b") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        killed_at, state = None, {}
        try:
            while proc.poll() is None:
                if trigger is not None and killed_at is None and trigger.fired(root, t0, state):
                    os.kill(proc.pid, signal.SIGKILL)
                    killed_at = time.perf_counter() - t0
                if time.perf_counter() - t0 > timeout:
                    os.kill(proc.pid, signal.SIGKILL)
                time.sleep(POLL_S)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # children the killed process left (none expected)
            proc.wait()
        seconds = time.perf_counter() - t0
        out.seek(0)
        text = out.read().decode(errors="replace")
    log.unlink()
    return Ran(proc.returncode, seconds, killed_at is not None, killed_at, text)


def tail(text: str, n: int = 600) -> str:
    return text[-n:].strip()


# ----------------------------------------------------------------------------- tiny data
def bonn_mirror(dest: Path, segments: int = 100, samples: int = 4097) -> Path:
    """A Bonn-shaped mirror (``bonn-eeg/{Z,O,N,F,S}.zip``, the real layout, random integers); returns ``dest``."""
    folder = dest / "bonn-eeg"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k, letter in enumerate("ZONFS"):
        ext = ".TXT" if letter == "N" else ".txt"
        with zipfile.ZipFile(folder / f"{letter}.zip", "w", zipfile.ZIP_DEFLATED) as zf:
            for i in range(1, segments + 1):
                vals = np.round(rng.normal(10 * k, 400 if letter == "S" else 60, samples)).astype(int)
                zf.writestr(f"{letter}{i:03d}{ext}", "\r\n".join(map(str, vals)) + "\r\n")
    return dest


def tiny_params(dest: Path) -> Path:
    """The integration tests' shrunken params.yaml: 2 pretraining seeds of :data:`EPOCHS` epochs, :data:`EVAL_SEEDS`."""
    sys.path.insert(0, str(ROOT))
    from tests.conftest import shrink_params

    raw = shrink_params(yaml.safe_load((ROOT / "params.yaml").read_text()))
    raw["pretrain"].update({"seeds": list(SEEDS), "epochs": EPOCHS})
    raw["evaluate"]["seeds"] = EVAL_SEEDS
    dest.write_text(yaml.safe_dump(raw, sort_keys=False))
    return dest


# ----------------------------------------------------------------------------- steps
def model_rel(seed: int) -> str:
    return f"models/{DS}/tfrnn_seed{seed}"


@dataclass
class Step:
    name: str
    argv: Callable[[Path, Path], list[str]]
    check: Callable[[Path, Suite], str | None]  # None: valid, else why not
    durable: tuple[str, ...] = ()  # globs of outputs that, once a killed run finished them, must survive the rerun


def _data_check(stage: str, folder: str) -> Callable[[Path, Suite], str | None]:
    def check(root: Path, suite: Suite) -> str | None:
        got, want = snapshot(root, folder), suite.reference[stage]
        if got == want:
            return None
        diff = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
        return f"{folder}: {len(diff)} file(s) differ from the clean run's: {diff[:4]}"

    return check


def _pretrain_check(root: Path, suite: Suite) -> str | None:
    from trls_core.checkpoint import load_checkpoint
    from trls_core.models.loading import load_encoder

    for seed in SEEDS:
        d = root / model_rel(seed)
        try:
            load_encoder(d)  # checks the weights against encoder.json's sha256
            _, meta = load_checkpoint(d / "checkpoint.safetensors")
        except Exception as exc:  # noqa: BLE001 - a check: any failure is the finding
            return f"seed {seed}: {type(exc).__name__}: {exc}"
        if meta.get("epochs_done") != EPOCHS:
            return f"seed {seed}: checkpoint has {meta.get('epochs_done')} epochs, expected {EPOCHS}"
    return None


def _units(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in (root / "reports" / DS / "units").rglob("*.json")} - {
        p.relative_to(root).as_posix() for p in (root / "reports" / DS / "units").rglob("pending_mlflow/*.json")
    }


def _evaluate_check(root: Path, suite: Suite) -> str | None:
    want = _units(suite.states["evaluated"])
    got = _units(root)
    if got != want:
        return f"units {sorted(want - got)} missing, {sorted(got - want)} unexpected"
    for rel in got:
        try:
            if "result" not in json.loads((root / rel).read_text()):
                return f"{rel}: no result"
        except (OSError, ValueError) as exc:
            return f"{rel}: {exc}"
    metrics = root / "reports" / DS / "metrics.json"
    try:
        json.loads(metrics.read_text())
    except (OSError, ValueError) as exc:
        return f"{metrics.name}: {exc}"
    return None


def _register_check(root: Path, suite: Suite) -> str | None:
    from trls_core.tracking import registered_model_name, tracking_uri
    from trls_core.tracking.store import mlflow_client

    info = json.loads((root / model_rel(SEEDS[0]) / "encoder.json").read_text())
    client = mlflow_client(tracking_uri(root))
    name = registered_model_name(DS)
    try:
        mv = client.get_model_version_by_alias(name, "champion")
    except Exception as exc:  # noqa: BLE001 - a check: any failure is the finding
        return f"no champion: {type(exc).__name__}: {str(exc)[:200]}"
    if mv.tags.get("weights_sha256") != info.get("weights_sha256"):
        return f"champion v{mv.version} has weights {mv.tags.get('weights_sha256')}, not the encoder's"
    return None


def steps(params: Path) -> dict[str, Step]:
    def stage(name: str) -> Callable[[Path, Path], list[str]]:
        return lambda root, p: [str(STAGE), name, DS, "--params", str(p), "--root", str(root)]

    def trls(cmd: str) -> Callable[[Path, Path], list[str]]:
        return lambda root, p: [str(TRLS), cmd, "--params", str(p), "--root", str(root)]

    return {
        "fetch": Step("fetch", stage("fetch"), _data_check("fetch", f"data/raw/{DS}")),
        "parquet": Step("parquet", stage("parquet"), _data_check("parquet", f"data/parquet/{DS}")),
        "spectrogram": Step("spectrogram", stage("spectrogram"), _data_check("spectrogram", f"data/spectrograms/{DS}")),
        "pretrain": Step(
            "pretrain",
            trls("pretrain"),
            _pretrain_check,
            durable=("models/*/*/encoder.safetensors", "models/*/*/encoder.json"),
        ),
        "evaluate": Step("evaluate", trls("evaluate"), _evaluate_check, durable=("reports/*/units/*/*.json",)),
        "register": Step(
            "register", lambda root, p: [str(PY), str(DRIVER), "register", str(root), str(p)], _register_check
        ),
    }


# ----------------------------------------------------------------------------- the suite
@dataclass
class Suite:
    """The finished states every case copies, built once in ``workdir``."""

    workdir: Path
    states: dict[str, Path] = field(default_factory=dict)
    reference: dict[str, dict[str, str]] = field(default_factory=dict)  # data stage -> its clean outputs
    clean_s: dict[str, float] = field(default_factory=dict)  # step -> seconds of its clean run
    n: int = 0

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.mirror = self.workdir / "mirror"
        self.params = self.workdir / "params.yaml"
        self.steps: dict[str, Step] = {}

    def env(self) -> dict[str, str]:
        return env_for(self.workdir, self.mirror)

    def fresh(self, state: str, name: str) -> Path:
        self.n += 1
        return copy_root(self.states[state], self.workdir / "cases" / f"{self.n:02d}-{name}")

    def _clean(self, step: str, root: Path) -> None:
        r = run(self.steps[step].argv(root, self.params), root, self.env())
        if r.rc != 0:
            raise RuntimeError(f"clean {step} failed (exit {r.rc}): {tail(r.output, 2000)}")
        self.clean_s[step] = round(r.seconds, 2)

    def build(self, train: bool = True) -> Suite:
        """Mirror, params, and the states: ``data`` (3 data stages done), ``spec`` (tiny project),
        ``pretrained``, ``evaluated`` (with an MLflow store and a parent run) (``train=False``: ``data`` only)."""
        bonn_mirror(self.mirror)
        tiny_params(self.params)
        self.steps = steps(self.params)
        data = self.workdir / "states" / "data"
        data.mkdir(parents=True)
        for stage, folder in (("fetch", "raw"), ("parquet", "parquet"), ("spectrogram", "spectrograms")):
            self._clean(stage, data)
            self.reference[stage] = snapshot(data, f"data/{folder}/{DS}")
        self.states["data"] = data
        if not train:
            return self
        sys.path.insert(0, str(ROOT))
        from tests.conftest import make_tiny_project

        spec = self.workdir / "states" / "spec"
        spec.mkdir(parents=True)
        make_tiny_project(spec, self.params)
        self.states["spec"] = spec
        self.states["pretrained"] = copy_root(spec, self.workdir / "states" / "pretrained")
        self._clean("pretrain", self.states["pretrained"])
        evaluated = self.states["evaluated"] = copy_root(
            self.states["pretrained"], self.workdir / "states" / "evaluated"
        )
        self._clean("evaluate", evaluated)
        r = run([str(PY), str(DRIVER), "parent-run", str(evaluated), str(self.params)], evaluated, self.env())
        if r.rc != 0:
            raise RuntimeError(f"parent run: exit {r.rc}: {tail(r.output, 2000)}")
        self._clean("register", copy_root(evaluated, self.workdir / "states" / "registered"))  # its time only
        return self

    # ------------------------------------------------------------------------- cases
    def kill_case(self, step: str, state: str, trigger: Trigger) -> dict[str, Any]:
        """SIGKILL a run of ``step`` on a copy of ``state`` when ``trigger`` fires, then rerun it."""
        t0 = time.perf_counter()
        s = self.steps[step]
        root = self.fresh(state, step)
        prior = snapshot(root)
        faulty = run(s.argv(root, self.params), root, self.env(), trigger)
        after_kill = snapshot(root)
        finished = {
            k: v for k, v in after_kill.items() if k not in prior and any(fnmatch.fnmatch(k, g) for g in s.durable)
        }
        rerun = run(s.argv(root, self.params), root, self.env())
        why = s.check(root, self) if rerun.rc == 0 else f"rerun exit {rerun.rc}: {tail(rerun.output)}"
        return self._record(
            f"kill -9 {step}",
            f"SIGKILL at {faulty.killed_at:.2f} s ({trigger.describe})"
            if faulty.killed
            else f"not killed: exited {faulty.rc} at {faulty.seconds:.2f} s before '{trigger.describe}'",
            root,
            {**prior, **finished},
            faulty,
            rerun,
            why,
            t0,
            extra={"step": step, "finished_by_killed_run": sorted(finished)},
        )

    def _record(
        self,
        name: str,
        fault: str,
        root: Path,
        prior: dict[str, str],
        faulty: Ran,
        rerun: Ran | None,
        why: str | None,
        t0: float,
        extra: dict[str, Any] | None = None,
        injected: bool | None = None,
    ) -> dict[str, Any]:
        after = snapshot(root)
        lost = sorted(k for k, v in prior.items() if after.get(k) != v)
        ok = rerun is not None and rerun.rc == 0 and why is None
        rec = {
            "name": name,
            "fault": fault,
            "injected": faulty.killed if injected is None else injected,
            "faulty_exit": faulty.rc,
            "prior_files": len(prior),
            "prior_sha256_before": digest(prior),
            "prior_sha256_after": digest({k: after[k] for k in prior if k in after}),
            "lost": lost,
            "rerun_exit": None if rerun is None else rerun.rc,
            "recovered": ok,
            "why_not": why,
            "litter_after_rerun": litter(root),
            "seconds": round(time.perf_counter() - t0, 2),
            **(extra or {}),
        }
        if not ok or lost or extra and extra.get("failed_cleanly") is False:
            rec["faulty_output_tail"] = tail(faulty.output, 1500)
        return rec


def kill_plan(suite: Suite) -> list[tuple[str, str, Trigger]]:
    """(step, state, trigger) of every kill case: several points of each step."""
    t = suite.clean_s
    plan: list[tuple[str, str, Trigger]] = []
    for stage, folder in (("fetch", "raw"), ("parquet", "parquet"), ("spectrogram", "spectrograms")):
        plan += [
            (stage, "data", delay(0.4 * t[stage])),
            (stage, "data", delay(0.6 * t[stage])),
            (stage, "data", on_glob(f"data/{folder}/.{DS}.*.tmp")),  # its temp output just made
            (stage, "data", on_glob(f"data/{folder}/.{DS}.*.tmp/*", after=0.05)),  # files being written into it
        ]
    ckpt0, ckpt1 = f"{model_rel(0)}/checkpoint.safetensors", f"{model_rel(1)}/checkpoint.safetensors"
    if "pretrain" in t:
        plan += [
            ("pretrain", "spec", delay(0.3 * t["pretrain"])),
            ("pretrain", "spec", on_write(ckpt0, 1)),  # right after the first checkpoint
            ("pretrain", "spec", on_glob(f"{model_rel(0)}/.checkpoint.safetensors.*.tmp")),  # during a checkpoint write
            ("pretrain", "spec", on_write(ckpt0, 2, after=0.3)),  # mid-epoch 3 of seed 0
            (
                "pretrain",
                "spec",
                on_glob(f"{model_rel(0)}/encoder.safetensors"),
            ),  # between the weights and encoder.json
            ("pretrain", "spec", on_write(ckpt1, 1, after=0.3)),  # seed 1 in epoch 2, seed 0 finished
        ]
    if "evaluate" in t:
        units = f"reports/{DS}/units/*/*.json"
        plan += [
            ("evaluate", "pretrained", delay(0.3 * t["evaluate"])),
            ("evaluate", "pretrained", on_glob(units, 1)),
            ("evaluate", "pretrained", on_glob(units, 3, after=0.2)),
            ("evaluate", "pretrained", on_glob(units, 5)),  # every unit done: writing the report
        ]
    if "register" in t:
        plan += [("register", "evaluated", delay(f * t["register"])) for f in (0.5, 0.7, 0.85)]
        made = on_sql("mlflow.db", "SELECT count(*) FROM model_versions", "the version created, not yet promoted")
        plan.append(("register", "evaluated", made))
    return plan


# ----------------------------------------------------------------------------- other faults
@contextlib.contextmanager
def tmpfs(folder: Path, size: int) -> Iterator[str | None]:
    """``folder`` (its files kept) on a tmpfs of ``size`` bytes; yields None, or why it could not be mounted."""
    folder.mkdir(parents=True, exist_ok=True)
    aside = folder.with_name(folder.name + ".faults-aside")
    folder.rename(aside)
    folder.mkdir()
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True, text=True
    )
    if res.returncode != 0:
        folder.rmdir()
        aside.rename(folder)
        yield f"mount -t tmpfs refused (exit {res.returncode}): {res.stderr.strip() or res.stdout.strip()}"
        return
    try:
        shutil.copytree(aside, folder, dirs_exist_ok=True)
        shutil.rmtree(aside)
        yield None
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _used(folder: Path) -> int:
    return sum(p.stat().st_size for _, p in _files(folder)) if folder.exists() else 0


def _clean_failure(r: Ran) -> tuple[bool, str]:
    """A failure is clean when it exits non-zero by itself with a message and no traceback."""
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    ok = r.rc not in (0, None) and r.rc > 0 and "Traceback" not in r.output and bool(last)
    return ok, last[:300]


def disk_full_case(suite: Suite, step: str, state: str, folder: str, slack: int) -> dict[str, Any]:
    """``folder`` on a tmpfs with ``slack`` bytes free: ``step`` must fail cleanly, keep prior outputs, and the
    rerun (the tmpfs grown to 256 MiB) recover."""
    t0 = time.perf_counter()
    s = suite.steps[step]
    root = suite.fresh(state, f"diskfull-{step}")
    prior = snapshot(root)
    target = root / folder
    size = _used(target) + slack
    name, fault = f"disk full: {step}", f"{folder}/ on a {size // 1024} KiB tmpfs ({slack // 1024} KiB free)"
    with tmpfs(target, size) as refused:
        if refused:
            return {
                "name": name,
                "fault": fault,
                "injected": False,
                "skipped": refused,
                "recovered": None,
                "lost": [],
                "seconds": round(time.perf_counter() - t0, 2),
            }
        faulty = run(s.argv(root, suite.params), root, suite.env())
        clean, message = _clean_failure(faulty)
        left = litter(root)
        subprocess.run(["mount", "-o", "remount,size=256m", str(target)], check=True)
        rerun = run(s.argv(root, suite.params), root, suite.env())
        why = s.check(root, suite) if rerun.rc == 0 else f"rerun exit {rerun.rc}: {tail(rerun.output)}"
        return suite._record(
            name,
            fault,
            root,
            prior,
            faulty,
            rerun,
            why,
            t0,
            injected=faulty.rc != 0,
            extra={"step": step, "failed_cleanly": clean, "message": message, "litter_after_failure": left},
        )


def _wait_for(cond: Callable[[], bool], timeout: float, proc: subprocess.Popen | None = None) -> bool:
    end = time.perf_counter() + timeout
    while time.perf_counter() < end:
        if cond():
            return True
        if proc is not None and proc.poll() is not None:
            return cond()
        time.sleep(0.02)
    return False


def mlflow_locked_case(suite: Suite, what: str, hold_s: float = 45.0) -> dict[str, Any]:
    """The MLflow sqlite store held by an exclusive transaction for ``hold_s`` (> MLflow's 20 s busy timeout)
    while a tracked run logs: ``pretrain`` (seed 1, locked once its first checkpoint is saved) or ``evaluate``
    (the linear-probe unit, locked from its start). The run must survive or fail clearly; the rerun recover."""
    t0 = time.perf_counter()
    root = suite.fresh("evaluated", f"mlflow-locked-{what}")
    if what == "pretrain":
        shutil.rmtree(root / model_rel(1))
        argv = [str(PY), str(DRIVER), "pretrain-tracked", str(root), str(suite.params), "1"]
        lock_when = on_write(f"{model_rel(1)}/checkpoint.safetensors", 1)
    else:
        for p in (root / "reports" / DS / "units").rglob("linear_probe_seed0.json"):
            p.unlink()
        argv = [str(PY), str(DRIVER), "evaluate-tracked", str(root), str(suite.params)]
        lock_when = delay(0.0)
    prior = snapshot(root)
    env = suite.env()
    holder = None
    with open(root.parent / f"{root.name}.out", "w+b") as out:
        t1 = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        state: dict[str, Any] = {}
        _wait_for(lambda: lock_when.fired(root, t1, state), 300, proc)
        if proc.poll() is None:
            holder = subprocess.Popen(
                [str(PY), str(DRIVER), "hold-sqlite", str(root / "mlflow.db"), str(hold_s)],
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            assert holder.stdout is not None
            holder.stdout.readline()  # "locked"
        locked_at = time.perf_counter() - t1
        rc = proc.wait(timeout=600)
        seconds = time.perf_counter() - t1
        if holder is not None:
            holder.wait(timeout=hold_s + 30)
        out.seek(0)
        text = out.read().decode(errors="replace")
    (root.parent / f"{root.name}.out").unlink()
    faulty = Ran(rc, seconds, output=text)
    clean, message = (True, "survived") if rc == 0 else _clean_failure(faulty)
    pending = sorted(p.relative_to(root).as_posix() for p in root.rglob("pending_mlflow*") if p.is_file())
    rerun = run(argv, root, env)
    why = None if rerun.rc == 0 else f"rerun exit {rerun.rc}: {tail(rerun.output)}"
    if why is None and what == "pretrain":
        why = _pretrain_check(root, suite)
    left = sorted(p.relative_to(root).as_posix() for p in root.rglob("pending_mlflow*") if p.is_file())
    if why is None and left:
        why = f"metrics still pending after the rerun: {left}"
    return suite._record(
        f"MLflow store locked: {what}",
        f"BEGIN EXCLUSIVE on mlflow.db for {hold_s:.0f} s from {locked_at:.1f} s"
        if holder is not None
        else f"not locked: the run ended (exit {rc}) first",
        root,
        prior,
        faulty,
        rerun,
        why,
        t0,
        injected=holder is not None,
        extra={
            "step": what,
            "survived": rc == 0,
            "failed_clearly": clean,
            "message": message,
            "pending_after_fault": pending,
            "warnings": sum("MLflow logging failed" in ln for ln in text.splitlines()),
        },
    )


def two_runs_case(suite: Suite, second: str) -> dict[str, Any]:
    """``trls pretrain`` running on a root and ``trls <second>`` started on the same root: the second must
    exit 2 at once naming the holder and write nothing; rerun once the first is done, it must succeed."""
    from trls_core.locks import holder_of, workspace_lock_path

    t0 = time.perf_counter()
    root = suite.fresh("spec", f"two-runs-{second}")
    prior = snapshot(root)
    env = suite.env()
    first_argv = suite.steps["pretrain"].argv(root, suite.params)
    with open(root.parent / f"{root.name}.out", "w+b") as out:
        first = subprocess.Popen(first_argv, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
        lock = workspace_lock_path(root)
        held = _wait_for(lambda: (holder_of(lock) or {}).get("pid") == first.pid, 300, first)
        before = snapshot(root, "reports") if second == "evaluate" else {}
        faulty = run(suite.steps[second].argv(root, suite.params), root, env)
        wrote = snapshot(root, "reports") != before if second == "evaluate" else None
        first_rc = first.wait(timeout=600)
    (root.parent / f"{root.name}.out").unlink()
    named = f"pid {first.pid}" in faulty.output
    rerun = run(suite.steps[second].argv(root, suite.params), root, env)
    why = suite.steps[second].check(root, suite) if rerun.rc == 0 else f"rerun exit {rerun.rc}: {tail(rerun.output)}"
    if why is None and not (faulty.rc == 2 and named and not wrote):
        why = f"the second run was not refused naming the holder: exit {faulty.rc}, {tail(faulty.output, 300)!r}"
    if why is None and first_rc != 0:
        why = f"the first run failed: exit {first_rc}"
    return suite._record(
        f"two runs on one root: pretrain + {second}",
        f"trls {second} started while trls pretrain (pid {first.pid}) holds the root"
        if held
        else "the first run never held the lock",
        root,
        prior,
        faulty,
        rerun,
        why,
        t0,
        injected=held,
        extra={
            "step": second,
            "second_exit": faulty.rc,
            "holder_named": named,
            "second_wrote": wrote,
            "message": _clean_failure(faulty)[1],
            "first_exit": first_rc,
            "refused_in_s": round(faulty.seconds, 2),
        },
    )
