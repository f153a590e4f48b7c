"""A settings section of the project's params.yaml, with some keys changed: how tests get settings.

The settings models have no defaults of their own (params.yaml holds every
value), so a test starts from the real section and states only what it
changes; the result is validated like params.yaml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trls_core.config import load_params

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def section(dotted: str, profile: str | None = None, **changes: Any) -> Any:
    """``section("cinc2017.parquet", pad="drop")``: the validated section of params.yaml with ``changes``."""
    params = load_params(PARAMS, profile=profile)
    head, *rest = dotted.split(".")
    obj: Any = params.dataset(head) if head in params.known_datasets() else getattr(params, head)
    for key in rest:
        obj = getattr(obj, key)
    return type(obj).model_validate({**obj.model_dump(), **changes})
