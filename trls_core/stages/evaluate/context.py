"""What every unit of one evaluation needs: data splits, class names, device, encoders, unit fingerprints."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trls_core.config import Params
from trls_core.data.tensors import load_meta, load_records, load_split, task_info
from trls_core.errors import DataError
from trls_core.evaluate import embed as embed_windows
from trls_core.evaluate.memo import Memo, array_digest, memoised
from trls_core.io import sha256_file
from trls_core.models.loading import WEIGHTS_SHA_KEY, build_encoder_from_params, load_encoder
from trls_core.paths import model_dir, spectrogram_dir
from trls_core.protocol import Unit
from trls_core.runtime import resolve_device
from trls_core.stages.evaluate.budget import apply_budget, evaluation_budget
from trls_core.stages.evaluate.preconditions import check_splits

logger = logging.getLogger(__name__)

__all__ = ["UNIT_SCHEMA", "EvalContext", "check_transfer", "load_context", "pretrain_seed_for"]

UNIT_SCHEMA = 2  # 2: challenge_f1 / record-level scores in unit results


#: Frozen features computed in this process (trls_core.evaluate.memo): every unit of a pretraining seed, and the
#: pipeline's second task, embed the same splits with the same encoder. Bounded by bytes.
_EMBEDDINGS = Memo(max_bytes=256 * 2**20)

#: What an encoder's input must share with the data it embeds (the normaliser is fitted per dataset).
_TRANSFER_STFT_KEYS = ("n_fft", "hop", "win_length", "window", "center", "log_eps", "fmax_bin")


def check_transfer(encoder_json: Path, meta: dict[str, Any], meta_path: Path) -> None:
    """Fail, naming the setting and both files, when data cannot feed a pretrained encoder.

    The encoder records its preprocessing (``encoder.json``: channels, rate,
    STFT settings). A target dataset at another rate or with other STFT
    settings would give spectrograms whose rows mean other frequencies: the
    fix is the target's own ``<dataset>.parquet.target_fs`` (resample) and
    ``<dataset>.spectrogram`` settings, which the message names. Window
    length may differ: the TFRNN pools over time, so a shorter window gives
    fewer frames, not other features.
    """
    try:
        cfg = json.loads(encoder_json.read_text())["config"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{encoder_json}: unreadable encoder config ({exc}); rerun `trls pretrain`") from None
    ds = meta.get("dataset", "?")
    problems = []
    if int(cfg.get("in_channels", -1)) != int(meta.get("n_channels", -2)):
        problems.append(
            f"channels: the encoder reads {cfg.get('in_channels')}, the data has "
            f"{meta.get('n_channels')} (set {ds}.parquet.channels)"
        )
    if cfg.get("fs") is not None and meta.get("fs") is not None and float(cfg["fs"]) != float(meta["fs"]):
        problems.append(
            f"rate: the encoder was trained at {cfg['fs']:g} Hz, the data is at {float(meta['fs']):g} Hz "
            f"(set {ds}.parquet.target_fs: {cfg['fs']:g})"
        )
    enc_stft, data_stft = cfg.get("stft") or {}, meta.get("stft") or {}
    diff = {
        k: (enc_stft.get(k), data_stft.get(k))
        for k in _TRANSFER_STFT_KEYS
        if enc_stft and enc_stft.get(k) != data_stft.get(k)
    }
    if diff:
        problems.append(
            "spectrogram: "
            + ", ".join(f"{ds}.spectrogram.{k} is {d!r}, the encoder's is {e!r}" for k, (e, d) in diff.items())
        )
    if problems:
        raise DataError(f"cannot embed {meta_path} with the encoder of {encoder_json}: " + "; ".join(problems))


def pretrain_seed_for(params: Params, seed: int) -> int:
    """Evaluation seed i uses pretraining seed ``pretrain.seeds[i mod K]``.

    With K pretraining runs the spread over evaluation seeds then includes
    the spread over pretraining runs.
    """
    ev, pp = params.evaluate, params.pretrain
    return pp.seeds[ev.seeds.index(seed) % len(pp.seeds)]


@dataclass
class EvalContext:
    """What every unit of one evaluation needs, loaded once per process.

    Encoders are loaded lazily: a fine-tuning unit of seed 3 loads only
    seed 3's pretraining run.
    """

    root: Path
    params: Params
    meta: dict[str, Any]
    class_names: list[str]
    data: dict[str, Any]
    device: str
    _encoders: dict[int, tuple[nn.Module, str]]
    score_classes: list[str] | None = None  # the task's own F1 subset (CinC 2017: N, A, O)
    test_records: np.ndarray | None = None  # record index of each test window, when the data has them
    records: dict[str, np.ndarray] | None = None  # record of each window per split (evaluate.level: record)
    _identity: dict[int, tuple[Any, tuple[Any, ...]]] = field(default_factory=dict)  # id -> (object, what it is)

    @property
    def select_classes(self) -> list[str] | None:
        """The classes whose mean F1 chooses C and the fine-tuning epoch (None: macro-F1 over all)."""
        if self.params.evaluate.select_by == "task_score" and self.score_classes:
            return list(self.score_classes)
        return None

    @property
    def in_channels(self) -> int:
        return int(self.data["x_train"].shape[1])

    def _load(self, pretrain_seed: int) -> tuple[nn.Module, str]:
        if pretrain_seed not in self._encoders:
            mdir = model_dir(self.root, self.params.pretrain.dataset, self.params.model.encoder, pretrain_seed)
            enc, info = load_encoder(mdir)  # checked against the digest encoder.json records
            sha = info[WEIGHTS_SHA_KEY]  # the file's sha256, as hashed for the check
            self._encoders[pretrain_seed] = (enc, sha)
            # the weights file and its config (encoder.json beside it) decide the module
            self._remember(enc, ("pretrained", str(mdir.resolve()), sha, sha256_file(mdir / "encoder.json")))
        return self._encoders[pretrain_seed]

    def _remember(self, obj: Any, what: tuple[Any, ...]) -> None:
        self._identity[id(obj)] = (obj, what)  # holds obj, so its id is never reused while remembered

    def _what(self, obj: Any) -> tuple[Any, ...] | None:
        entry = self._identity.get(id(obj))
        return entry[1] if entry is not None and entry[0] is obj else None

    def embed(
        self, encoder: nn.Module, x: torch.Tensor, batch_size: int = 512, device: str | torch.device | None = None
    ) -> np.ndarray:
        """``embed(encoder, x, batch_size, device)``, computed once per process for this context's encoders.

        A pretrained encoder (:meth:`encoder`) or a random one
        (:meth:`random_encoder`) is identified by what determines it (the
        weights file's digest and config; the model settings, channels and
        seed), ``x`` by its content, and the thread count is part of the key,
        so a hit returns the very numbers the computation would give (a
        read-only array). Other modules are embedded as usual.
        """
        device = self.device if device is None else device
        what = self._what(encoder)
        if what is None:
            return embed_windows(encoder, x, batch_size, device)
        x_id = self._what(x)
        if x_id is None:
            x_id = ("content", array_digest(x))
            if any(x is v for v in self.data.values()):  # the splits live as long as the context: hash once
                self._remember(x, x_id)
        key = ("embed", what, x_id, int(batch_size), str(device), torch.get_num_threads())
        with memoised():  # explicit here: calling this method is the opt-in
            return _EMBEDDINGS.get_or_compute(key, lambda: embed_windows(encoder, x, batch_size, device))

    def encoder(self, seed: int) -> nn.Module:
        """The pretrained encoder evaluation seed ``seed`` uses."""
        return self._load(pretrain_seed_for(self.params, seed))[0]

    def encoder_sha256(self, seed: int) -> str:
        """Digest of the weights evaluation seed ``seed`` scores (the sha256 its units' fingerprints hash)."""
        return self._load(pretrain_seed_for(self.params, seed))[1]

    def random_encoder(self, seed: int) -> nn.Module:
        """The same architecture, untrained, initialised from ``seed`` (the random-encoder control)."""
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            enc = build_encoder_from_params(self.params, self.in_channels).eval()
        model = json.dumps(self.params.model.model_dump(mode="json"), sort_keys=True)
        self._remember(enc, ("random", model, self.in_channels, int(seed), torch.__version__))
        return enc

    def fingerprint(self, unit: Unit) -> str:
        """Hash of everything that determines the unit's result (not device/threads)."""
        ev = self.params.evaluate
        blob: dict[str, Any] = {
            "schema": UNIT_SCHEMA,
            "unit": list(unit),
            "task": ev.task,
            "c_grid": list(ev.c_grid),
            "data": {
                "parquet_sha256": self.meta.get("parquet_sha256"),
                "stft": self.meta.get("stft"),
                "normalisation": self.meta.get("normalisation"),
            },
        }
        if unit.method in ("linear_probe", "finetune"):
            blob["encoder_sha256"] = self.encoder_sha256(unit.seed)
        if unit.method == "finetune":
            blob["finetune"] = ev.finetune.model_dump()
            for key, default in (("loss", "window"), ("batch_norm", "train"), ("head_norm", "folded")):
                if blob["finetune"][key] == default:  # only when set, so results stored before it stay current
                    del blob["finetune"][key]
        if unit.method == "random_encoder_linear":
            blob["model"] = self.params.model.model_dump()
        budget = evaluation_budget(ev)
        if budget:  # only when set, so results stored without a budget stay current
            blob["budget"] = budget
        if self.select_classes:
            # only when it differs from macro-F1: results of tasks without score classes stay current
            blob["select_classes"] = self.select_classes
        if ev.level != "window":  # only when set, so window-level results stay current
            blob["level"] = ev.level
        return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_context(root: Path, params: Params) -> EvalContext:
    """Data splits, class names and device for ``params.evaluate``; fails naming what is missing."""
    ev, pp = params.evaluate, params.pretrain
    if ev.dataset != pp.dataset:
        logger.warning("evaluate.dataset %r differs from pretrain.dataset %r", ev.dataset, pp.dataset)
    if pp.threads:
        torch.set_num_threads(pp.threads)
    sdir = spectrogram_dir(root, ev.dataset)
    meta = load_meta(sdir)
    class_names = list(task_info(meta, ev.task)["classes"])
    from trls_core.ssl.factory import input_kind

    if input_kind(params) == "raw":  # raw-input baselines: the same windows, order and labels
        from trls_core.data.raw import load_raw_splits

        splits = load_raw_splits(root, ev.dataset, ev.task)
    else:
        splits = {s: load_split(sdir, s, ev.task) for s in ("train", "val", "test")}
    data = apply_budget({f"{k}_{s}": getattr(splits[s], k) for s in splits for k in ("x", "y")}, ev)
    check_splits(data, class_names, sdir, ev.dataset, ev.task)
    if pp.dataset != ev.dataset and input_kind(params) != "raw":
        enc_json = model_dir(root, pp.dataset, params.model.encoder, pp.seeds[0]) / "encoder.json"
        if not enc_json.is_file():
            raise DataError(f"{enc_json} not found: pretrain on {pp.dataset!r} first (`trls pretrain`)")
        check_transfer(enc_json, meta, sdir / "meta.json")
    test_records = load_records(sdir, "test")[0].numpy() if meta.get("records") else None
    records = None
    if ev.level == "record":
        if not meta.get("records"):
            raise DataError(
                f"{sdir / 'meta.json'}: evaluate.level is 'record' but dataset {ev.dataset!r} has no "
                "record ids (records.json); use evaluate.level: window"
            )
        records = {s: load_records(sdir, s)[0].numpy() for s in ("train", "val", "test")}
        for s, r in records.items():
            if len(r) != len(data[f"y_{s}"]):
                raise DataError(
                    f"{sdir / (s + '.safetensors')}: {len(r)} record ids for {len(data[f'y_{s}'])} "
                    "windows (field 'record_idx'); rebuild the spectrograms (`dvc repro`)"
                )
    return EvalContext(
        root,
        params,
        meta,
        class_names,
        data,
        resolve_device(ev.device),
        {},
        score_classes=task_info(meta, ev.task).get("score_classes"),
        test_records=test_records,
        records=records,
    )
