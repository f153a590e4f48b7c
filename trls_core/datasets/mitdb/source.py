"""PhysioNet MIT-BIH Arrhythmia Database (mitdb): constants and the fetch.

48 half-hour two-lead records at 360 Hz, as WFDB files ``<rec>.hea``,
``<rec>.dat`` (format 212) and reference beat annotations ``<rec>.atr``.
Those files are the raw artifact: ``data/raw/mitdb/`` holds them as
distributed (+ ``MANIFEST.json``). Sources: a mirror folder holding
``mitdb/`` or ``wfdb.dl_database('mitdb', ...)``.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from trls_core.errors import DataError

MIRROR_SUBDIR = "mitdb"
DATASET_VERSION = "physionet-mitdb-1.0.0"
EXTENSIONS: tuple[str, ...] = (".hea", ".dat", ".atr")
CLASSES: tuple[str, ...] = ("N", "S", "V", "F", "Q")
CLASS_DESCRIPTIONS: dict[str, str] = {
    "N": "normal, bundle branch block, escape beats",
    "S": "supraventricular ectopic",
    "V": "ventricular ectopic",
    "F": "fusion of ventricular and normal",
    "Q": "paced, fusion of paced and normal, unclassifiable",
}
#: MIT-BIH beat symbol -> AAMI class (ANSI/AAMI EC57, as used by de Chazal et al. 2004).
AAMI: dict[str, str] = {
    **dict.fromkeys("NLRej", "N"),
    **dict.fromkeys("AaJS", "S"),
    **dict.fromkeys("VE", "V"),
    "F": "F",
    **dict.fromkeys("/fQ", "Q"),
}
#: WFDB annotation codes that are not beats (rhythm, noise, signal quality, comments): skipped.
NON_BEAT: frozenset[str] = frozenset("[!]x()ptu`'^|~+sT*D=\"@")
#: de Chazal, O'Dwyer & Reilly 2004, IEEE TBME 51(7): inter-patient training (DS1) and test (DS2) sets.
DS1: tuple[str, ...] = (
    "101",
    "106",
    "108",
    "109",
    "112",
    "114",
    "115",
    "116",
    "118",
    "119",
    "122",
    "124",
    "201",
    "203",
    "205",
    "207",
    "208",
    "209",
    "215",
    "220",
    "223",
    "230",
)
DS2: tuple[str, ...] = (
    "100",
    "103",
    "105",
    "111",
    "113",
    "117",
    "121",
    "123",
    "200",
    "202",
    "210",
    "212",
    "213",
    "214",
    "219",
    "221",
    "222",
    "228",
    "231",
    "232",
    "233",
    "234",
)
PACED: tuple[str, ...] = ("102", "104", "107", "217")


def record_files(folder: Path) -> dict[str, dict[str, Path]]:
    """``{record: {extension: path}}`` of the WFDB files under ``folder`` (recursively)."""
    out: dict[str, dict[str, Path]] = {}
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file() and path.suffix in EXTENSIONS:
            slot = out.setdefault(path.stem, {})
            if path.suffix in slot:
                raise DataError(
                    f"{folder}: two {path.suffix} files for record {path.stem}: {slot[path.suffix]}, {path}"
                )
            slot[path.suffix] = path
    return out


def _download(dl_dir: Path, records: list[str] | None, timeout: float) -> Path:  # pragma: no cover - network
    import wfdb

    from trls_core.data.physionet import require_network

    require_network("mitdb", "mitdb", timeout=timeout)
    try:
        wfdb.dl_database("mitdb", str(dl_dir), records=records if records is not None else "all", annotators=["atr"])
    except Exception as exc:  # wfdb raises requests/HTTP/OSError types
        raise DataError(f"mitdb: wfdb download failed ({type(exc).__name__}: {exc})") from None
    return dl_dir


def parsed_digest(folder: Path, records: list[str]) -> tuple[str, dict[str, Any]]:
    """sha256 over each record's parsed digital samples, names, rate and annotations; per-record info.

    Parsing every record here is the integrity check: a truncated ``.dat``
    or a malformed ``.atr`` fails the fetch with the record named.
    """
    import wfdb

    h = hashlib.sha256(b"mitdb-parsed\n")
    info: dict[str, Any] = {}
    for rid in records:
        base = str(Path(folder) / rid)
        try:
            rec = wfdb.rdrecord(base, physical=False)
            ann = wfdb.rdann(base, "atr")
        except Exception as exc:  # wfdb raises ValueError/IndexError/OSError on bad files
            raise DataError(f"mitdb record {rid}: unreadable WFDB files ({type(exc).__name__}: {exc})") from None
        d = np.ascontiguousarray(rec.d_signal, dtype=np.int32)
        h.update(f"{rid}\0{rec.fs}\0{','.join(rec.sig_name)}\0{d.shape}\0".encode())
        h.update(d.tobytes())
        h.update(np.asarray(ann.sample, dtype=np.int64).tobytes() + "".join(ann.symbol).encode())
        info[rid] = {
            "fs": float(rec.fs),
            "leads": list(rec.sig_name),
            "n_samples": int(d.shape[0]),
            "n_annotations": int(len(ann.sample)),
        }
    return h.hexdigest(), info


def fetch_mitdb(
    dest: Path,
    mirror: Path | None,
    records: list[str] | None,
    expected_records: int | None,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """Populate ``dest`` with the records' ``.hea``/``.dat``/``.atr`` + ``MANIFEST.json``, verified.

    A record without all three files is skipped and listed under
    ``incomplete`` (the parquet stage then never sees it); a requested
    record the source lacks fails. Written atomically.
    """
    from trls_core.io import atomic_dir, sha256_file, write_json

    dest = Path(dest)
    with atomic_dir(dest) as tmp:
        if mirror is not None:
            src_dir = Path(mirror) / MIRROR_SUBDIR
            if not src_dir.is_dir():
                raise DataError(f"MIT-BIH mirror: no {MIRROR_SUBDIR}/ folder in {Path(mirror).resolve()}")
            origin = f"mirror:{MIRROR_SUBDIR}"
        else:  # pragma: no cover - network
            src_dir = _download(tmp / ".download", records, timeout)
            origin = "wfdb.dl_database('mitdb')"
        found = record_files(src_dir)
        wanted = sorted(found) if records is None else list(records)
        absent = [r for r in wanted if r not in found]
        if absent:
            raise DataError(f"{origin}: record(s) {absent} not found (records: {sorted(found)})")
        complete = [r for r in wanted if all(ext in found[r] for ext in EXTENSIONS)]
        incomplete = {r: [e for e in EXTENSIONS if e not in found[r]] for r in wanted if r not in complete}
        if records is None and expected_records is not None and len(complete) != expected_records:
            raise DataError(
                f"{origin}: {len(complete)} complete records (.hea/.dat/.atr), expected "
                f"{expected_records}; incomplete: {incomplete}"
            )
        files: dict[str, Any] = {}
        for rid in complete:
            for ext in EXTENSIONS:
                target = tmp / f"{rid}{ext}"
                shutil.copyfile(found[rid][ext], target)
                files[target.name] = {"sha256": sha256_file(target), "bytes": target.stat().st_size}
        shutil.rmtree(tmp / ".download", ignore_errors=True)
        if not complete:
            raise DataError(f"{origin}: no complete record (.hea + .dat + .atr)")
        digest, info = parsed_digest(tmp, complete)
        manifest: dict[str, Any] = {
            "dataset": "mitdb",
            "source": "mirror" if mirror is not None else "wfdb",
            "origin": origin,
            "n_records": len(complete),
            "records": info,
            "incomplete": incomplete,
            "files": files,
            "content_digest": digest,
        }
        write_json(tmp / "MANIFEST.json", manifest)
    return manifest
