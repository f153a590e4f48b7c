"""Pinned digests of a dataset's official files, and what a fetch does when its files differ.

Two pins per dataset, both in params.yaml ``<dataset>.fetch``:

- ``sha256``: each official file's bytes, checked by
  :func:`~trls_core.data.download.download` as it streams. A mirror may hold
  a re-zipped copy (other bytes, same data), so a mirror's file is only
  compared and logged: a match says so, a difference is a warning.
- ``content_sha256``: the plugin's ``content_digest`` of the *parsed* data,
  equal for any packing of the same data. It is what a re-zipped mirror and
  the official download share, so it is pinned from the mirrored copy. A
  download whose content differs fails (it is not the data this project was
  validated on); a mirror whose content differs is a warning, as a mirror
  may deliberately hold other data (a subset, a test copy).

``None`` for either pin means not pinned: the file is then checked by its
parsed content only (record counts, every member read), and the log says so.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from trls_core.errors import ConfigError, DataError

__all__ = ["check_content", "check_mirror_file", "check_pin_names", "pinned"]

logger = logging.getLogger(__name__)


def check_pin_names(pins: Mapping[str, str | None], files: Iterable[str], setting: str) -> None:
    """Fail naming the key when ``pins`` names a file the plugin does not fetch (a typo would pin nothing)."""
    known = set(files)
    for name in pins:
        if name not in known:
            raise ConfigError(
                f"{setting}.sha256.{name}: not a file this dataset fetches (files: {', '.join(sorted(known))})"
            )


def pinned(pins: Mapping[str, str | None], name: str) -> str | None:
    """The pinned sha256 of file ``name`` (lower case), or None."""
    value = pins.get(name)
    return value.lower() if value else None


def check_mirror_file(origin: str, actual: str, pin: str | None, setting: str) -> None:
    """Log how a mirror's file compares with its pin; never fails (the parsed content is what is checked)."""
    if pin is None:
        logger.info("%s: no pinned sha256 (%s.sha256): checked by its parsed content", origin, setting)
    elif actual == pin:
        logger.info("%s: sha256 matches the pinned official file", origin)
    else:
        logger.warning(
            "%s: sha256 %s differs from the pinned official %s (%s.sha256): a re-zipped copy? "
            "checked by its parsed content",
            origin,
            actual,
            pin,
            setting,
        )


def check_content(origin: str, actual: str, pin: str | None, setting: str, *, downloaded: bool) -> None:
    """Compare the parsed content's digest with ``content_sha256``: a downloaded mismatch fails, a mirror's warns."""
    if pin is None:
        logger.info("%s: no pinned content digest (%s.content_sha256)", origin, setting)
        return
    if actual == pin.lower():
        logger.info("%s: parsed content matches the pinned digest %s", origin, actual[:16])
        return
    if downloaded:
        raise DataError(
            f"{origin}: parsed content digest {actual} differs from the pinned {pin.lower()} "
            f"({setting}.content_sha256): not the data this project was validated on. If the source published "
            f"a new version on purpose, check it and update the pin (null: not pinned)"
        )
    logger.warning(
        "%s: parsed content digest %s differs from the pinned official %s (%s.content_sha256): this mirror holds "
        "other data than the official release; results from it are not comparable",
        origin,
        actual,
        pin.lower(),
        setting,
    )
