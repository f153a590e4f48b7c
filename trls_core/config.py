"""Typed parameters: params.yaml validated by pydantic into :class:`Params`.

params.yaml is the one source of settings, defaults included: the section
models (``trls_core.settings``, and each dataset plugin's own in
``trls_core.datasets``) declare types and constraints, not values. Each
stage reads one section and DVC declares exactly that section, so a change
reruns only what it affects. Every model forbids unknown keys: a typo fails
loudly with the dotted key name instead of silently falling back.

Profiles (``profiles.<name>`` in params.yaml) are deep-merged over the base
sections; ``small`` (the default, a 2-core CPU budget) and ``paper`` (GPU
sizes) ship with the project. Selection order: explicit argument, then the
``TRLS_PROFILE`` environment variable, then the top-level ``profile`` key.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    Field,
    SerializeAsAny,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from trls_core.datasets.registry import DatasetSettings, plugin_for, plugins
from trls_core.errors import ConfigError
from trls_core.settings.augment import AugmentParams
from trls_core.settings.base import Strict
from trls_core.settings.training import (
    CompareParams,
    EvaluateParams,
    MethodParams,
    ModelParams,
    PretrainParams,
)

__all__ = [
    "DEFAULT_PARAMS",
    "DataParams",
    "DataStage",
    "Params",
    "deep_merge",
    "flatten",
    "load_params",
    "parse_overrides",
    "read_raw_params",
    "resolve_params",
]

DEFAULT_PARAMS = Path("params.yaml")


class DataStage(Strict):
    """An entry of ``datasets``: a dataset DVC builds (``foreach``), and the code its stages depend on."""

    code: str = Field(min_length=1)  # the dataset plugin's module or package folder (relative to the project)


class DataParams(Strict):
    """Section ``data``: where the fetch stages find local copies of the raw data (each fetch stage declares it).

    ``mirror``: a folder holding each dataset's files (``bonn-eeg/``, ``cinc2017/``, ...), relative to
    the project root; used where it exists, else the official download. A dataset's own
    ``<name>.fetch.mirror`` and the environment variable ``TRLS_DATA_MIRROR`` win over it.
    """

    mirror: str | None


class Params(Strict):
    """The whole params.yaml after the profile has been merged in.

    Every top-level key besides the fields below is a dataset section, read
    by its plugin (``trls_core.datasets.registry.plugin_for``) into
    ``sections``; it is written back at the top level by ``model_dump``, so
    a dump validates again as it is.
    """

    profile: str
    datasets: dict[str, DataStage]
    data: DataParams
    model: ModelParams
    augment: AugmentParams
    pretrain: PretrainParams
    evaluate: EvaluateParams
    compare: CompareParams
    methods: dict[str, MethodParams]
    sections: dict[str, SerializeAsAny[DatasetSettings]]

    @model_validator(mode="wrap")
    @classmethod
    def _dataset_sections(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Params:
        """Validate each dataset section with its plugin's model; report every error with its dotted key."""
        if not isinstance(data, dict):
            return handler(data)
        core: dict[str, Any] = {}
        sections: dict[str, DatasetSettings] = {}
        errors: list[InitErrorDetails] = []
        for key, value in data.items():
            plugin = None if key in cls.model_fields else plugin_for(key, value)
            if key in cls.model_fields or (plugin is None and not _has_kind(value)):
                core[key] = value  # a field, or an unknown key that the model reports as a typo
            elif plugin is None:
                msg = f"unknown dataset kind {value['kind']!r} (plugins: {', '.join(plugins())})"
                errors.append(
                    {"type": PydanticCustomError("dataset_kind", msg), "loc": (key, "kind"), "input": value["kind"]}
                )
            else:
                try:
                    sections[key] = plugin.settings.model_validate(value)
                except ValidationError as exc:
                    errors += [_nested(e, key) for e in exc.errors()]
        core["sections"] = sections
        try:
            params = handler(core)
        except ValidationError as exc:
            errors = [*[_nested(e) for e in exc.errors()], *errors]
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        params._cross_checks()
        return params

    @model_serializer(mode="wrap")
    def _sections_at_top_level(self, handler: Any) -> dict[str, Any]:
        out = handler(self)
        return {**{k: v for k, v in out.items() if k != "sections"}, **out.get("sections", {})}

    @field_validator("methods")
    @classmethod
    def _method_names(cls, v: dict[str, MethodParams]) -> dict[str, MethodParams]:
        for name in v:
            if not name or "/" in name or name.startswith("."):
                raise ValueError(f"method name {name!r}: must be non-empty, without '/' or a leading '.'")
        return v

    def _cross_checks(self) -> None:
        unknown = [d for d in self.datasets if d not in self.sections]
        if unknown:
            raise ValueError(
                f"unknown dataset(s) {unknown} in `datasets`: no such section (known: {self.known_datasets()})"
            )
        unknown = [m for m in self.compare.methods if m not in self.methods]
        if unknown:
            raise ValueError(f"compare.methods: unknown method(s) {unknown} (known: {sorted(self.methods)})")

    def known_datasets(self) -> list[str]:
        """The datasets with a section in params.yaml."""
        return sorted(self.sections)

    def dataset(self, name: str) -> DatasetSettings:
        """The data-stage section of ``name``; unknown names fail with the known ones."""
        if name not in self.sections:
            raise ConfigError(f"unknown dataset {name!r}: known datasets are {self.known_datasets()}")
        return self.sections[name]


