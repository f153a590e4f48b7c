"""A study's plan: every selected variant resolved and validated before anything runs; its dry-run view."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from trls_core.config import flatten, read_raw_params, resolve_params
from trls_core.study.overlay import ResolvedVariant, Study, load_study

__all__ = ["describe", "plan_study"]


def plan_study(
    overlay: str | os.PathLike[str],
    params_path: str | os.PathLike[str] = "params.yaml",
    sets: list[str] | None = None,
    only: list[str] | None = None,
) -> tuple[Study, list[ResolvedVariant]]:
    """Load the overlay and resolve the variants ``only`` names (all by default) over ``params_path``.

    The first invalid variant fails with a message naming the overlay file,
    the variant and the key.
    """
    study = load_study(overlay)
    raw = read_raw_params(params_path)
    return study, [study.resolve(raw, v, sets) for v in study.select(only)]


def _changes(project: dict[str, Any], mine: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in mine.items() if project.get(k, object()) != v}


def describe(study: Study, plan: list[ResolvedVariant], params_path: str | os.PathLike[str]) -> dict[str, Any]:
    """What ``trls study --dry-run`` prints: per variant its overrides and every setting that differs
    from params.yaml as the project's commands read it (default profile)."""
    project = flatten(resolve_params(read_raw_params(params_path), source=str(params_path)).model_dump(mode="json"))
    return {
        "study": study.name,
        "overlay": str(Path(study.path)),
        "metric": study.metric,
        "scored_on": "validation held out from model selection (the test split is never read)",
        "variants": [
            {
                "name": rv.name,
                "overrides": rv.variant.overrides,
                "tasks": list(rv.tasks),
                "profile": rv.params.profile,
                "settings_vs_params_yaml": _changes(project, flatten(rv.params.model_dump(mode="json"))),
            }
            for rv in plan
        ],
    }
