"""Methods the ``compare`` flow runs through one protocol: a pluggable registry.

A method is a name, a one-line description and *overrides* deep-merged over
the resolved ``params.yaml`` (after the profile). Every method then goes
through the same steps (pretraining, then the evaluation protocol with the
same splits, label fractions and seeds) in its own workspace, so the only
difference between two rows of the comparison is what the overrides change.

The TRLS ablations of docs/design.md §1.6 and the baselines are such overrides and
are registered here. A baseline is the same machinery with another
``pretrain.method`` (``trls_core.ssl.factory``: SimCLR, TS-TCC, TS2Vec,
none) and, for the raw-series methods, its own encoder; hyper-parameters
the papers fix (TS-TCC's lr 3e-4, TS2Vec's lr 1e-3) are taken from them,
not tuned on our test split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trls_core.errors import ConfigError

__all__ = ["Method", "METHODS", "get_method", "method_params", "register_method"]


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    overrides: dict[str, Any] = field(default_factory=dict)


METHODS: dict[str, Method] = {}


def register_method(method: Method, replace: bool = False) -> Method:
    """Add a method to the registry (``replace`` to redefine one)."""
    if not method.name or "/" in method.name or method.name.startswith("."):
        raise ConfigError(f"method name {method.name!r}: must be non-empty, without '/' or a leading '.'")
    if method.name in METHODS and not replace:
        raise ConfigError(f"method {method.name!r} is already registered")
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r} (known: {', '.join(sorted(METHODS))})") from None


def method_params(
    raw: dict[str, Any], method: Method, profile: str | None = None, dataset: str | None = None
) -> dict[str, Any]:
    """The raw params for ``method``: the profile, ``compare.settings``, the dataset's, the method's overrides.

    ``dataset`` (default: ``pretrain.dataset``) points pretraining and
    evaluation at that dataset and merges ``compare.datasets[dataset]``
    (its task, a budget for its size) before the method's overrides.
    Returns a plain params dict (``profile`` pinned, ``profiles`` kept) that
    validates like ``params.yaml``; a bad override fails with its key.
    """
    from trls_core.config import deep_merge, resolve_params

    base = resolve_params(raw, profile=profile)  # validates the file and picks the profile
    merged = deep_merge(_profile_applied(raw, base.profile), base.compare.settings)
    if dataset is not None:
        base.dataset(dataset)  # an unknown name fails here, listing the known ones
        merged = deep_merge(merged, {"pretrain": {"dataset": dataset}, "evaluate": {"dataset": dataset}})
    ds = dataset or base.pretrain.dataset
    merged = deep_merge(merged, base.compare.datasets.get(ds) or {})
    merged = deep_merge(merged, method.overrides)
    merged["profile"] = base.profile
    resolve_params(merged, profile=base.profile, source=f"params.yaml + method {method.name!r}")
    return merged


def _profile_applied(raw: dict[str, Any], profile: str) -> dict[str, Any]:
    from trls_core.config import deep_merge

    out = deep_merge(raw, (raw.get("profiles") or {}).get(profile) or {})
    out["profiles"] = {profile: {}}  # already applied: re-resolving must not merge it twice
    return out


_TRLS = "BYOL on two augmented spectrogram views, multi-scale TFRNN (the params as given)"
for _m in (
    Method("trls", _TRLS),
    Method("trls_cnn", "ablation: the CNN encoder instead of TFRNN", {"model": {"encoder": "cnn"}}),
    Method(
        "trls_no_aug",
        "ablation: no augmentation (both views are the spectrogram itself)",
        {"augment": {"view_a": [], "view_b": []}},
    ),
    Method(
        "trls_single_scale",
        "ablation: TFRNN representation from the last scale only",
        {"model": {"tfrnn": {"multiscale": False}}},
    ),
    Method("trls_lstm", "ablation: LSTM instead of GRU in the TFRNN", {"model": {"tfrnn": {"rnn": "lstm"}}}),
    Method(
        "trls_unidirectional",
        "ablation: unidirectional RNNs in the TFRNN",
        {"model": {"tfrnn": {"bidirectional": False}}},
    ),
    # baselines (issue: "Baselines and ablations through one protocol")
    Method(
        "supervised_tfrnn",
        "baseline: no pretraining; the TFRNN trained from scratch on the labels "
        "(fine-tuning with encoder lr = head lr)",
        {"pretrain": {"method": "none"}, "evaluate": {"finetune": {"encoder_lr": 1.0e-3}}},
    ),
    Method(
        "supervised_cnn",
        "baseline: no pretraining; the CNN encoder trained from scratch on the labels",
        {"model": {"encoder": "cnn"}, "pretrain": {"method": "none"}, "evaluate": {"finetune": {"encoder_lr": 1.0e-3}}},
    ),
    Method(
        "simclr",
        "baseline: SimCLR (NT-Xent, negatives) on the same spectrogram views and TFRNN",
        {"pretrain": {"method": "simclr"}},
    ),
    Method(
        "ts_tcc",
        "baseline: TS-TCC on raw windows (conv encoder, weak/strong views, temporal + contextual contrasting)",
        {"model": {"encoder": "tstcc"}, "pretrain": {"method": "ts_tcc", "lr": 3.0e-4}},
    ),
    Method(
        "ts2vec",
        "baseline: TS2Vec on raw windows (dilated conv encoder, hierarchical contrastive loss, "
        "max-pooled instance representation)",
        {"model": {"encoder": "ts2vec"}, "pretrain": {"method": "ts2vec", "lr": 1.0e-3}},
    ),
    Method(
        "byol_raw",
        "baseline: BYOL on the raw time series (conv encoder, TS-TCC's views; no spectrogram)",
        {"model": {"encoder": "timeconv"}},
    ),
):
    register_method(_m)
