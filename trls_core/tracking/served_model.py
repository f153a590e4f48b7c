"""The registered model: raw signal windows -> embeddings, as an MLflow pyfunc model.

:class:`EncoderModel` rebuilds the exact preprocessing of the DVC
spectrogram stage (:class:`~trls_core.spectrogram.SpectrogramTransform` +
train-split normaliser statistics) in front of the encoder. Weights and
statistics travel as safetensors artifacts, never as pickled tensors;
:data:`MODEL_CODE` is the models-from-code script logged with each version.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import torch

__all__ = ["MODEL_CODE", "EncoderModel", "transform_from_meta"]

SCORING_SERVER_ENV = "__pyfunc_model_path__"  # set by mlflow's scoring server (mlflow.pyfunc.scoring_server)


def transform_from_meta(meta: Mapping[str, Any], stats: Mapping[str, torch.Tensor] | None):
    """The stage's preprocessing from ``meta.json``: a :class:`SpectrogramTransform`."""
    from trls_core.spectrogram import CONFIG_KEYS, SpectrogramTransform

    stft = dict(meta.get("stft") or {})
    if not stft:
        raise ValueError("meta.json has no 'stft' section: cannot rebuild the preprocessing")
    mode = stft.pop("normalisation", None) or meta.get("normalisation") or "train_per_freq"
    allowed = set(CONFIG_KEYS) - {"norm_mode"}  # the mode comes from `normalisation` above
    cfg = {k: v for k, v in stft.items() if k in allowed}
    cfg["norm_mode"] = mode
    return SpectrogramTransform.from_config(cfg, stats=dict(stats or {}) or None)


class EncoderModel(mlflow.pyfunc.PythonModel):
    """pyfunc model: raw windows (B, C, L) float32 -> embeddings (B, R) float32.

    Exactly the shape of the logged signature, ``(-1, C, L)``: a single-channel
    batch needs its channel axis too (``x[:, None, :]``). A wrong shape fails
    naming the expected and the received shape (never the data).

    Holds nothing when pickled: ``load_context`` rebuilds the encoder from
    ``encoder.safetensors`` + ``encoder.json`` and the preprocessing from
    ``meta.json`` + ``normaliser.safetensors`` (all model artifacts).
    """

    batch_size = 256

    def load_context(self, context: Any) -> None:
        from safetensors.torch import load_file

        from trls_core.models.loading import load_encoder

        arts = context.artifacts
        weights, config = Path(arts["encoder_weights"]), Path(arts["encoder_config"])
        if weights.parent == config.parent and weights.name == "encoder.safetensors" and config.name == "encoder.json":
            encoder, info = load_encoder(weights.parent)
        else:  # artifacts were renamed/split: stage them the way load_encoder expects
            with tempfile.TemporaryDirectory(prefix="trls-encoder-") as tmp:
                shutil.copyfile(weights, Path(tmp) / "encoder.safetensors")
                shutil.copyfile(config, Path(tmp) / "encoder.json")
                encoder, info = load_encoder(Path(tmp))
        meta = json.loads(Path(arts["meta"]).read_text())
        norm = arts.get("normaliser")
        stats = load_file(str(norm)) if norm and Path(norm).is_file() else {}
        if os.environ.get(SCORING_SERVER_ENV):
            # In `mlflow models serve`'s process only: mlflow's error for a payload that misses the
            # signature starts with the payload itself ("Failed to predict data '<array>'"), in full
            # below numpy's summary threshold (2 Bonn windows: 8 kB). Summarise arrays there, so the
            # expected and received shapes at the end of the message are readable.
            np.set_printoptions(threshold=32, edgeitems=2, precision=3)
        self._transform = transform_from_meta(meta, stats).eval()
        self._encoder = encoder.eval()
        self._in_channels = int(info["config"]["in_channels"])
        self._n_samples = int(meta.get("n_samples") or info["config"].get("n_samples") or 0) or None
        self._rep_dim = int(getattr(encoder, "out_dim", 0) or info["config"]["kwargs"].get("rep_dim", 0))
        fs = meta.get("fs") or info["config"].get("fs")
        self._input_spec = {
            "dataset": meta.get("dataset"),
            "channels": self._in_channels,
            "n_samples": self._n_samples,
            "fs": float(fs) if fs else None,
            "channel_names": meta.get("channel_names"),
            "embedding_dim": self._rep_dim,
        }

    @property
    def input_spec(self) -> dict[str, Any]:
        """One input window (``channels``, ``n_samples``, ``fs`` in Hz, ``channel_names``) and ``embedding_dim``."""
        return dict(self._input_spec)

    def check_shape(self, shape: tuple[int, ...]) -> None:
        """Raise ValueError naming the expected and the received shape when ``shape`` is not (B, C, L)."""
        want = f"(B, {self._in_channels}, {self._n_samples or 'L'})"
        if len(shape) != 3 or shape[1] != self._in_channels or (self._n_samples and shape[2] != self._n_samples):
            hint = ""
            if len(shape) == 2 and self._in_channels == 1:
                hint = "; add the channel axis (x[:, None, :])"
            elif len(shape) == 3 and shape[1] != self._in_channels:
                hint = f"; {shape[1]} channel(s) where the model takes {self._in_channels}"
            elif len(shape) == 3:
                hint = f"; windows of {shape[2]} samples where the model takes {self._n_samples}"
            raise ValueError(f"EncoderModel: expected raw windows of shape {want}, got {tuple(shape)}{hint}")

    # np.ndarray is a hint mlflow accepts without deriving a schema from it, so
    # the tensor signature given at logging time is the one enforced.
    def predict(self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None) -> np.ndarray:
        x = np.asarray(model_input, dtype=np.float32)
        self.check_shape(x.shape)
        if not np.isfinite(x).all():
            raise ValueError(f"EncoderModel: input has {int((~np.isfinite(x)).sum())} NaN/inf sample(s)")
        if len(x) == 0:
            return np.zeros((0, self._rep_dim), dtype=np.float32)
        outs = []
        with torch.inference_mode():
            for i in range(0, len(x), self.batch_size):
                # a copy per batch: the input may be read-only (Arrow-backed), which torch warns about
                raw = torch.from_numpy(np.array(x[i : i + self.batch_size], dtype=np.float32, order="C"))
                outs.append(self._encoder(self._transform(raw)))
        return torch.cat(outs).cpu().numpy().astype(np.float32, copy=False)


#: The models-from-code script logged with every registered encoder (MLflow runs it on load;
#: ``trls_core`` travels with the model as code_paths).
MODEL_CODE = '''"""TRLS encoder for MLflow (models from code): raw windows -> embeddings."""
import mlflow

from trls_core.tracking import EncoderModel

mlflow.models.set_model(EncoderModel())
'''