def _has_kind(value: Any) -> bool:
    return isinstance(value, dict) and "kind" in value


def _nested(e: Any, *prefix: str) -> InitErrorDetails:
    """A pydantic error as part of one combined ``ValidationError``: same type and message, located under ``prefix``."""
    return {"type": PydanticCustomError(e["type"], e["msg"]), "loc": (*prefix, *e["loc"]), "input": e["input"]}


# ------------------------------------------------------------------- loading
def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``override`` into a copy of ``base`` (lists are replaced)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid parameters in {source}:"]
    for e in err.errors():
        loc = list(e["loc"])
        key = ".".join(str(p) for p in loc)
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (typo?)"
        # a whole section as "got" buries the message (a cross-field check of that section)
        show_input = bool(loc) and e["type"] not in ("missing", "extra_forbidden") and not isinstance(e["input"], dict)
        msg = msg.removeprefix("Value error, ")
        lines.append(f"  {key or 'params'}: {msg}" + (f" (got {e['input']!r})" if show_input else ""))
    return "\n".join(lines)


def read_raw_params(path: str | os.PathLike[str] = DEFAULT_PARAMS) -> dict[str, Any]:
    """Read params.yaml as a plain dict, with a clear error for a missing/bad file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"params file not found: {p.resolve()}")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: top level must be a mapping")
    return raw


def parse_overrides(sets: list[str] | None) -> dict[str, Any]:
    """``["pretrain.epochs=3", "model.tfrnn.stem_stride=[2, 2]"]`` -> a nested dict to merge.

    Values are YAML (``3``, ``[2, 2]``, ``null``, ``record``); keys are the
    dotted paths of params.yaml. Why: a validation study is a settings
    overlay on the project's own commands, not a script with its own config.
    """
    out: dict[str, Any] = {}
    for item in sets or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or any(not k for k in key.strip().split(".")):
            raise ConfigError(f"--set {item!r}: expected dotted.key=value, e.g. pretrain.epochs=3")
        try:
            parsed = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: value is not valid YAML ({exc})") from None
        node = out
        parts = key.strip().split(".")
        for k in parts[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {k!r} is set as a value by another --set")
        node[parts[-1]] = parsed
    return out


def resolve_params(
    raw: dict[str, Any],
    profile: str | None = None,
    source: str = "params.yaml",
    overrides: dict[str, Any] | None = None,
) -> Params:
    """Merge the chosen profile over the base sections, then ``overrides`` (``--set``), and validate."""
    raw = dict(raw)
    profiles = raw.pop("profiles", {}) or {}
    if not isinstance(profiles, dict):
        raise ConfigError(f"{source}: profiles: expected a mapping of profile name -> settings")
    name = profile or os.environ.get("TRLS_PROFILE") or raw.get("profile", "small")
    if not isinstance(name, str) or name not in profiles:
        raise ConfigError(f"{source}: unknown profile {name!r} (profiles: {sorted(map(str, profiles))})")
    if not isinstance(profiles[name] or {}, dict):
        raise ConfigError(f"{source}: profiles.{name}: expected a mapping of settings")
    if overrides and ("profile" in overrides or "profiles" in overrides):  # chosen before --set applies
        raise ConfigError("--set profile / profiles: choose a profile with --profile (or TRLS_PROFILE) instead")
    merged = deep_merge(raw, profiles[name] or {})
    if overrides:
        merged = deep_merge(merged, overrides)
        source = f"{source} with --set"
    merged["profile"] = name
    try:
        return Params.model_validate(merged)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, f"{source} (profile {name!r})")) from None


def load_params(
    path: str | os.PathLike[str] = DEFAULT_PARAMS, profile: str | None = None, sets: list[str] | None = None
) -> Params:
    """Load and validate params.yaml (profile merged in, then the ``--set`` overrides)."""
    return resolve_params(read_raw_params(path), profile=profile, source=str(path), overrides=parse_overrides(sets))


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts to dotted keys (for run parameters and reports)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out
