"""PhysioNet Sleep-EDF Expanded (sleep-edfx): file naming, pairing and the fetch.

The source distributes one PSG EDF and one EDF+ hypnogram per night:
``SC4001E0-PSG.edf`` / ``SC4001EC-Hypnogram.edf`` (study SC4, subject 00,
night 1; the two trailing letters differ between the two files, so files
are paired on the first six characters). Those files are the raw artifact:
``data/raw/sleepedf/`` holds them as distributed (flat), plus
``MANIFEST.json``. Sources: a mirror folder holding ``sleep-edfx/`` (any
sub-folder layout: PhysioNet's ``sleep-cassette/``, MNE's
``physionet-sleep-data/`` or flat) or MNE's PhysioNet fetcher.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trls_core.errors import DataError

MIRROR_SUBDIR = "sleep-edfx"
DATASET_VERSION = "physionet-sleep-edfx-1.0.0"
CLASSES: tuple[str, ...] = ("W", "N1", "N2", "N3", "REM")
#: Hypnogram descriptions (Rechtschaffen & Kales) -> AASM class; stages 3 and 4 merge into N3.
STAGE_MAP: dict[str, str] = {
    "Sleep stage W": "W",
    "Sleep stage 1": "N1",
    "Sleep stage 2": "N2",
    "Sleep stage 3": "N3",
    "Sleep stage 4": "N3",
    "Sleep stage R": "REM",
}
#: Descriptions that are known but carry no stage: their epochs are dropped.
DROPPED: frozenset[str] = frozenset({"Sleep stage ?", "Movement time"})

_NAME_RE = re.compile(r"^(?P<study>SC4|ST7)(?P<subject>\d{2})(?P<night>\d)(?P<tag>\w{2})-(?P<kind>PSG|Hypnogram)\.edf$")


@dataclass(frozen=True)
class SleepFile:
    """What a Sleep-EDF file name says: ``SC4`` + subject ``ss`` + night ``N``."""

    path: Path
    study: str
    subject: int
    night: int
    kind: str  # "PSG" | "Hypnogram"

    @property
    def record_id(self) -> str:
        """The night: ``SC4001`` (study, subject, night); equal for the PSG and its hypnogram."""
        return f"{self.study}{self.subject:02d}{self.night}"

    @property
    def subject_id(self) -> str:
        """The person: ``SC400``; both nights of a subject share it (splits keep them together)."""
        return f"{self.study}{self.subject:02d}"


def parse_name(path: Path) -> SleepFile | None:
    """A :class:`SleepFile` for a PhysioNet-named EDF, None for any other file."""
    m = _NAME_RE.match(Path(path).name)
    if m is None:
        return None
    return SleepFile(Path(path), m["study"], int(m["subject"]), int(m["night"]), m["kind"])


@dataclass(frozen=True)
class Night:
    """One recording: its PSG and hypnogram (either may be missing in a broken folder)."""

    record_id: str
    subject_id: str
    psg: Path | None
    hypnogram: Path | None


def pair_files(folder: Path) -> list[Night]:
    """Every night found under ``folder`` (recursively), sorted by record id.

    Two PSGs (or two hypnograms) for one night are an error: which one is
    meant cannot be guessed.
    """
    found: dict[str, dict[str, SleepFile]] = {}
    for path in sorted(Path(folder).rglob("*.edf")):
        f = parse_name(path)
        if f is None:
            continue
        slot = found.setdefault(f.record_id, {})
        if f.kind in slot:
            raise DataError(
                f"{folder}: two {f.kind} files for night {f.record_id}: {slot[f.kind].path.name}, {path.name}"
            )
        slot[f.kind] = f
    nights = []
    for rid, slot in sorted(found.items()):
        any_file = next(iter(slot.values()))
        nights.append(
            Night(
                rid,
                any_file.subject_id,
                slot["PSG"].path if "PSG" in slot else None,
                slot["Hypnogram"].path if "Hypnogram" in slot else None,
            )
        )
    return nights


def _wanted(f: SleepFile, subjects: list[int], recordings: list[int]) -> bool:
    return f.study == "SC4" and f.subject in subjects and f.night in recordings


def _mirror_files(mirror: Path, subjects: list[int], recordings: list[int]) -> list[Path]:
    folder = Path(mirror) / MIRROR_SUBDIR
    if not folder.is_dir():
        raise DataError(f"Sleep-EDF mirror: no {MIRROR_SUBDIR}/ folder in {Path(mirror).resolve()}")
    files = [p for p in sorted(folder.rglob("*.edf")) if (f := parse_name(p)) and _wanted(f, subjects, recordings)]
    if not files:
        raise DataError(
            f"{folder}: no SC4ssN*-PSG.edf / -Hypnogram.edf file for subjects {subjects} nights {recordings}"
        )
    return files


def _download_files(  # pragma: no cover - network
    dl_dir: Path, subjects: list[int], recordings: list[int], timeout: float
) -> list[Path]:
    """MNE's PhysioNet fetcher into ``dl_dir``; nights that do not exist are skipped with a warning."""
    from mne.datasets.sleep_physionet.age import fetch_data

    from trls_core.data.physionet import require_network

    require_network("sleepedf", "sleepedf", timeout=timeout)
    try:
        pairs = fetch_data(subjects=subjects, recording=recordings, path=str(dl_dir), on_missing="warn")
    except Exception as exc:  # MNE/pooch raise many types (HTTPError, ValueError, OSError)
        raise DataError(f"sleepedf: MNE PhysioNet download failed ({type(exc).__name__}: {exc})") from None
    return [Path(p) for pair in pairs for p in pair]


