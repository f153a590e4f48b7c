"""Methods the ``compare`` flow runs through one protocol: a pluggable registry.

A method is a name, a one-line description and *overrides* deep-merged over
the resolved ``params.yaml`` (after the profile). Every method then goes
through the same steps (pretraining, then the evaluation protocol with the
same splits, label fractions and seeds) in its own workspace, so the only
difference between two rows of the comparison is what the overrides change.

The TRLS ablations of DESIGN.md are such overrides and are registered here.
Baselines that need their own trainer (SimCLR, TS-TCC, TS2Vec, supervised)
plug in with :func:`register_method` once their trainers exist; nothing in
the flow needs to change for that.
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


def method_params(raw: dict[str, Any], method: Method, profile: str | None = None) -> dict[str, Any]:
    """The raw params for ``method``: the profile merged in, then the method's overrides.

    Returns a plain params dict (``profile`` pinned, ``profiles`` kept) that
    validates like ``params.yaml``; a bad override fails with its key.
    """
    from trls_core.config import deep_merge, resolve_params

    base = resolve_params(raw, profile=profile)  # validates the file and picks the profile
    merged = deep_merge(_profile_applied(raw, base.profile), method.overrides)
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
    Method("trls_no_aug", "ablation: no augmentation (both views are the spectrogram itself)",
           {"augment": {"view_a": [], "view_b": []}}),
    Method("trls_single_scale", "ablation: TFRNN representation from the last scale only",
           {"model": {"tfrnn": {"multiscale": False}}}),
    Method("trls_lstm", "ablation: LSTM instead of GRU in the TFRNN", {"model": {"tfrnn": {"rnn": "lstm"}}}),
    Method("trls_unidirectional", "ablation: unidirectional RNNs in the TFRNN",
           {"model": {"tfrnn": {"bidirectional": False}}}),
):
    register_method(_m)
