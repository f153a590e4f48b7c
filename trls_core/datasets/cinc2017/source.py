"""PhysioNet/CinC Challenge 2017 (single-lead ECG, 300 Hz, labels N/A/O/~).

The source distributes ``training2017.zip``: ``training2017/`` with a WFDB
header + MATLAB v4 ``.mat`` per record, ``RECORDS`` and ``REFERENCE.csv``
(``A00001,N`` per line, no header). The zip is the raw artifact: records are
read straight from it (no 17k-file extraction). Mirror and official zips are
packed differently, so verification and the content digest use the
decompressed members, never the zip bytes.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from trls_core.data.archive import check_zip
from trls_core.data.checksums import check_content, check_mirror_file, check_pin_names, pinned
from trls_core.data.download import DownloadLimits, download
from trls_core.data.zip_errors import ZIP_READ_ERRORS
from trls_core.errors import DataError

ZIP_NAME = "training2017.zip"
MIRROR_SUBDIR = "cinc2017"
CLASSES: tuple[str, ...] = ("N", "A", "O", "~")
CLASS_DESCRIPTIONS: dict[str, str] = {
    "N": "normal sinus rhythm",
    "A": "atrial fibrillation",
    "O": "other rhythm",
    "~": "too noisy to classify",
}
FS_HZ = 300.0
DATASET_VERSION = "physionet-challenge-2017-1.0.0"


@dataclass
class Cinc2017Archive:
    """Index of ``training2017.zip``: members per record, labels, RECORDS list.

    Only names and the two small text files are read on open; signals are
    read per record with :meth:`read_member`. ``label_problems`` holds
    malformed ``REFERENCE.csv`` lines (line number, text) rather than failing,
    so the parquet stage can report them.
    """

    path: Path
    zf: zipfile.ZipFile
    hea: dict[str, str] = field(default_factory=dict)
    mat: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    records: list[str] | None = None
    label_problems: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, path: Path) -> Cinc2017Archive:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"CinC 2017 archive not found: {path}")
        try:
            zf = zipfile.ZipFile(path)
        except ZIP_READ_ERRORS as exc:  # a damaged zip, whatever zipfile raised for it
            raise DataError(f"{path}: not a valid zip file ({exc})") from None
        try:
            check_zip(zf, path)  # sizes, ratio and names before any member is read
        except DataError:
            zf.close()
            raise
        arc = cls(path=path, zf=zf)
        reference: str | None = None
        records: str | None = None
        for info in zf.infolist():
            p = PurePosixPath(info.filename)
            if info.is_dir() or any(part == "__MACOSX" or part.startswith(".") for part in p.parts):
                continue
            suffix = p.suffix.lower()
            if suffix == ".hea":
                arc.hea[p.stem] = info.filename
            elif suffix == ".mat":
                arc.mat[p.stem] = info.filename
            elif p.name.upper() == "REFERENCE.CSV":
                reference = info.filename
            elif p.name.upper() == "RECORDS":
                records = info.filename
        if reference is None:
            raise DataError(f"{path}: no REFERENCE.csv (the label file) in the archive")
        arc._parse_reference(reference)
        if records is not None:
            arc.records = [ln.strip() for ln in arc.read_text(records).splitlines() if ln.strip()]
        return arc

    def _parse_reference(self, member: str) -> None:
        for i, line in enumerate(self.read_text(member).splitlines(), start=1):
            line = line.strip()
            if not line:
                continue
            parts = [p.strip() for p in line.split(",")]
            if len(parts) != 2 or not parts[0]:
                self.label_problems.append(f"{member} line {i}: expected 'record,label', got {line!r}")
                continue
            rid, label = parts
            if rid in self.labels and self.labels[rid] != label:
                self.label_problems.append(
                    f"{member} line {i}: record {rid} labelled twice ({self.labels[rid]}, {label})"
                )
            self.labels[rid] = label

    def read_member(self, name: str) -> bytes:
        try:
            return self.zf.read(name)
        except ZIP_READ_ERRORS as exc:  # CRC error, truncated member, unsupported compression
            raise DataError(f"{self.path} member {name}: unreadable ({exc})") from None

    def read_text(self, name: str) -> str:
        return self.read_member(name).decode("utf-8", errors="replace")

    def record_ids(self) -> list[str]:
        """Every id seen anywhere (labels, RECORDS, members), sorted."""
        return sorted(set(self.labels) | set(self.hea) | set(self.mat) | set(self.records or []))

    def iter_content(self) -> Iterator[tuple[str, bytes]]:
        """(member base name, decompressed bytes) of every record/text member, sorted by name."""
        names = sorted(
            {*self.hea.values(), *self.mat.values()}
            | {n for n in self.zf.namelist() if PurePosixPath(n).name.upper() in ("REFERENCE.CSV", "RECORDS")},
            key=lambda n: PurePosixPath(n).name,
        )
        for name in names:
            yield PurePosixPath(name).name, self.read_member(name)

    def close(self) -> None:
        self.zf.close()

    def __enter__(self) -> Cinc2017Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def content_digest(archive: Cinc2017Archive) -> str:
    """sha256 over (base name, decompressed bytes) of every member, in name order.

    Equal for any packing (folder prefix, compression, member order) of the
    same files, so the official download and the mirror agree. Reading every
    member also checks each member's CRC.
    """
    h = hashlib.sha256(b"cinc2017-members\n")
    for name, data in archive.iter_content():
        h.update(name.encode() + b"\0" + len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def find_mirror_zip(mirror: Path) -> Path:
    """``mirror/cinc2017/training2017.zip`` or ``mirror/training2017.zip``."""
    mirror = Path(mirror)
    for candidate in (mirror / MIRROR_SUBDIR / ZIP_NAME, mirror / ZIP_NAME):
        if candidate.is_file():
            return candidate
    raise DataError(f"CinC 2017 mirror: no {MIRROR_SUBDIR}/{ZIP_NAME} (nor {ZIP_NAME}) in {mirror.resolve()}")


def fetch_cinc2017(
    dest: Path,
    mirror: Path | None,
    url: str,
    expected_records: int | None,
    timeout: float = 300,
    retries: int = 3,
    backoff_s: float = 1.0,
    limits: DownloadLimits | None = None,
    sha256: dict[str, str | None] | None = None,
    content_sha256: str | None = None,
) -> dict[str, object]:
    """Populate ``dest`` with ``training2017.zip`` and ``MANIFEST.json``, verified.

    Source: the mirror when given (no network fallback), else ``url``
    (within ``limits``, checked against its pinned ``sha256[training2017.zip]``).
    The copy is verified by parsing: a readable zip with ``REFERENCE.csv``,
    every member's CRC (through the content digest, compared with
    ``content_sha256``: :mod:`trls_core.data.checksums`), and, when
    ``expected_records`` is set, that many ids in ``RECORDS`` and labelled
    in ``REFERENCE.csv``. Per-record problems (a missing ``.mat``, a bad
    header) are left to the parquet stage, which rejects those records with
    a reason. Written atomically: a failed fetch leaves no half folder.
    """
    import shutil
    from collections import Counter

    from trls_core.io import atomic_dir, sha256_file, write_json

    dest = Path(dest)
    limits = limits or DownloadLimits(setting="cinc2017.fetch")
    pins = dict(sha256 or {})
    check_pin_names(pins, [ZIP_NAME], limits.setting)
    with atomic_dir(dest) as tmp:
        target = tmp / ZIP_NAME
        if mirror is not None:
            src = find_mirror_zip(Path(mirror))
            shutil.copyfile(src, target)
            origin = f"mirror:{MIRROR_SUBDIR}/{ZIP_NAME}"
            file_digest = sha256_file(target)
            check_mirror_file(origin, file_digest, pinned(pins, ZIP_NAME), limits.setting)
        else:
            file_digest = download(
                url, target, timeout, retries, backoff_s, limits=limits, sha256=pinned(pins, ZIP_NAME)
            )
            origin = url
        with Cinc2017Archive.open(target) as arc:
            listed = arc.records if arc.records is not None else sorted(arc.hea)
            if expected_records is not None:
                if len(listed) != expected_records:
                    raise DataError(f"{origin}: RECORDS lists {len(listed)} records, expected {expected_records}")
                if len(arc.labels) != expected_records:
                    raise DataError(
                        f"{origin}: REFERENCE.csv labels {len(arc.labels)} records, expected {expected_records}"
                    )
            label_counts = Counter(arc.labels.values())
            manifest: dict[str, object] = {
                "dataset": "cinc2017",
                "source": "mirror" if mirror is not None else "url",
                "origin": origin,
                "fs": FS_HZ,
                "files": {ZIP_NAME: {"sha256": file_digest, "bytes": target.stat().st_size}},
                "n_records": len(listed),
                "n_hea": len(arc.hea),
                "n_mat": len(arc.mat),
                "n_labels": len(arc.labels),
                "label_counts": {k: label_counts.get(k, 0) for k in sorted(label_counts, key=_class_order)},
                "label_problems": arc.label_problems,
                "content_digest": content_digest(arc),
            }
            check_content(
                origin, str(manifest["content_digest"]), content_sha256, limits.setting, downloaded=mirror is None
            )
        write_json(tmp / "MANIFEST.json", manifest)
    return manifest


def _class_order(label: str) -> tuple[int, str]:
    return (CLASSES.index(label) if label in CLASSES else len(CLASSES), label)
