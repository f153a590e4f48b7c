"""What reading a damaged zip can raise besides ``BadZipFile``, so readers turn all of it into a named DataError.

Found by fuzzing the readers (bench/faults/fuzz.py): a member name flagged
UTF-8 that is not (``UnicodeDecodeError`` while the directory is read), an
unsupported compression method (``NotImplementedError``), an encrypted
member (``RuntimeError``), a deflate stream cut short (``zlib.error``,
``EOFError``), a directory entry pointing past the end (``OSError``).
"""

from __future__ import annotations

import zipfile
import zlib

__all__ = ["ZIP_READ_ERRORS"]

ZIP_READ_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    UnicodeDecodeError,
    NotImplementedError,
    RuntimeError,
    EOFError,
    OSError,
    zlib.error,
)
