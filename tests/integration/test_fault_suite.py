"""The fault suite's runner (bench/faults/run.py, ``make faults``) in its smoke size: one kill case, a few inputs.

The full suite is a benchmark (bench/results/faults.json); this checks that
the runner works end to end (a real ``bin/trls-stage`` process SIGKILLed,
rerun, its outputs compared with the clean run's) and that its harness does
count what it claims to: a changed prior output is lost, a leftover temp
file is litter.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

FAULTS = Path(__file__).resolve().parents[2] / "bench" / "faults"
sys.path.insert(0, str(FAULTS))
import kills  # noqa: E402
import run as fault_run  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_quick_fault_run_kills_a_stage_reruns_it_and_writes_the_figures(tmp_path: Path) -> None:
    out = tmp_path / "faults.json"
    assert fault_run.main(["--quick", "--out", str(out), "--workdir", str(tmp_path)]) == 0
    res = json.loads(out.read_text())
    assert res["bad_inputs_tried"] > 0 and res["unnamed_errors"] == 0
    (case,) = res["cases"]
    assert case["name"] == "kill -9 fetch" and case["step"] == "fetch"
    assert case["injected"] and case["faulty_exit"] == -9  # SIGKILLed, not ended by itself
    assert case["recovered"] and case["rerun_exit"] == 0 and case["lost"] == []
    assert case["prior_files"] > 0 and case["prior_sha256_before"] == case["prior_sha256_after"]
    assert res["faults_injected"] == res["recovered"] == 1 and res["data_lost"] == 0


def test_snapshot_counts_a_changed_output_as_lost_and_a_temp_file_as_litter(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "data" / "parquet" / "x").mkdir(parents=True)
    (root / "data" / "parquet" / "x" / "windows.parquet").write_bytes(b"a")
    (root / "mlflow.db").write_bytes(b"store")  # volatile: not an output
    prior = kills.snapshot(root)
    assert list(prior) == ["data/parquet/x/windows.parquet"]
    (root / "data" / "parquet" / ".x.123.abc.tmp").mkdir()
    (root / "data" / "parquet" / ".x.123.abc.tmp" / "part").write_bytes(b"half")
    (root / "data" / "parquet" / "x" / "windows.parquet").write_bytes(b"b")
    out = root / "data/parquet/x/windows.parquet"
    assert kills.snapshot(root) == {"data/parquet/x/windows.parquet": kills.sha256(out)}  # the temp folder left out
    assert kills.litter(root) == ["data/parquet/.x.123.abc.tmp"]
    suite = kills.Suite(tmp_path)
    faulty = kills.Ran(-9, 1.0, killed=True, killed_at=0.5)
    rec = suite._record("kill -9 parquet", "test", root, prior, faulty, kills.Ran(0, 1.0), None, 0.0)
    assert rec["lost"] == ["data/parquet/x/windows.parquet"] and rec["recovered"]
    assert rec["prior_sha256_before"] != rec["prior_sha256_after"]
    assert rec["litter_after_rerun"] == ["data/parquet/.x.123.abc.tmp"]
