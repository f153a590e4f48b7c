"""Methods the ``compare`` flow runs through one protocol: the ``methods`` section of params.yaml.

A method is a name, a one-line description and *overrides* deep-merged over
the resolved params (after the profile). Every method then goes through the
same steps (pretraining, then the evaluation protocol with the same splits,
label fractions and seeds) in its own workspace, so the only difference
between two rows of the comparison is what the overrides change.

The TRLS ablations of docs/design.md §1.6 and the baselines are such
entries. A baseline is the same machinery with another ``pretrain.method``
(``trls_core.ssl.factory``: SimCLR, TS-TCC, TS2Vec, none) and, for the
raw-series methods, its own encoder; hyper-parameters the papers fix
(TS-TCC's lr 3e-4, TS2Vec's lr 1e-3) are taken from them, not tuned on our
test split. This module only reads and applies the registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trls_core.config import Params, deep_merge, resolve_params
from trls_core.errors import ConfigError

__all__ = ["Method", "get_method", "method_params", "methods"]


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    overrides: dict[str, Any] = field(default_factory=dict)


def methods(params: Params) -> dict[str, Method]:
    """Every method of the ``methods`` section, by name."""
    return {n: Method(n, m.description, dict(m.overrides)) for n, m in params.methods.items()}


def get_method(name: str, params: Params) -> Method:
    """The method ``name`` of ``params``; an unknown name fails listing the known ones."""
    known = methods(params)
    if name not in known:
        raise ConfigError(f"unknown method {name!r} (known: {', '.join(sorted(known))})")
    return known[name]


def method_params(
    raw: dict[str, Any], method: Method | str, profile: str | None = None, dataset: str | None = None
) -> dict[str, Any]:
    """The raw params for ``method``: the profile, ``compare.settings``, the dataset's, the method's overrides.

    ``method`` is a :class:`Method` or the name of one in ``raw``'s
    ``methods`` section. ``dataset`` (default: ``pretrain.dataset``) points
    pretraining and evaluation at that dataset and merges
    ``compare.datasets[dataset]`` (its task, a budget for its size) before
    the method's overrides. Returns a plain params dict (``profile`` pinned,
    ``profiles`` kept) that validates like ``params.yaml``; a bad override
    fails with its key.
    """
    base = resolve_params(raw, profile=profile)  # validates the file and picks the profile
    if isinstance(method, str):
        method = get_method(method, base)
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
    out = deep_merge(raw, (raw.get("profiles") or {}).get(profile) or {})
    out["profiles"] = {profile: {}}  # already applied: re-resolving must not merge it twice
    return out
