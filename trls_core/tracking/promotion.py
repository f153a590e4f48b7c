"""Promotion: a registered version becomes ``champion`` only if it beats the champion on the SAME test split.

Within one registered model name (``trls-<dataset>-encoder``: one name per
dataset), so an encoder of one dataset is never weighed against another's.
Every decision leaves a human-readable reason on the model version.

Concurrency: the read (champion and its score) -> compare -> write (alias)
is one compare-and-set under a file lock (:func:`promotion_lock_path`), so
promotions that run at once (two pipelines of two checkouts sharing a store,
a scheduled run next to a manual one) end with the highest score as
champion whatever their order. Why a file lock and not MLflow itself: the
registry has no conditional write (``set_registered_model_alias`` is
last-writer-wins, tags have no version check), so tags or aliases cannot
make a compare-and-set; the embedded stores are files, and an ``flock``
beside them serialises every process that uses the store on this machine
(and on a shared file system with working locks), and is released by the
kernel if a promoter dies. For a tracking server (http/https, databricks, a
database URL) there is no shared file: the lock is then per machine (the
temp folder, keyed by the URI as written, so ``http://localhost:5000`` and
``http://127.0.0.1:5000`` are two locks: write one spelling everywhere). It
serialises the promotions of every process on this host into that server;
MLflow itself does nothing against two hosts promoting at once (the last
alias write wins), so promotions into one server from several machines
must not overlap: run the registering pipeline (or its schedule, one run
at a time) on one machine, while the others only log runs.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from trls_core.locks import LOCK_DIR, hold
from trls_core.tracking.registry import CHALLENGER, CHAMPION, DIGEST_TAG, REASON_TAG, SCORE_TAG
from trls_core.tracking.store import default_uri, mlflow_client
from trls_core.tracking.values import as_float

logger = logging.getLogger(__name__)

__all__ = ["PROMOTION_WAIT_S", "promote_if_better", "promotion_lock_path"]

#: How long a promotion waits for another one to finish (each holds the lock for a few store calls).
PROMOTION_WAIT_S = 300.0


def promotion_lock_path(uri: str) -> Path:
    """The lock file that serialises promotions into the store at ``uri``.

    ``sqlite:///dir/mlflow.db`` -> ``dir/.trls/promotion-mlflow.db.lock``; a
    file store (``file:///dir/mlruns`` or a path) -> ``dir/.trls/promotion-mlruns.lock``
    (beside the store, never inside it: the file store reads its folders);
    any other URI (a server) -> ``<tmp>/trls-locks/promotion-<sha of URI>.lock``.
    """
    parsed = urlparse(uri)
    store: Path | None = None
    if parsed.scheme == "sqlite":
        database = unquote(uri.removeprefix("sqlite:///").split("?", 1)[0])  # SQLAlchemy: sqlite:///<database>
        if database and database != ":memory:" and uri.startswith("sqlite:///"):
            store = Path(database)  # sqlite:////abs/mlflow.db is absolute, sqlite:///mlflow.db relative to the cwd
    elif parsed.scheme == "file":
        store = Path(unquote(parsed.path))
    elif parsed.scheme == "" and uri:
        store = Path(uri)
    if store is not None:
        return store.expanduser().resolve().parent / LOCK_DIR / f"promotion-{store.name}.lock"
    key = hashlib.sha256(uri.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "trls-locks" / f"promotion-{key}.lock"


def promote_if_better(
    name: str,
    version: str,
    score: float,
    split_digest: str | None,
    *,
    root: Path | None = None,
) -> tuple[bool, str]:
    """Make ``version`` the champion iff it beats the champion on the same test split.

    - no champion yet -> promote;
    - champion evaluated on another split (``test_split_digest`` differs) ->
      keep it: the scores are not comparable;
    - else promote iff ``score`` > champion's ``test_macro_f1`` (ties keep
      the champion: a model must *beat* it).

    The score and digest are recorded on the version (if not yet there),
    the reason as its ``promotion_reason`` tag. ``root`` selects the store
    like :func:`tracking_uri`; without it: ``MLFLOW_TRACKING_URI`` (or a URI
    set with mlflow), else the store of this process's latest Tracker.
    ``split_digest=None`` uses the version's own tag.

    The whole read-compare-write holds :func:`promotion_lock_path`'s lock
    (waiting up to :data:`PROMOTION_WAIT_S` for another promotion, then a
    :class:`~trls_core.locks.LockHeld` naming it): concurrent promotions are
    applied one after another, so the highest score ends as champion.
    """
    uri = default_uri(root)
    with hold(promotion_lock_path(uri), f"promotion of {name} v{version}", wait=PROMOTION_WAIT_S):
        return _compare_and_set(mlflow_client(uri), name, str(version), score, split_digest)


def _compare_and_set(
    client: MlflowClient, name: str, version: str, score: float, split_digest: str | None
) -> tuple[bool, str]:
    """:func:`promote_if_better`'s decision and write; the caller holds the promotion lock."""
    mv = client.get_model_version(name, version)
    own_digest = mv.tags.get(DIGEST_TAG)
    if split_digest is None:
        split_digest = own_digest
    if not split_digest:
        raise ValueError(f"promote_if_better: {name} v{version} has no {DIGEST_TAG} and none was given")
    if own_digest and own_digest != split_digest:
        raise ValueError(
            f"promote_if_better: {name} v{version} is tagged {DIGEST_TAG}={own_digest}, "
            f"but was scored on split {split_digest}"
        )
    f = as_float(score)
    if not own_digest:
        client.set_model_version_tag(name, version, DIGEST_TAG, split_digest)
    if f is not None:
        client.set_model_version_tag(name, version, SCORE_TAG, repr(f))

    try:
        champ = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"):
            raise
        champ = None

    promote = False
    if f is None:
        reason = f"v{version}: score {score!r} is not a finite number; not promoted"
    elif champ is None:
        promote = True
        reason = f"v{version} promoted: no champion yet ({SCORE_TAG}={f:.4f})"
    elif str(champ.version) == version:
        reason = f"v{version} is already the champion"
    else:
        c_digest = champ.tags.get(DIGEST_TAG)
        c_score = as_float(_parse_float(champ.tags.get(SCORE_TAG)))
        if c_digest != split_digest:
            reason = (
                f"v{version} not compared: champion v{champ.version} was evaluated on another test split "
                f"({DIGEST_TAG} {c_digest} != {split_digest}); keeping the champion"
            )
        elif c_score is None:
            reason = (
                f"v{version} not promoted: champion v{champ.version} has no recorded {SCORE_TAG}; "
                "keeping the champion (promote by hand if intended)"
            )
        elif f > c_score:
            promote = True
            reason = (
                f"v{version} promoted: {SCORE_TAG} {f:.4f} > champion v{champ.version} {c_score:.4f}"
                f" on split {split_digest}"
            )
        else:
            reason = (
                f"v{version} not promoted: {SCORE_TAG} {f:.4f} <= champion v{champ.version} "
                f"{c_score:.4f} on split {split_digest}; v{version} stays {CHALLENGER}"
            )
    if promote:
        client.set_registered_model_alias(name, CHAMPION, version)
    client.set_model_version_tag(name, version, REASON_TAG, reason)
    logger.info("%s: %s", name, reason)
    return promote, reason


def _parse_float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None
