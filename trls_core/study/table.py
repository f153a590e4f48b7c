"""A variant's validation scores from its unit results, and the study's table (csv + md, atomic)."""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from trls_core.errors import DataError
from trls_core.io import write_text
from trls_core.study.overlay import parse_metric

__all__ = ["aggregate_variant", "format_overrides", "summarise", "table_rows", "with_task", "write_table"]

UNTRAINED, PIXELS = "random_encoder_linear", "spectrogram_linear"


def with_task(params: Any, task: str) -> Any:
    """``params`` with ``evaluate.task`` set to ``task``."""
    return params.model_copy(update={"evaluate": params.evaluate.model_copy(update={"task": task})})


def aggregate_variant(workspace: Path, params: Any, ctx: Any) -> dict[str, Any]:
    """The protocol's aggregate (``protocol.aggregate_units``) of a variant's stored units for ``params``' task.

    Every unit must be stored with the context's fingerprint: a missing or
    stale one is an error naming it, as for a report.
    """
    from trls_core.protocol import aggregate_units
    from trls_core.stages.evaluate import read_unit, unit_file, units_for

    results, problems = {}, []
    for unit in units_for(params):
        path = unit_file(workspace, params, unit)
        doc = read_unit(path) if path.is_file() else None
        if doc is None or doc["fingerprint"] != ctx.fingerprint(unit):
            problems.append(f"{unit.name} ({'stale' if doc else 'no'} {path})")
            continue
        results[unit] = doc["result"]
    if problems:
        raise DataError(f"{workspace}: unit results missing or stale: {', '.join(problems)}")
    return aggregate_units(results, params.evaluate.seeds, params.evaluate.fractions)


def _at(node: Mapping[str, Any], path: Sequence[str], name: str, where: str) -> Any:
    for key in path:
        node = node.get(key) or {}
    if name not in node:
        have = sorted(k for k, v in node.items() if isinstance(v, (dict, int, float)) and not isinstance(v, bool))
        raise DataError(f"{where}: no {'.'.join(path)}.{name} (it has {', '.join(have) or 'nothing'})")
    return node[name]


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
    }


def summarise(agg: Mapping[str, Any], metric: str, where: str) -> dict[str, Any]:
    """The study metric of one task: mean, std, n over seeds; the controls' same metric; the paired gain
    over the untrained encoder (same seed) when the metric is an encoder's."""
    group, name = parse_metric(metric)
    out: dict[str, Any] = {k: _at(agg, group, name, where)[k] for k in ("mean", "std", "n")}
    controls = agg.get("controls") or {}
    for label, control in (("untrained", UNTRAINED), ("pixels", PIXELS)):
        if name in (controls.get(control) or {}):
            out[label] = controls[control][name]["mean"]
    if group[0] != "controls" and "untrained" in out:
        gains = [
            float(_at(e, group, name, where)) - float(e["controls"][UNTRAINED][name])
            for e in agg["per_seed"]
            if UNTRAINED in e.get("controls", {})
        ]
        if gains:
            g = _stats(gains)
            out["gain"], out["gain_std"] = g["mean"], g["std"]
    return out


def format_overrides(overrides: Mapping[str, Any]) -> str:
    import json

    return "; ".join(f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in overrides.items()) or "(base)"


def table_rows(metric: str, tasks: Sequence[str], variants: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per variant (``{"name", "overrides", "store", "scores": {task: summarise(...)}}``), best first
    by the first task's mean."""
    first = tasks[0]
    ranked = sorted(variants, key=lambda v: -float(v["scores"][first]["mean"]))
    rows = []
    for rank, v in enumerate(ranked, 1):
        row: dict[str, Any] = {"rank": rank, "variant": v["name"]}
        for t in tasks:
            s = v["scores"][t]
            row[f"{t}:{metric}"] = round(float(s["mean"]), 6)
            row[f"{t}:{metric}:std"] = round(float(s["std"]), 6)
            for k in ("untrained", "gain", "gain_std", "pixels"):
                row[f"{t}:{k}"] = round(float(s[k]), 6) if k in s else ""
        row["seeds"] = v["scores"][first]["n"]
        row["pretraining"] = v["store"]
        row["overrides"] = format_overrides(v["overrides"])
        rows.append(row)
    return rows


def _md(study: Any, tasks: Sequence[str], rows: list[dict[str, Any]]) -> str:
    metric = study.metric
    head = ["rank", "variant"]
    for t in tasks:
        head += [f"{t} {metric}", f"{t} untrained", f"{t} gain vs untrained", f"{t} pixels"]
    head += ["seeds", "pretraining"]

    def num(v: Any, std: Any = None) -> str:
        if v == "":
            return "–"
        return f"{v:.4f}" + (f" ± {std:.4f}" if std not in (None, "") else "")

    path = Path(study.path)
    try:
        path = path.resolve().relative_to(Path.cwd())
    except ValueError:
        pass
    lines = [
        f"# Study `{study.name}`",
        "",
        (study.overlay.description or "").strip(),
        "",
        f"Overlay: `{path}`. Scored on validation windows held out from model selection "
        f"(the test split is never read); metric `{metric}`, mean ± std over seeds; ranked by `{tasks[0]}`.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in rows:
        cells = [str(r["rank"]), f"`{r['variant']}`"]
        for t in tasks:
            cells += [
                num(r[f"{t}:{metric}"], r[f"{t}:{metric}:std"]),
                num(r[f"{t}:untrained"]),
                num(r[f"{t}:gain"], r[f"{t}:gain_std"]),
                num(r[f"{t}:pixels"]),
            ]
        cells += [str(r["seeds"]), f"`{r['pretraining']}`"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Overrides of each variant (over the base):", ""]
    lines += [f"- `{r['variant']}`: `{r['overrides']}`" for r in rows]
    return "\n".join(lines) + "\n"


def write_table(files: Mapping[str, Path], study: Any, tasks: Sequence[str], rows: list[dict[str, Any]]) -> None:
    """``files["csv"]`` and ``files["md"]``, each written to a temp file and renamed into place."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["variant"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(files["csv"], buf.getvalue())
    write_text(files["md"], _md(study, tasks, rows))
