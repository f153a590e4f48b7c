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


def test_a_killed_spectrogram_stage_s_temp_folder_is_removed_by_the_next_run(
    tiny_project: Path, tiny_params: Path
) -> None:
    """What the fault suite found: parquet/spectrogram stages left a SIGKILLed run's temp folder for good."""
    import subprocess

    from trls_core.config import load_params
    from trls_core.stages.spectrogram import build_spectrograms

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    litter = tiny_project / "data" / "spectrograms" / f".epilepsy.{int(dead.stdout)}.abcd1234.tmp"
    litter.mkdir()
    (litter / "train.safetensors").write_bytes(b"half written")
    build_spectrograms(tiny_project, "epilepsy", load_params(tiny_params))
    assert not litter.exists()
    assert kills.litter(tiny_project) == []


@pytest.mark.parametrize(
    "exc",
    [
        OSError(28, "No space left on device", "data/parquet/.epilepsy.1.abcd1234.tmp/windows.parquet"),
        OSError("Error writing bytes to file. Detail: [errno 28] No space left on device"),  # pyarrow's
    ],
)
def test_a_stage_on_a_full_disk_exits_2_saying_so(exc: OSError, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """What the fault suite found: a stage on a full disk ended in a traceback (now: exit 2, one line)."""
    from trls_core.stages._common import run_stage

    def full(root: Path, dataset: str, params: object) -> None:
        raise exc

    params = str(kills.ROOT / "params.yaml")
    assert run_stage("parquet", full, ["epilepsy", "--params", params, "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: stage parquet epilepsy: disk full writing ") and "No space left" in err
    assert "previous outputs are unchanged" in err


def test_other_os_errors_of_a_stage_are_not_called_disk_full(tmp_path: Path) -> None:
    from trls_core.stages._common import run_stage

    def broken(root: Path, dataset: str, params: object) -> None:
        raise PermissionError(13, "Permission denied", "x")

    with pytest.raises(PermissionError):
        run_stage("parquet", broken, ["epilepsy", "--params", str(kills.ROOT / "params.yaml"), "--root", str(tmp_path)])


def test_a_killed_run_s_half_written_checkpoint_is_removed_by_the_next_save(tmp_path: Path) -> None:
    """What the fault suite found: kill -9 during a checkpoint write left ``.checkpoint.safetensors.<pid>.*.tmp``."""
    import subprocess

    import torch

    from trls_core.checkpoint import load_checkpoint, save_checkpoint

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    half = tmp_path / f".checkpoint.safetensors.{int(dead.stdout)}.abcd1234.tmp"
    half.write_bytes(b"half written")
    save_checkpoint(tmp_path / "checkpoint.safetensors", {"model": {"w": torch.ones(2)}}, {"epochs_done": 1})
    assert not half.exists() and kills.litter(tmp_path) == []
    assert load_checkpoint(tmp_path / "checkpoint.safetensors")[1]["epochs_done"] == 1
