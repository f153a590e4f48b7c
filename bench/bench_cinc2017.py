"""Full-size CinC 2017: fetch + parquet + spectrogram from the mirror, timed and memory-measured.

Why: the issue's target is the whole 8,528-record set through the three data
stages in <= 3 min on 2 cores with peak memory <= 3 GB. Each stage runs as
its own process exactly as DVC runs it (``python -m trls_core.stages.X
cinc2017``) in a throw-away project root, under ``/usr/bin/time -v`` when
available (peak RSS of that process) or else timed here with
``resource.getrusage(RUSAGE_CHILDREN)`` (the max RSS of the children).
The repository's own data/ is not touched.

Usage: python bench/bench_cinc2017.py [--mirror ../shared/data] [--out bench/results/cinc2017.json]
       [--keep DIR]      keep the built project there instead of a temp folder
       [--records N]     only the first N records (a subset zip is made first): scaling checks
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from trls_core.io import write_json  # noqa: E402

STAGES = ("fetch", "parquet", "spectrogram")
TIME = Path("/usr/bin/time")
TARGET_WALL_S = 180.0
TARGET_RSS_MB = 3 * 1024.0


def _time_v(stderr: str) -> dict[str, float]:
    """Wall seconds and peak RSS (MB) from GNU time -v output."""
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", stderr)
    secs = 0.0
    if wall:
        for part in wall.group(1).split(":"):
            secs = secs * 60 + float(part)
    return {"time_v_wall_s": round(secs, 2), "peak_rss_mb": round(int(rss.group(1)) / 1024, 1) if rss else -1.0}


def run_stage(stage: str, proj: Path, env: dict[str, str]) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        f"trls_core.stages.{stage}",
        "cinc2017",
        "--root",
        str(proj),
        "--params",
        str(proj / "params.yaml"),
    ]
    use_time = TIME.is_file() and os.access(TIME, os.X_OK)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(TIME), "-v", *cmd] if use_time else cmd, cwd=ROOT, env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(
            f"stage {stage} failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        )
    out: dict[str, Any] = {"wall_s": round(wall, 2), "measured_with": "/usr/bin/time -v" if use_time else "getrusage"}
    if use_time:
        out.update(_time_v(proc.stderr))
    else:
        out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
    out["log"] = [ln for ln in proc.stderr.splitlines() if ln.startswith(f"[{stage}]")][-3:]
    return out


def _subset_mirror(mirror: Path, dest: Path, n: int) -> Path:
    """A mirror folder whose zip holds the first ``n`` records (same member bytes)."""
    import zipfile

    (dest / "cinc2017").mkdir(parents=True)
    with (
        zipfile.ZipFile(mirror / "cinc2017" / "training2017.zip") as src,
        zipfile.ZipFile(dest / "cinc2017" / "training2017.zip", "w") as dst,
    ):
        ref = src.read("training2017/REFERENCE.csv").decode().splitlines()[:n]
        ids = [line.split(",")[0] for line in ref]
        for rid in ids:
            for ext in ("hea", "mat"):
                info = src.getinfo(f"training2017/{rid}.{ext}")
                dst.writestr(info, src.read(info))
        dst.writestr("training2017/REFERENCE.csv", "\r\n".join(ref) + "\r\n")
        dst.writestr("training2017/RECORDS", "\n".join(ids) + "\n")
    return dest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mirror", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "cinc2017.json")
    ap.add_argument("--keep", type=Path, default=None)
    ap.add_argument("--records", type=int, default=None)
    args = ap.parse_args(argv)
    if not (args.mirror / "cinc2017" / "training2017.zip").is_file():
        raise SystemExit(f"no {args.mirror}/cinc2017/training2017.zip: pass --mirror")
    proj = args.keep or Path(tempfile.mkdtemp(prefix="bench_cinc2017_"))
    proj.mkdir(parents=True, exist_ok=True)
    mirror = args.mirror.resolve()
    params = (ROOT / "params.yaml").read_text()
    if args.records is not None:
        mirror = _subset_mirror(mirror, proj / "mirror", args.records)
        params = params.replace("expected_records: 8528", f"expected_records: {args.records}")
    (proj / "params.yaml").write_text(params)
    env = dict(os.environ, TRLS_DATA_MIRROR=str(mirror), PYTHONPATH=str(ROOT))
    try:
        stages = {s: run_stage(s, proj, env) for s in STAGES}
        summary = json.loads((proj / "data" / "parquet" / "cinc2017" / "summary.json").read_text())
        meta = json.loads((proj / "data" / "spectrograms" / "cinc2017" / "meta.json").read_text())
        sizes = {p.name: p.stat().st_size for p in (proj / "data").rglob("*") if p.is_file()}
    finally:
        if args.keep is None:
            shutil.rmtree(proj, ignore_errors=True)
    total = round(sum(s["wall_s"] for s in stages.values()), 2)
    peak = max(s["peak_rss_mb"] for s in stages.values())
    result = {
        "benchmark": "cinc2017 fetch+parquet+spectrogram, "
        + ("full mirror" if args.records is None else f"first {args.records} records of the mirror"),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "nice": os.nice(0),
        },
        "stages": stages,
        "total_wall_s": total,
        "peak_rss_mb": peak,
        "targets": {"total_wall_s": TARGET_WALL_S, "peak_rss_mb": TARGET_RSS_MB},
        "meets_targets": total <= TARGET_WALL_S and peak <= TARGET_RSS_MB,
        "n_records": summary["n_records"],
        "n_windows": summary["n_windows"],
        "n_rejected": summary["n_rejected"],
        "rejected_by_kind": summary["rejected_by_kind"],
        "windows_per_split": summary["windows_per_split"],
        "spectrogram_shape": meta["shape"],
        "file_bytes": sizes,
    }
    write_json(args.out, result)
    print(
        json.dumps({k: result[k] for k in ("total_wall_s", "peak_rss_mb", "meets_targets", "n_windows", "n_rejected")})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
