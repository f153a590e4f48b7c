"""Assemble a pretraining method from params: the SSL module and its two views.

Every method shares one training loop (``trls_core.train.pretrain_encoder``:
``augment(x) -> (a, b)``, ``loss = model(a, b)``, step, ``update_target``),
so a method is only *which module* and *which views*:

============  ===========================  ==========================================
method        module                       views
============  ===========================  ==========================================
``byol``      ``BYOL`` (EMA target)        spectrogram: ``augment.view_a/view_b``;
                                           raw encoder: TS-TCC weak/strong
``simclr``    ``SimCLR`` (NT-Xent)         the same views as ``byol``
``ts_tcc``    ``TSTCC`` (temporal +        raw: TS-TCC weak/strong
              contextual contrasting)
``ts2vec``    ``TS2Vec`` (hierarchical     none: the module crops and masks itself
              contrastive)
``none``      nothing is trained           (supervised from scratch starts here)
============  ===========================  ==========================================

``build_views`` returns None for "no augmentation" (both views are the
batch itself), the loop's convention.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from trls_core.config import Params
from trls_core.errors import ConfigError

__all__ = ["build_ssl", "build_views", "input_kind", "views_fingerprint"]

_RAW_ONLY = {"ts_tcc": "tstcc", "ts2vec": "ts2vec"}


def input_kind(params: Params) -> str:
    """``"spectrogram"`` or ``"raw"``: what the configured encoder reads."""
    from trls_core.models import encoder_input

    return encoder_input(params.model.encoder)


def _check(params: Params) -> None:
    method, enc = params.pretrain.method, params.model.encoder
    need = _RAW_ONLY.get(method)
    if need is not None and enc != need:
        raise ConfigError(f"pretrain.method {method!r} needs model.encoder {need!r} (its own encoder), got {enc!r}")


def build_ssl(params: Params, encoder: nn.Module, rep_dim: int) -> nn.Module | None:
    """The SSL module around ``encoder`` for ``pretrain.method`` (None for ``none``)."""
    _check(params)
    pp, h = params.pretrain, params.model.heads
    if pp.method == "byol":
        from trls_core.ssl.byol import BYOL

        return BYOL(encoder, rep_dim, h.proj_hidden, h.proj_dim, h.pred_hidden)
    if pp.method == "simclr":
        from trls_core.ssl.simclr import SimCLR

        return SimCLR(encoder, rep_dim, h.proj_hidden, h.proj_dim, temperature=pp.temperature)
    if pp.method == "ts_tcc":
        from trls_core.ssl.ts_tcc import TSTCC

        return TSTCC(encoder, proj_dim=h.proj_dim, temperature=pp.temperature)
    if pp.method == "ts2vec":
        from trls_core.ssl.ts2vec import TS2Vec

        return TS2Vec(encoder, max_train_length=pp.max_train_length)
    return None


def build_views(params: Params) -> nn.Module | None:
    """The two views the method trains on; None = the batch itself twice."""
    _check(params)
    method = params.pretrain.method
    if method in ("ts2vec", "none"):
        return None
    if input_kind(params) == "raw":
        from trls_core.augment_raw import RawTwoViews

        return RawTwoViews(params.augment.raw.weak.model_dump(), params.augment.raw.strong.model_dump())
    from trls_core.augment import TwoViews

    view_a, view_b = params.augment.view_a, params.augment.view_b
    return TwoViews(view_a, view_b) if (view_a or view_b) else None


def views_fingerprint(params: Params) -> dict[str, Any]:
    """The augmentation settings that affect the weights (for the pretraining fingerprint)."""
    method = params.pretrain.method
    if method in ("ts2vec", "none"):
        return {}
    if input_kind(params) == "raw":
        return {"raw": params.augment.raw.model_dump()}
    view_a, view_b = params.augment.as_dicts()
    return {"view_a": [_hashed(op) for op in view_a], "view_b": [_hashed(op) for op in view_b]}


def _hashed(op: dict[str, Any]) -> dict[str, Any]:
    """An op as the fingerprint sees it: the masks' ``fill`` only when not ``zero``.

    ``fill`` was optional (zero) when the stored runs were hashed; leaving the
    zero fill out keeps their fingerprints, as ``positives`` does in
    ``stages.pretrain.fingerprint``.
    """
    return {k: v for k, v in op.items() if not (k == "fill" and v == "zero")}
