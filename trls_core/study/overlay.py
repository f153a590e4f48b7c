"""The study overlay: ``experiments/<name>.yaml`` -> named variants -> validated params.

Format (every key but ``score`` is optional; an unknown key is an error
naming the file and the key)::

    description: what the study asks, and what it cannot express
    base:                          # applied to every variant
      profile: small               # a profile of params.yaml (default: as for every command)
      overrides:                   # dotted keys (`--set` style) or nested dicts
        pretrain.epochs: 20
        model.tfrnn: {dim: 32, depth: 3}
    seeds: [0, 1, 2]               # pretrain.seeds and evaluate.seeds of every variant
    score:
      metric: linear_probe.macro_f1   # <group>.<metric>: linear_probe | finetune.<fraction> |
                                      # controls.<control>; accuracy, macro_f1, challenge_f1, ...
      tasks: [binary, five_set]    # default: evaluate.task; the first task ranks the variants
      select_fraction: 0.5         # share of validation that picks C and the epoch (see holdout)
    variants:                      # named overrides (default: one variant, `base`)
      lr3e-3: {pretrain.lr: 3.0e-3}
    grid:                          # crossed with the variants
      pretrain.epochs: [10, 20]    # a value axis: names `epochs=10`, ...
      views:                       # a named axis: each entry is a set of overrides
        strong: {}
        mild: {augment.view_a: [...]}

A variant's params: params.yaml -> profile -> ``base.overrides`` -> ``seeds``
-> the variant's overrides -> its grid point -> command-line ``--set``,
validated by the project's own settings models. Variants may change a
dataset's ``spectrogram`` section (the study builds those spectrograms) but
not its ``parquet`` section (the windows are DVC's data).
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from trls_core.config import Params, deep_merge, flatten, parse_overrides, resolve_params
from trls_core.errors import ConfigError

__all__ = ["ResolvedVariant", "Study", "Variant", "load_study", "nest", "parse_metric"]

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=+-]{0,99}$")
GROUPS = ("linear_probe", "finetune", "controls")
CONTROL_NAMES = ("spectrogram_linear", "random_encoder_linear")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BaseSpec(_Strict):
    profile: str | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)


class ScoreSpec(_Strict):
    metric: str
    tasks: list[str] | None = None
    select_fraction: float = Field(0.5, gt=0, lt=1)

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        parse_metric(v)
        return v

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and (not v or len(set(v)) != len(v)):
            raise ValueError(f"tasks must be a non-empty list without duplicates, got {v}")
        return v


class Overlay(_Strict):
    description: str = ""
    base: BaseSpec = BaseSpec()
    seeds: list[int] | None = None
    score: ScoreSpec
    variants: dict[str, dict[str, Any] | None] = Field(default_factory=dict)
    grid: dict[str, list[Any] | dict[str, dict[str, Any] | None]] = Field(default_factory=dict)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or len(set(v)) != len(v)):
            raise ValueError(f"seeds must be a non-empty list without duplicates, got {v}")
        return v


_KNOWN = {"": Overlay, "base": BaseSpec, "score": ScoreSpec}


def parse_metric(metric: str) -> tuple[tuple[str, ...], str]:
    """``finetune.0.1.challenge_f1`` -> ``(("finetune", "0.1"), "challenge_f1")``; a bad name is a ValueError."""
    from trls_core.evaluate import fraction_key
    from trls_core.metrics import DEFAULT_KEYS, EXTRA_KEYS

    where, _, name = metric.rpartition(".")
    known = (*DEFAULT_KEYS, *EXTRA_KEYS)
    if name not in known:
        raise ValueError(f"metric {metric!r}: {name!r} is not a metric (known: {', '.join(known)})")
    group, _, rest = where.partition(".")
    if group == "linear_probe" and not rest:
        return ("linear_probe",), name
    if group == "controls" and rest in CONTROL_NAMES:
        return ("controls", rest), name
    if group == "finetune" and rest:
        try:
            return ("finetune", fraction_key(float(rest))), name
        except ValueError:
            pass
    raise ValueError(
        f"metric {metric!r}: expected <group>.<metric> with group linear_probe, finetune.<fraction> "
        f"or controls.<{'|'.join(CONTROL_NAMES)}>"
    )


def nest(overrides: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Dotted overrides ``{"model.tfrnn.dim": 32}`` -> ``{"model": {"tfrnn": {"dim": 32}}}``, merged in order."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        parts = str(key).split(".")
        if any(not p.strip() for p in parts):
            raise ConfigError(f"{where}: key {key!r} is not a dotted path such as pretrain.epochs")
        node: Any = value
        for p in reversed(parts):
            node = {p: node}
        out = deep_merge(out, node)
    return out


@dataclass(frozen=True)
class Variant:
    """One named point of the study: its own overrides (dotted keys as written, variant then grid point)."""

    name: str
    overrides: dict[str, Any]


@dataclass(frozen=True)
class ResolvedVariant:
    """A variant with its full params: ``raw`` (profile applied and pinned) is what its workspace's
    params.yaml holds, ``params`` the validated settings."""

    variant: Variant
    raw: dict[str, Any]
    params: Params
    tasks: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.variant.name

    def datasets(self) -> list[str]:
        """The datasets the variant reads: where it pretrains, then where it is evaluated."""
        return list(dict.fromkeys([self.params.pretrain.dataset, self.params.evaluate.dataset]))


def _describe(err: ValidationError, path: Path) -> str:
    lines = [f"{path}: invalid study overlay:"]
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        key = ".".join(loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            model = _KNOWN.get(".".join(loc[:-1]))
            known = f" (known here: {', '.join(model.model_fields)})" if model else ""
            lines.append(f"  unknown key {key!r}{known}")
        else:
            lines.append(f"  {key}: {e['msg']}")
    return "\n".join(lines)


def _label(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return yaml.safe_dump(value).split("\n")[0]
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "x".join(_label(v) for v in value)
    if isinstance(value, dict):
        raise ConfigError("a dict is not a grid value: use a named axis (`axis: {name: {overrides}}`)")
    return str(value)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "-", text).strip("-") or "variant"


def _axis(key: str, values: list[Any] | dict[str, Any], where: str) -> list[tuple[str, dict[str, Any]]]:
    """One grid axis as ``[(label, dotted overrides)]``."""
    if isinstance(values, dict):
        return [(str(label), dict(over or {})) for label, over in values.items()]
    if not values:
        raise ConfigError(f"{where}: grid axis {key!r} has no values")
    try:
        return [(f"{key.rsplit('.', 1)[-1]}={_label(v)}", {key: v}) for v in values]
    except ConfigError as exc:
        raise ConfigError(f"{where}: grid axis {key!r}: {exc}") from None


def _expand(ov: Overlay, path: Path) -> list[Variant]:
    base = [(name, dict(over or {})) for name, over in ov.variants.items()] or [("base", {})]
    axes = [_axis(k, v, str(path)) for k, v in ov.grid.items()]
    out: list[Variant] = []
    for (vname, vover), point in itertools.product(base, itertools.product(*axes)):
        parts = ([vname] if ov.variants or not axes else []) + [label for label, _ in point]
        over = dict(vover)
        for _, o in point:
            over.update(o)
        out.append(Variant(_slug("+".join(parts)), over))
    names = [v.name for v in out]
    for v in out:
        if not NAME_RE.match(v.name):
            raise ConfigError(f"{path}: variant name {v.name!r}: use letters, digits and _ . = + - (at most 100)")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{path}: variant names {dup} occur more than once")
    return out


@dataclass(frozen=True)
class Study:
    """A loaded overlay: its name (the file's stem), file, settings and expanded variants."""

    name: str
    path: Path
    overlay: Overlay
    variants: tuple[Variant, ...]

    @property
    def metric(self) -> str:
        return self.overlay.score.metric

    def select(self, only: list[str] | None) -> list[Variant]:
        """The variants named in ``only`` (all when empty); an unknown name fails listing the known ones."""
        if not only:
            return list(self.variants)
        known = {v.name: v for v in self.variants}
        missing = [n for n in only if n not in known]
        if missing:
            raise ConfigError(f"{self.path}: no variant {missing} (variants: {', '.join(known)})")
        return [known[n] for n in only]

    def resolve(self, raw: dict[str, Any], variant: Variant, sets: list[str] | None = None) -> ResolvedVariant:
        """The variant's params over ``raw`` (params.yaml as read), validated; errors name file, variant and key."""
        src = f"{self.path} variant {variant.name!r}"
        profiles = raw.get("profiles") or {}
        profile = self.overlay.base.profile or os.environ.get("TRLS_PROFILE") or raw.get("profile", "small")
        if profile not in profiles:
            raise ConfigError(
                f"{self.path}: base.profile {profile!r} is not in params.yaml (profiles: {sorted(profiles)})"
            )
        merged = deep_merge({k: v for k, v in raw.items() if k != "profiles"}, profiles[profile] or {})
        layers = [nest(self.overlay.base.overrides, f"{self.path} base.overrides")]
        if self.overlay.seeds is not None:
            layers.append({"pretrain": {"seeds": self.overlay.seeds}, "evaluate": {"seeds": self.overlay.seeds}})
        layers += [nest(variant.overrides, src), parse_overrides(sets)]
        for layer in layers:
            merged = deep_merge(merged, layer)
        merged["profile"], merged["profiles"] = profile, {profile: {}}  # applied once, pinned
        params = resolve_params(merged, profile=profile, source=src)
        project = resolve_params(raw, source="params.yaml")
        for ds in {params.pretrain.dataset, params.evaluate.dataset}:
            mine, theirs = (flatten(p.dataset(ds).parquet.model_dump()) for p in (params, project))
            changed = sorted(k for k in mine if mine[k] != theirs.get(k))
            if changed:
                raise ConfigError(
                    f"{src}: sets {', '.join(f'{ds}.parquet.{k}' for k in changed)}: the windows are DVC's data "
                    "(change params.yaml and `dvc repro`); a study may vary the spectrogram section"
                )
        group, _ = parse_metric(self.metric)
        fracs = {str(float(f)) for f in params.evaluate.fractions}
        if group[0] == "finetune" and group[1] not in fracs:
            raise ConfigError(
                f"{src}: score.metric {self.metric!r} needs label fraction {group[1]} in evaluate.fractions "
                f"(it has {sorted(fracs) or 'none'})"
            )
        tasks = tuple(self.overlay.score.tasks or [params.evaluate.task])
        return ResolvedVariant(variant, merged, params, tasks)


def load_study(path: str | os.PathLike[str]) -> Study:
    """Read and check an overlay (format, names, grid); the variants' params are checked by :meth:`Study.resolve`."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"study file not found: {p}")
    try:
        doc = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{p}: top level must be a mapping (keys: {', '.join(Overlay.model_fields)})")
    try:
        ov = Overlay.model_validate(doc)
    except ValidationError as err:
        raise ConfigError(_describe(err, p)) from None
    if not NAME_RE.match(p.stem):
        raise ConfigError(f"{p}: the file name is the study's name: use letters, digits and _ . = + -")
    return Study(p.stem, p, ov, tuple(_expand(ov, p)))
