"""The Bonn University epilepsy EEG sets (Andrzejak et al. 2001): fetch and reader.

The source distributes one zip per set (Z, O, N, F, S = A..E), each holding
100 single-channel segments as text files of 4097 integer samples, one per
line (CRLF). The mirror and the official zips are packed differently (member
order, sub-folders, upper-case ``.TXT`` in set N), so everything here works
on the *parsed* samples and treats member names case-insensitively.

Every malformed input raises :class:`DataError` naming the zip, the member
and the line, because a silently skipped segment would change the benchmark.

``data/raw/epilepsy/`` holds exactly what the source distributes. The fetch
is all-or-nothing: files are gathered and verified (by parsing, since the
official zips and the mirror's are packed differently) in a temporary folder
that replaces ``dest`` only on success, so a failed fetch never leaves a
half-populated folder nor damages a previous good one.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from trls_core.data.archive import check_zip
from trls_core.data.checksums import check_content, check_mirror_file, check_pin_names, pinned
from trls_core.data.download import DownloadLimits, download
from trls_core.data.zip_errors import ZIP_READ_ERRORS
from trls_core.errors import DataError
from trls_core.io import atomic_dir, sha256_file, write_json

logger = logging.getLogger(__name__)

#: Set letter -> description, in the canonical order used for ``set_index``.
BONN_SETS: dict[str, str] = {
    "Z": "A: healthy volunteers, eyes open (surface EEG)",
    "O": "B: healthy volunteers, eyes closed (surface EEG)",
    "N": "C: interictal, hippocampal formation of the opposite hemisphere",
    "F": "D: interictal, epileptogenic zone",
    "S": "E: ictal (seizure activity)",
}
SET_ORDER: tuple[str, ...] = tuple(BONN_SETS)
FS_HZ: float = 173.61
SAMPLES_PER_SEGMENT: int = 4097


@dataclass(frozen=True)
class BonnData:
    """Parsed Bonn segments.

    ``set_index`` indexes ``set_names``, which is always the five letters in
    canonical order (Z, O, N, F, S) so a label means the same set whether all
    five or a subset were read. ``content_digest`` identifies the parsed
    samples independently of how the zips were packed.
    """

    signals: np.ndarray  # float32 (N, 1, L)
    record_ids: list[str]  # e.g. "Z001", sorted within a set, sets in canonical order
    set_index: np.ndarray  # int64 (N,), index into set_names
    set_names: list[str]
    content_digest: str
    fs: float = FS_HZ


def _check_letter(set_letter: str) -> str:
    letter = set_letter.upper()
    if letter not in BONN_SETS:
        raise DataError(f"unknown Bonn set {set_letter!r}; expected one of {', '.join(SET_ORDER)}")
    return letter


def _ignored_member(name: str) -> bool:
    """Directory entries and archiver litter (macOS resource forks, dotfiles)."""
    parts = PurePosixPath(name).parts
    return name.endswith("/") or any(p == "__MACOSX" or p.startswith(".") for p in parts)


def _parse_member(text: str, where: str, expected_samples: int) -> np.ndarray:
    """Parse one segment: one number per line, exactly ``expected_samples`` of them."""
    lines = text.rstrip().splitlines()  # trailing newline(s) are not samples
    try:
        values = np.array(lines, dtype=np.float64)
    except ValueError:
        # Slow path only on failure: find the first offending line for the message.
        for i, line in enumerate(lines, start=1):
            try:
                float(line)
            except ValueError:
                raise DataError(f"{where}: line {i}: non-numeric value {line.strip()!r}") from None
        raise DataError(f"{where}: could not parse samples as numbers") from None
    if values.shape[0] != expected_samples:
        kind = "truncated segment" if values.shape[0] < expected_samples else "segment too long"
        raise DataError(f"{where}: {kind}: {values.shape[0]} samples, expected {expected_samples}")
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{where}: line {i + 1}: non-finite value {lines[i].strip()!r}")
    return values


def read_bonn_zip(
    path: Path, set_letter: str, expected_samples: int = SAMPLES_PER_SEGMENT
) -> tuple[list[str], np.ndarray]:
    """Read one set's zip into (sorted segment ids, float32 array (n_seg, expected_samples)).

    Segment ids are the member file stems upper-cased (``N001.TXT`` -> ``N001``);
    members may sit in a sub-folder. Each id must be the set letter followed by
    digits, so a zip of the wrong set is caught rather than mislabelled.
    Samples are integers in the source; float32 holds them exactly.
    """
    path = Path(path)
    letter = _check_letter(set_letter)
    if not path.is_file():
        raise DataError(f"Bonn set {letter}: zip file not found: {path}")
    id_pattern = re.compile(rf"^{letter}\d+$")
    by_id: dict[str, np.ndarray] = {}
    member_of: dict[str, str] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            check_zip(zf, path)  # sizes, ratio and names before any member is read
            for info in zf.infolist():
                name = info.filename
                if info.is_dir() or _ignored_member(name):
                    continue
                where = f"{path} member {name}"
                member = PurePosixPath(name)
                if member.suffix.lower() != ".txt":
                    raise DataError(f"{where}: unexpected member (expected {letter}NNN.txt segment files)")
                seg_id = member.stem.upper()
                if not id_pattern.match(seg_id):
                    raise DataError(
                        f"{where}: segment id {seg_id!r} does not belong to set {letter} "
                        f"(expected {letter} followed by digits)"
                    )
                if seg_id in by_id:
                    raise DataError(
                        f"{path}: duplicate segment id {seg_id!r} in members {member_of[seg_id]} and {name}"
                    )
                text = zf.read(info).decode("latin-1")
                by_id[seg_id] = _parse_member(text, where, expected_samples)
                member_of[seg_id] = name
    except ZIP_READ_ERRORS as exc:  # a damaged zip, whatever zipfile raised for it
        raise DataError(f"{path}: not a valid zip file ({type(exc).__name__}: {exc})") from None
    if not by_id:
        raise DataError(f"{path}: empty zip: no segment files for set {letter}")
    ids = sorted(by_id)
    array = np.stack([by_id[i] for i in ids]).astype(np.float32)
    return ids, array


def find_set_zip(folder: Path, set_letter: str) -> Path | None:
    """The zip of one set in ``folder`` (``Z.zip``, accepting ``z.zip``), or None."""
    folder = Path(folder)
    for name in (f"{set_letter.upper()}.zip", f"{set_letter.lower()}.zip"):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


def content_digest(record_ids: Sequence[str], signals: np.ndarray) -> str:
    """sha256 over ids and parsed samples in the given (canonical) order.

    Independent of zip packing, so an official download and the mirror give
    the same digest. Integer-valued data (the Bonn source) is hashed as int64;
    anything else as float64, tagged so the two can never collide.
    """
    arr = np.asarray(signals, dtype=np.float64).reshape(len(record_ids), -1)
    integral = bool(np.all(arr == np.round(arr)))
    h = hashlib.sha256(b"bonn-int64\n" if integral else b"bonn-float64\n")
    rows = arr.astype("<i8") if integral else arr.astype("<f8")
    for rid, row in zip(record_ids, rows):
        h.update(rid.encode() + b"\0")
        h.update(row.tobytes())
    return h.hexdigest()


def read_bonn(raw_dir: Path, sets: Sequence[str] = "ZONFS", expected_samples: int = SAMPLES_PER_SEGMENT) -> BonnData:
    """Read the requested sets from ``raw_dir`` (holding ``Z.zip`` ... ``S.zip``).

    Sets are returned in canonical order Z, O, N, F, S whatever order is asked.
    A missing zip raises DataError naming the file and the folder.
    """
    raw_dir = Path(raw_dir)
    letters = [_check_letter(s) for s in sets]
    if len(set(letters)) != len(letters):
        raise DataError(f"duplicate Bonn sets requested: {''.join(letters)}")
    if not letters:
        raise DataError("no Bonn sets requested")
    letters.sort(key=SET_ORDER.index)
    all_ids: list[str] = []
    arrays: list[np.ndarray] = []
    index: list[np.ndarray] = []
    for letter in letters:
        zpath = find_set_zip(raw_dir, letter)
        if zpath is None:
            raise DataError(f"Bonn set {letter}: missing {letter}.zip in {raw_dir}")
        ids, arr = read_bonn_zip(zpath, letter, expected_samples)
        all_ids.extend(ids)
        arrays.append(arr)
        index.append(np.full(len(ids), SET_ORDER.index(letter), dtype=np.int64))
    signals = np.concatenate(arrays)[:, None, :]
    return BonnData(
        signals=signals,
        record_ids=all_ids,
        set_index=np.concatenate(index),
        set_names=list(SET_ORDER),
        content_digest=content_digest(all_ids, signals),
    )


# ------------------------------------------------------------------ fetch
#: Official download of each set (Andrzejak et al. 2001, University of Bonn).
BONN_URLS: dict[str, str] = {
    "Z": "https://www.ukbonn.de/site/assets/files/21874/z.zip",
    "O": "https://www.ukbonn.de/site/assets/files/21872/o.zip",
    "N": "https://www.ukbonn.de/site/assets/files/21871/n.zip",
    "F": "https://www.ukbonn.de/site/assets/files/21870/f.zip",
    "S": "https://www.ukbonn.de/site/assets/files/21875/s.zip",
}

MIRROR_SUBDIR = "bonn-eeg"


def resolve_bonn_mirror(mirror: Path) -> Path:
    """The folder holding the set zips: ``mirror/bonn-eeg`` if present, else ``mirror``."""
    mirror = Path(mirror)
    if not mirror.is_dir():
        raise DataError(f"Bonn mirror folder not found: {mirror}")
    sub = mirror / MIRROR_SUBDIR
    return sub if sub.is_dir() else mirror


def fetch_bonn(
    dest: Path,
    mirror: Path | None,
    urls: dict[str, str] | None = None,
    expected_segments: int = 100,
    expected_samples: int = 4097,
    timeout: float = 60,
    retries: int = 3,
    backoff_s: float = 1.0,
    limits: DownloadLimits | None = None,
    sha256: dict[str, str | None] | None = None,
    content_sha256: str | None = None,
) -> dict[str, Any]:
    """Populate ``dest`` with the five Bonn zips (Z, O, N, F, S) and ``MANIFEST.json``.

    Source: ``mirror`` when given (the folder holding ``bonn-eeg/`` or that
    folder itself; no fallback to the network, so an offline run never tries
    it), else ``urls`` (default :data:`BONN_URLS`), each download within
    ``limits`` and checked against its pinned ``sha256[<set>.zip]``. Each zip
    is copied byte for byte and verified by parsing it: ``expected_segments``
    segments of ``expected_samples`` finite numbers. The manifest records
    per-file sha256, size and segment count, and a ``content_digest`` over the
    parsed samples that is equal for any packing of the same data, compared
    with ``content_sha256`` (:mod:`trls_core.data.checksums`). Returns the manifest.
    """
    dest = Path(dest)
    limits = limits or DownloadLimits(setting="epilepsy.fetch")
    pins = dict(sha256 or {})
    check_pin_names(pins, [f"{s}.zip" for s in SET_ORDER], limits.setting)
    if mirror is not None:
        folder = resolve_bonn_mirror(Path(mirror))
        sources: dict[str, Path] = {}
        for letter in SET_ORDER:
            found = find_set_zip(folder, letter)
            if found is None:
                raise DataError(f"Bonn mirror: missing {letter}.zip in {folder.resolve()}")
            sources[letter] = found
        source = "mirror"  # no absolute path: the manifest (a DVC output) must not differ by machine
    else:
        urls = dict(BONN_URLS if urls is None else urls)
        missing = [s for s in SET_ORDER if s not in urls]
        if missing:
            raise DataError(f"no download URL for Bonn set(s) {', '.join(missing)}")
        source = "url"

    files: dict[str, Any] = {}
    all_ids: list[str] = []
    all_signals: list[np.ndarray] = []
    with atomic_dir(dest) as tmp:
        for letter in SET_ORDER:
            target = tmp / f"{letter}.zip"
            if mirror is not None:
                shutil.copyfile(sources[letter], target)
                origin = f"mirror:bonn-eeg/{sources[letter].name}"
            else:
                download(
                    urls[letter], target, timeout, retries, backoff_s, limits=limits, sha256=pinned(pins, target.name)
                )
                origin = urls[letter]
            ids, signals = read_bonn_zip(target, letter, expected_samples)
            if len(ids) != expected_segments:
                raise DataError(f"{origin}: set {letter} has {len(ids)} segments, expected {expected_segments}")
            digest = sha256_file(target)
            if mirror is not None:
                check_mirror_file(origin, digest, pinned(pins, target.name), limits.setting)
            files[target.name] = {
                "set": letter,
                "description": BONN_SETS[letter],
                "origin": origin,
                "sha256": digest,
                "bytes": target.stat().st_size,
                "n_segments": len(ids),
                "n_samples": int(signals.shape[1]),
            }
            all_ids.extend(ids)
            all_signals.append(signals)
        digest = content_digest(all_ids, np.concatenate(all_signals))
        where = f"Bonn mirror {folder}" if mirror is not None else f"Bonn zips from {', '.join(urls.values())}"
        check_content(where, digest, content_sha256, limits.setting, downloaded=mirror is None)
        manifest: dict[str, Any] = {
            "dataset": "epilepsy",
            "source": source,
            "fs": FS_HZ,
            "sets": list(SET_ORDER),
            "files": files,
            "n_segments": len(all_ids),
            "content_digest": digest,
        }
        write_json(tmp / "MANIFEST.json", manifest)
    if mirror is not None:
        logger.info("Bonn EEG copied from mirror %s", folder.resolve())
    return manifest
