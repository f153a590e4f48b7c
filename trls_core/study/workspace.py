"""Where a study's variants read and write: shared stores keyed by fingerprint, one folder per variant.

Layout under the project root (``studies/`` is not tracked by git)::

    studies/_data/<dataset>-<key>/          spectrograms a variant's STFT settings need (built once)
    studies/_pretrain/<dataset>-<method>-<encoder>-<key>/models/...   encoders, one store per pretraining
    studies/<study>/<variant>/params.yaml   the variant's resolved params
    studies/<study>/<variant>/data/...      links to the project's (or a store's) data
    studies/<study>/<variant>/models        link to its pretraining store
    studies/<study>/<variant>/reports/...   its evaluation units, scored on held-out validation
    reports/studies/<study>.{csv,md}        the table

Why stores keyed by fingerprint: the pretraining step already skips a seed
whose stored encoder has the same fingerprint (``stages.pretrain.fingerprint``:
everything that determines the weights, seed aside here), so variants that
differ only in evaluation settings share one store and pretrain once, and a
rerun resumes; variants that change the weights get a store of their own
instead of overwriting each other's ``models/<dataset>/<encoder>_seed<S>``.
Spectrograms the project already built (DVC) are linked, never copied.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import yaml

from trls_core.errors import DataError
from trls_core.io import write_text
from trls_core.paths import parquet_dir, spectrogram_dir

__all__ = [
    "STUDIES",
    "ensure_spectrograms",
    "link_data",
    "params_note",
    "prepare_variant",
    "pretrain_store",
    "spectrogram_source",
    "table_files",
    "variant_workspace",
    "write_params",
]

STUDIES = "studies"


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _link(src: Path, link: Path) -> None:
    """``link`` -> ``src`` (re-pointed when it points elsewhere)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() and Path(os.readlink(link)) != src:
        link.unlink()
    if not link.exists() and not link.is_symlink():
        link.symlink_to(src, target_is_directory=True)


def _project_meta(root: Path, dataset: str) -> dict[str, Any]:
    path = spectrogram_dir(root, dataset) / "meta.json"
    if not path.is_file():
        raise DataError(f"{path} not found: build the data first (`dvc repro spectrogram@{dataset}`)")
    return json.loads(path.read_text())


def spectrogram_source(root: Path, params: Any, dataset: str) -> tuple[Path, bool]:
    """The spectrogram folder a variant reads and whether it is a study store (built here, not by DVC).

    The project's own folder when its ``meta.json`` was built with the
    variant's ``<dataset>.spectrogram`` settings; otherwise a store keyed by
    those settings and the Parquet digest.
    """
    meta = _project_meta(root, dataset)
    want = params.dataset(dataset).spectrogram.model_dump(mode="json")
    if meta.get("stft") == want:
        return spectrogram_dir(root, dataset), False
    key = _digest({"stft": want, "parquet_sha256": meta.get("parquet_sha256")})
    return spectrogram_dir(root / STUDIES / "_data" / f"{dataset}-{key}", dataset), True


def ensure_spectrograms(root: Path, params: Any, dataset: str) -> Path:
    """The variant's spectrograms, built by the project's spectrogram stage into a store when needed."""
    from trls_core.stages.spectrogram import build_spectrograms

    sdir, is_store = spectrogram_source(root, params, dataset)
    if not is_store:
        return sdir
    want = params.dataset(dataset).spectrogram.model_dump(mode="json")
    meta_path = sdir / "meta.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("stft") == want and meta.get("parquet_sha256") == _project_meta(root, dataset).get(
            "parquet_sha256"
        ):
            return sdir
    store = sdir.parents[2]  # <store>/data/spectrograms/<dataset>
    _link(parquet_dir(root, dataset).resolve(), parquet_dir(store, dataset))
    build_spectrograms(store, dataset, params)
    return sdir


def link_data(root: Path, workspace: Path, params: Any, datasets: list[str]) -> None:
    """``workspace/data/{spectrograms,parquet}/<dataset>`` -> the variant's spectrograms and the project's windows."""
    for ds in datasets:
        sdir, _ = spectrogram_source(root, params, ds)
        _link(sdir.resolve(), spectrogram_dir(workspace, ds))
        _link(parquet_dir(root, ds).resolve(), parquet_dir(workspace, ds))


def pretrain_store(root: Path, params: Any) -> Path:
    """The store of the variant's pretraining: keyed by the pretraining fingerprint (seed fixed at 0).

    Needs the variant's spectrograms (their ``meta.json`` enters the fingerprint).
    """
    from trls_core.data.tensors import load_meta
    from trls_core.stages.pretrain import fingerprint

    pp = params.pretrain
    sdir, _ = spectrogram_source(root, params, pp.dataset)
    key = fingerprint(params, 0, load_meta(sdir))[:12]
    return root / STUDIES / "_pretrain" / f"{pp.dataset}-{pp.method}-{params.model.encoder}-{key}"


def variant_workspace(root: Path, study: str, variant: str) -> Path:
    return root / STUDIES / study / variant


def params_note(study: str, variant: str) -> str:
    return f"written by `trls study` ({study}, variant {variant}): edit the overlay, not this file"


def write_params(workspace: Path, raw: dict[str, Any], note: str) -> Path:
    """``workspace/params.yaml`` (rewritten only when its content changes); returns its path."""
    path = workspace / "params.yaml"
    text = f"# {note}\n" + yaml.safe_dump(raw, sort_keys=False)
    if not path.is_file() or path.read_text() != text:
        write_text(path, text)
    return path


def prepare_variant(root: Path, study: str, variant: Any) -> tuple[Path, Path]:
    """The variant's workspace and its pretraining store, ready to run; returns ``(workspace, store)``.

    Writes both params files and links the data (the variant's spectrograms
    must exist: :func:`ensure_spectrograms`) and the workspace's ``models``
    to the store's. ``variant`` is a ``study.overlay.ResolvedVariant``.
    """
    params = variant.params
    note = params_note(study, variant.name)
    store = pretrain_store(root, params)
    (store / "models").mkdir(parents=True, exist_ok=True)
    # variants sharing the store share every setting its pretraining reads; the file is the latest's
    write_params(store, variant.raw, f"written by `trls study`: pretraining settings (latest: {study}/{variant.name})")
    link_data(root, store, params, [params.pretrain.dataset])
    ws = variant_workspace(root, study, variant.name)
    write_params(ws, variant.raw, note)
    link_data(root, ws, params, variant.datasets())
    _link((store / "models").resolve(), ws / "models")
    return ws, store


def table_files(root: Path, study: str) -> dict[str, Path]:
    base = root / "reports" / "studies"
    return {"csv": base / f"{study}.csv", "md": base / f"{study}.md"}
