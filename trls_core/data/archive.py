"""Zip archives checked before any member is read: sizes, compression ratio, member names.

The readers read members whole into memory (a Bonn segment, a CinC record),
so one member that inflates to gigabytes (a zip bomb: a few kB of deflated
zeros) would exhaust memory before any content check runs. The sizes in a
zip's directory are what :mod:`zipfile` enforces when it reads (it stops at
the declared size and checks the CRC), so checking the declared sizes up
front bounds what reading can allocate. A member name that is absolute or
climbs out with ``..`` would escape the folder of anyone who extracts the
archive; such an archive is not one a data source distributes, so it is
refused rather than read. Every refusal names the archive and the member.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path, PurePosixPath

from trls_core.errors import DataError

__all__ = ["MAX_MEMBER_BYTES", "MAX_RATIO", "MAX_TOTAL_BYTES", "check_zip"]

#: Largest member of the supported archives: 85 kB (a CinC ``.mat``); a Bonn segment is 22 kB.
#: 256 MiB leaves room for other archives while bounding what one member read can allocate.
MAX_MEMBER_BYTES = 256 << 20
#: Everything inflated: CinC's 17,059 members are 167 MB; 8 GiB bounds a whole-archive pass.
MAX_TOTAL_BYTES = 8 << 30
#: Real members deflate 3-5:1 (text samples, int16 ECG); deflate's ceiling is ~1032:1, where bombs sit.
MAX_RATIO = 100.0
#: Below this a member is harmless whatever its ratio (a flat-line record deflates far better than 100:1).
RATIO_FLOOR_BYTES = 1 << 20

_DRIVE = re.compile(r"^[A-Za-z]:")


def _check_name(name: str, where: str) -> None:
    posix = name.replace("\\", "/")  # a zip written on Windows may use backslashes; extractors there honour them
    parts = PurePosixPath(posix).parts
    if posix.startswith("/") or _DRIVE.match(posix) or ".." in parts or "\0" in name:
        raise DataError(f"{where}: member name escapes the archive's folder (absolute, a drive or '..'); refused")


def check_zip(zf: zipfile.ZipFile, path: Path) -> None:
    """Refuse ``zf`` (opened from ``path``) if a member is unsafe to read or to extract.

    Limits (module constants, read at each call): :data:`MAX_MEMBER_BYTES`
    per member, :data:`MAX_TOTAL_BYTES` for all, :data:`MAX_RATIO` for members
    over :data:`RATIO_FLOOR_BYTES`. Raises :class:`DataError` naming the
    archive and the member.
    """
    total = 0
    for info in zf.infolist():
        where = f"{path} member {info.filename!r}"
        _check_name(info.filename, where)
        size = info.file_size
        if size > MAX_MEMBER_BYTES:
            raise DataError(
                f"{where}: {size:,} bytes uncompressed, over the cap of {MAX_MEMBER_BYTES:,} per member "
                f"(trls_core.data.archive.MAX_MEMBER_BYTES)"
            )
        ratio = size / max(info.compress_size, 1)
        if size > RATIO_FLOOR_BYTES and ratio > MAX_RATIO:
            raise DataError(
                f"{where}: compresses {ratio:,.0f}:1 ({size:,} bytes from {info.compress_size:,}), over the limit "
                f"of {MAX_RATIO:g}:1 (a zip bomb?; trls_core.data.archive.MAX_RATIO)"
            )
        total += size
        if total > MAX_TOTAL_BYTES:
            raise DataError(
                f"{where}: the members up to this one inflate to {total:,} bytes, over the cap of "
                f"{MAX_TOTAL_BYTES:,} (trls_core.data.archive.MAX_TOTAL_BYTES)"
            )
