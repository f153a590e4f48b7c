"""Where runs are stored and what data and code they saw: store URI, experiment names, git + DVC digests.

No mlflow here: plain paths and strings, shared by runs and the registry.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "artifact_root",
    "dvc_lock_digests",
    "experiment_name",
    "git_commit",
    "provenance_tags",
    "source_name",
    "source_tags",
    "tracking_uri",
]


def tracking_uri(root: Path) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the embedded sqlite store ``<root>/mlflow.db``."""
    env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if env:
        return env
    return f"sqlite:///{Path(root).resolve() / 'mlflow.db'}"


def artifact_root(root: Path) -> Path:
    """Where local stores keep artifacts: ``<root>/mlartifacts``."""
    return Path(root).resolve() / "mlartifacts"


def experiment_name(dataset_or_name: str) -> str:
    """``trls-<dataset>``; a name that already starts with ``trls-`` is kept as is."""
    name = dataset_or_name.strip()
    if not name:
        raise ValueError("experiment: name/dataset must not be empty")
    return name if name.startswith("trls-") else f"trls-{name}"


def git_commit(root: Path) -> str | None:
    """HEAD commit of the repository holding ``root``, or None (no git, not a repo)."""
    if shutil.which("git") is None:
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", sha) else None


def dvc_lock_digests(root: Path) -> dict[str, str]:
    """md5 of every stage output recorded in ``dvc.lock``: ``{"<stage>:<path>": md5}``.

    Tagging runs with these says exactly which data a model saw; ``{}``
    when the project has no lock file yet.
    """
    import yaml

    path = Path(root) / "dvc.lock"
    if not path.is_file():
        return {}
    try:
        lock = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from exc
    out: dict[str, str] = {}
    for stage, spec in (lock.get("stages") or {}).items():
        for item in (spec or {}).get("outs") or []:
            if isinstance(item, Mapping) and item.get("path") and item.get("md5"):
                out[f"{stage}:{item['path']}"] = str(item["md5"])
    return out


def source_name(argv: list[str] | None = None) -> str:
    """What started this process, for the runs table's Source column: ``trls pipeline``, ``pytest``, ...

    ``trls <command>`` for the CLI; else the script or module name.
    """
    args = list(sys.argv if argv is None else argv)
    if not args or not args[0] or args[0].startswith("-"):  # python -c / an interactive session
        return "python"
    prog = Path(args[0]).name
    if prog == "trls" and len(args) > 1 and not args[1].startswith("-"):
        return f"trls {args[1]}"
    if prog == "__main__.py" and len(Path(args[0]).parts) > 1:
        return Path(args[0]).parent.name
    if prog.endswith(".py") and Path(args[0]).parent.name:
        return f"{Path(args[0]).parent.name}.{prog[:-3]}"  # flows/pipeline.py -> flows.pipeline
    return prog


def source_tags(root: Path) -> dict[str, str]:
    """The Source column of the MLflow UI: ``mlflow.source.name`` / ``.type`` and the git commit (every run)."""
    tags = {"mlflow.source.name": source_name(), "mlflow.source.type": "LOCAL"}
    sha = git_commit(root)
    if sha:
        tags["mlflow.source.git.commit"] = sha
    return tags


def provenance_tags(root: Path) -> dict[str, str]:
    """Git commit, source and DVC data digests as run tags."""
    tags = {f"dvc.{k}": v for k, v in dvc_lock_digests(root).items()}
    tags.update(source_tags(root))
    return tags