def fetch_sleepedf(
    dest: Path, mirror: Path | None, subjects: list[int], recordings: list[int], timeout: float = 10.0
) -> dict[str, Any]:
    """Populate ``dest`` with the requested nights' EDF files + ``MANIFEST.json``, verified.

    Every file is parsed (PSG header via MNE, hypnogram annotations) so a
    corrupt copy fails here; nights the source lacks (e.g. subject 13 night
    2) are listed under ``missing``. Written atomically.
    """
    import mne

    from trls_core.data.physionet import files_digest
    from trls_core.io import atomic_dir, sha256_file, write_json

    dest = Path(dest)
    with atomic_dir(dest) as tmp:
        if mirror is not None:
            files = _mirror_files(Path(mirror), subjects, recordings)
            origin = f"mirror:{MIRROR_SUBDIR}"
        else:  # pragma: no cover - network
            dl = tmp / ".download"
            files = _download_files(dl, subjects, recordings, timeout)
            origin = "mne.datasets.sleep_physionet.age"
        copied = []
        for src in files:
            target = tmp / src.name
            if target.exists():
                raise DataError(f"{origin}: file name {src.name} found twice")
            shutil.copyfile(src, target)
            copied.append(target)
        shutil.rmtree(tmp / ".download", ignore_errors=True)
        entries: dict[str, Any] = {}
        for path in copied:
            f = parse_name(path)
            assert f is not None
            try:
                if f.kind == "PSG":
                    raw = mne.io.read_raw_edf(path, preload=False, verbose="error")
                    info = {"channels": raw.ch_names, "sfreq": float(raw.info["sfreq"]), "n_times": int(raw.n_times)}
                else:
                    info = {"n_annotations": len(mne.read_annotations(path))}
            except Exception as exc:  # MNE raises ValueError/RuntimeError/OSError on a bad EDF
                raise DataError(f"{origin}/{path.name}: not a readable EDF ({type(exc).__name__}: {exc})") from None
            entries[path.name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size, **info}
        present = {(f.subject, f.night) for p in copied if (f := parse_name(p)) and f.kind == "PSG"}
        manifest: dict[str, Any] = {
            "dataset": "sleepedf",
            "source": "mirror" if mirror is not None else "mne",
            "origin": origin,
            "subjects": subjects,
            "recordings": recordings,
            "n_nights": len(present),
            "missing": [f"SC4{s:02d}{n}" for s in subjects for n in recordings if (s, n) not in present],
            "files": entries,
            "content_digest": files_digest(copied, "sleepedf-files"),
        }
        write_json(tmp / "MANIFEST.json", manifest)
    return manifest
