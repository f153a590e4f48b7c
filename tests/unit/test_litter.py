"""Temporaries of killed writers are removed on the next run; a live writer's never are.

The writers are real processes using trls_core.io's atomic_dir / atomic_path,
killed with SIGKILL in the middle of writing.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trls_core import litter
from trls_core.io import atomic_dir, atomic_path
from trls_core.litter import remove_litter

WRITER = """
import sys, time
from pathlib import Path
from trls_core.io import atomic_dir, atomic_path
root = Path(sys.argv[1])
with atomic_dir(root / "epilepsy") as tmp, atomic_path(root / "MANIFEST.json") as part:
    (tmp / "Z.zip").write_bytes(b"partial download")
    part.write_text("half")
    print(tmp.name, part.name, flush=True)
    time.sleep(60)
"""


def start_writer(folder: Path) -> tuple[subprocess.Popen[str], list[str]]:
    """A process in the middle of writing ``folder/epilepsy`` and ``folder/MANIFEST.json``; its temp names."""
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    names = proc.stdout.readline().split()
    assert len(names) == 2, names
    return proc, names


def killed(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def test_killed_writers_litter_is_removed_live_writers_kept(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dead, dead_names = start_writer(tmp_path)
    live, live_names = start_writer(tmp_path)
    try:
        killed(dead)
        assert {p.name for p in tmp_path.iterdir()} == set(dead_names + live_names)  # kill -9 leaves them
        with caplog.at_level(logging.WARNING, logger="trls_core.litter"):
            removed = remove_litter(tmp_path)
        assert sorted(p.name for p in removed) == sorted(dead_names)
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(live_names)  # the live writer's are kept
        for name in dead_names:
            assert f"removed {tmp_path / name}" in caplog.text and f"pid {dead.pid}, is gone" in caplog.text
    finally:
        killed(live)
    assert sorted(p.name for p in remove_litter(tmp_path)) == sorted(live_names)
    assert list(tmp_path.iterdir()) == []


def test_own_temporaries_are_kept_and_a_name_filter_applies(tmp_path: Path) -> None:
    with atomic_dir(tmp_path / "epilepsy") as tmp, atomic_path(tmp_path / "cinc2017") as part:
        part.write_text("mine")
        assert remove_litter(tmp_path) == [] and tmp.is_dir() and part.is_file()
    dead, names = start_writer(tmp_path)
    killed(dead)
    assert [p.name for p in remove_litter(tmp_path, "MANIFEST.json")] == [n for n in names if "MANIFEST" in n]
    assert [p.name for p in remove_litter(tmp_path, "epilepsy")] == [n for n in names if n.startswith(".epilepsy.")]


def test_reused_pid_does_not_protect_older_litter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a container restart our own pid may be the one in an old name: the process started after it."""
    old = tmp_path / f".epilepsy.{os.getpid()}.abcd1234.tmp"
    old.mkdir()
    monkeypatch.setattr(litter, "process_start", lambda pid: time.time() + 60)
    assert remove_litter(tmp_path) == [old] and not old.exists()


def test_names_without_pid_only_when_older_than_this_process(tmp_path: Path) -> None:
    stale, fresh = tmp_path / ".epilepsy.k3j4h5g6.tmp", tmp_path / ".cinc2017.q1w2e3r4.tmp"
    stale.write_text("from before names carried a pid")
    fresh.write_text("maybe a live writer's")
    started = litter.process_start(os.getpid())
    assert started is not None
    os.utime(stale, (started - 3600, started - 3600))
    assert remove_litter(tmp_path) == [stale] and fresh.exists()


def test_old_output_moved_aside_by_a_killed_swap_is_restored(tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    aside = tmp_path / f".epilepsy.old.{int(gone.stdout)}"
    aside.mkdir()
    (aside / "MANIFEST.json").write_text("the last good fetch")
    assert remove_litter(tmp_path) == [aside]
    assert (tmp_path / "epilepsy" / "MANIFEST.json").read_text() == "the last good fetch"
    (tmp_path / "epilepsy" / "MANIFEST.json").write_text("newer")
    aside.mkdir()  # the new output is in place: the moved-aside old one is only litter
    assert remove_litter(tmp_path) == [aside] and not aside.exists()
    assert (tmp_path / "epilepsy" / "MANIFEST.json").read_text() == "newer"


def test_unrelated_dotfiles_are_left_alone(tmp_path: Path) -> None:
    for name in (".gitignore", ".dvc", ".epilepsy.tmp", ".x.99999999.short.tmp"):
        (tmp_path / name).write_text("")
    assert remove_litter(tmp_path) == []
    assert remove_litter(tmp_path / "missing") == []
