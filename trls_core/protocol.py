"""The downstream protocol of docs/design.md §1.5 as independent *units*, and their aggregation.

A unit is one (method, seed[, fraction]) evaluation: the linear probe of the
pretrained encoder of a seed, its fine-tuning on one label fraction, or one
of the two controls (logistic regression on the spectrogram pixels; the
same encoder untrained). Units share nothing at run time, so

- the evaluation stage (:mod:`trls_core.stages.evaluate`) runs them in a
  loop, storing each unit's result and skipping it on a rerun, and
- the Prefect flow maps them as separate task runs (each observable,
  retried and failed on its own),

and both produce the same ``metrics.json`` through :func:`aggregate_units`.

Pure functions on tensors/arrays: no MLflow, no Prefect, no file I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from trls_core.arrays import as_tensor, strip_arrays, to_numpy_labels
from trls_core.errors import DataError
from trls_core.evaluate import embed, finetune, fraction_key, linear_probe
from trls_core.metrics import DEFAULT_KEYS, EXTRA_KEYS, aggregate_runs
from trls_core.pooling import Groups

#: The unit kinds; the two controls report under ``results["controls"]``.
UNIT_KINDS = ("linear_probe", "finetune", "spectrogram_linear", "random_encoder_linear")
CONTROLS = ("spectrogram_linear", "random_encoder_linear")
REQUIRED_DATA = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


class Unit(NamedTuple):
    """One protocol unit. ``fraction`` only for ``finetune``."""

    method: str
    seed: int
    fraction: float | None = None

    @property
    def name(self) -> str:
        """``linear_probe/seed=0``, ``finetune/0.1/seed=0``, ``controls/<control>/seed=0``.

        The same spelling names the unit's MLflow run, its Prefect task run
        and its result file, so the three can be matched by eye.
        """
        if self.method == "finetune":
            return f"finetune/{fraction_key(float(self.fraction or 0.0))}/seed={self.seed}"
        if self.method in CONTROLS:
            return f"controls/{self.method}/seed={self.seed}"
        return f"{self.method}/seed={self.seed}"

    @property
    def slug(self) -> str:
        """The name as a flat file name: ``finetune_0.1_seed0``."""
        return self.name.replace("controls/", "").replace("/seed=", "_seed").replace("/", "_")


def plan_units(
    fractions: Sequence[float],
    seeds: Sequence[int],
    random_control: bool = True,
    spectrogram_control: bool = True,
) -> list[Unit]:
    """Every unit of the protocol, in the order the sequential loop runs them.

    The ``spectrogram_linear`` control does not depend on the seed
    (deterministic lbfgs on fixed data), so it is one unit, with the first
    seed; its aggregate has ``n == 1``.
    """
    if not seeds:
        raise DataError("protocol: no seeds")
    keys = [fraction_key(f) for f in fractions]
    if len(set(keys)) != len(keys):
        raise DataError(f"protocol: duplicate fractions {list(fractions)}")
    if len(set(seeds)) != len(seeds):
        raise DataError(f"protocol: duplicate seeds {list(seeds)}")
    units: list[Unit] = []
    for i, seed in enumerate(seeds):
        units.append(Unit("linear_probe", int(seed)))
        units.extend(Unit("finetune", int(seed), float(f)) for f in fractions)
        if spectrogram_control and i == 0:
            units.append(Unit("spectrogram_linear", int(seed)))
        if random_control:
            units.append(Unit("random_encoder_linear", int(seed)))
    return units


def check_data(data: Mapping[str, Any]) -> None:
    missing = [k for k in REQUIRED_DATA if k not in data]
    if missing:
        raise DataError(f"protocol: data is missing {missing}")


def _flatten_numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N, ...) -> (N, prod(...)) float32 numpy: the raw-pixel features of the spectrogram control."""
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return arr.reshape(len(arr), -1).astype(np.float32, copy=False)


def run_unit(
    unit: Unit,
    data: Mapping[str, Any],
    class_names: Sequence[str],
    encoder_factory: Callable[[int], nn.Module] | None = None,
    random_encoder_factory: Callable[[int], nn.Module] | None = None,
    fraction_indices: Callable[[np.ndarray, float, int], np.ndarray] | None = None,
    finetune_kwargs: dict[str, Any] | None = None,
    probe_kwargs: dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
    embed_batch_size: int = 512,
    progress: bool = False,
    records: Mapping[str, np.ndarray] | None = None,
    embed_fn: Callable[..., np.ndarray] | None = None,
) -> dict[str, Any]:
    """Run one unit; returns its metrics with ``seed`` (and ``fraction``), numpy arrays included.

    Arrays (``y_pred``; ``z_test`` for a linear probe, kept for the t-SNE
    plot) must be stripped (:func:`strip_arrays`) before JSON.

    ``records`` (``{"train"|"val"|"test": record of each window}``) makes the
    unit record-level (:mod:`trls_core.pooling`): probes and controls are
    fitted, selected and scored on record means of their window features,
    label fractions are fractions of training *records*, and fine-tuning
    scores records on their mean window logits. ``y_pred`` is then per test
    record (ordered by record id) and ``y_pred_windows`` per test window.

    ``embed_fn(encoder, x, batch_size, device)``: what computes frozen
    features (default :func:`~trls_core.evaluate.embed`); the evaluation
    stage passes its memoised one (``EvalContext.embed``). Given one, a
    fine-tuning unit also takes the validation features and, for the 100 %
    fraction, the training features for its probe-initialised head from it
    (the same numbers ``finetune`` would compute, computed once).
    """
    if unit.method not in UNIT_KINDS:
        raise DataError(f"protocol: unknown unit method {unit.method!r} (known: {', '.join(UNIT_KINDS)})")
    check_data(data)
    x_train = as_tensor(data["x_train"], "protocol x_train")
    x_val = as_tensor(data["x_val"], "protocol x_val")
    x_test = as_tensor(data["x_test"], "protocol x_test")
    y_train = to_numpy_labels(data["y_train"], "protocol y_train")
    y_val = to_numpy_labels(data["y_val"], "protocol y_val")
    y_test = to_numpy_labels(data["y_test"], "protocol y_test")
    pk = dict(probe_kwargs or {})
    g = None
    if records is not None:
        missing = [s for s in ("train", "val", "test") if s not in records]
        if missing:
            raise DataError(f"protocol: record-level evaluation is missing the records of {missing}")
        g = {s: Groups.of(records[s], f"protocol {s} records") for s in ("train", "val", "test")}
        for s, yy in (("train", y_train), ("val", y_val), ("test", y_test)):
            if len(g[s]) != len(yy):
                raise DataError(f"protocol: {len(g[s])} {s} record ids for {len(yy)} windows")

    def probe(z_tr: np.ndarray, z_va: np.ndarray, z_te: np.ndarray) -> dict[str, Any]:
        if g is None:
            return linear_probe(z_tr, y_train, z_te, y_test, class_names, seed=unit.seed, z_val=z_va, y_val=y_val, **pk)
        out = linear_probe(
            g["train"].mean(z_tr),
            g["train"].labels(y_train),
            g["test"].mean(z_te),
            g["test"].labels(y_test),
            class_names,
            seed=unit.seed,
            z_val=g["val"].mean(z_va),
            y_val=g["val"].labels(y_val),
            return_model=True,
            **pk,
        )
        out["y_pred_windows"] = out.pop("model")(z_te)  # the record-level probe applied to single windows
        return out

    emb = embed_fn or embed

    def embedded(encoder: nn.Module) -> dict[str, np.ndarray]:
        return {
            s: emb(encoder, x, embed_batch_size, device)
            for s, x in (("train", x_train), ("val", x_val), ("test", x_test))
        }

    if unit.method in ("linear_probe", "finetune") and encoder_factory is None:
        raise DataError(f"protocol: unit {unit.name} needs an encoder_factory")
    if unit.method == "linear_probe":
        z = embedded(encoder_factory(unit.seed))  # type: ignore[misc]
        out = probe(z["train"], z["val"], z["test"])
        out["z_test"] = z["test"]
    elif unit.method == "finetune":
        if fraction_indices is None:
            raise DataError("protocol: fraction_indices is required for fine-tuning units")
        f = float(unit.fraction or 0.0)
        if g is None:
            idx = np.asarray(fraction_indices(y_train, f, unit.seed), dtype=np.int64)
        else:  # a fraction of the training records, stratified by record label; all their windows
            rows = np.asarray(fraction_indices(g["train"].labels(y_train), f, unit.seed), dtype=np.int64)
            idx = g["train"].windows_of(rows)
        if idx.size == 0:
            raise DataError(f"protocol: fraction {fraction_key(f)} with seed {unit.seed} selected no training windows")
        kw = dict(finetune_kwargs or {})
        kw.setdefault("device", device)
        kw.setdefault("progress", progress)
        if g is not None:
            kw.update(
                train_records=np.asarray(records["train"])[idx],
                val_records=np.asarray(records["val"]),
                test_records=np.asarray(records["test"]),
            )
        encoder = encoder_factory(unit.seed)  # type: ignore[misc]
        if embed_fn is not None and kw.get("head_init", "linear_probe") == "linear_probe":
            bs = int(kw.get("eval_batch_size", 512))  # finetune's own batches, so the features are its own
            everything = idx.size == len(y_train) and np.array_equal(idx, np.arange(len(y_train)))
            z_tr = embed_fn(encoder, x_train, bs, kw["device"]) if everything else None
            kw["probe_features"] = (z_tr, embed_fn(encoder, x_val, bs, kw["device"]))
        out = finetune(
            encoder,
            len(class_names),
            x_train[torch.as_tensor(idx)],  # type: ignore[misc]
            y_train[idx],
            x_val,
            y_val,
            x_test,
            y_test,
            class_names,
            seed=unit.seed,
            **kw,
        )
        out.pop("model", None)
        out["fraction"] = f
        if g is not None:
            out["n_train_records"] = int(rows.size)
    elif unit.method == "spectrogram_linear":
        flat = {s: _flatten_numpy(x) for s, x in (("train", x_train), ("val", x_val), ("test", x_test))}
        out = probe(flat["train"], flat["val"], flat["test"])
    else:
        if random_encoder_factory is None:
            raise DataError(f"protocol: unit {unit.name} needs a random_encoder_factory")
        z = embedded(random_encoder_factory(unit.seed))
        out = probe(z["train"], z["val"], z["test"])
    return {"seed": int(unit.seed), **out}


def aggregate_units(
    results: Mapping[Unit, Mapping[str, Any]],
    seeds: Sequence[int],
    fractions: Sequence[float],
) -> dict[str, Any]:
    """The protocol's results from its unit results (mean ± std over seeds).

    Shape (what ``metrics.json`` keeps)::

        {"linear_probe": {metric: aggregate},
         "finetune": {fraction_key(f): {metric: aggregate}},
         "controls": {"spectrogram_linear": {...}, "random_encoder_linear": {...}},
         "seeds": [...], "fractions": [fraction keys],
         "per_seed": [{"seed", "linear_probe", "finetune": {key: metrics}, "controls": {...}}]}

    with metric in ("accuracy", "macro_f1", "cohen_kappa",
    "balanced_accuracy") and aggregate = {mean, std (ddof=1), min, max, n,
    values}. A control with no unit is absent. A missing linear-probe or
    fine-tuning unit is an error naming it: a partial protocol must not be
    reported as if complete.
    """
    clean = {u: strip_arrays(r) for u, r in results.items()}
    keys = [fraction_key(f) for f in fractions]
    missing = [u.name for u in plan_units(fractions, seeds, False, False) if u not in clean]
    if missing:
        raise DataError(f"protocol: results missing for {missing}")
    per_seed: list[dict[str, Any]] = []
    for seed in seeds:
        s = int(seed)
        entry: dict[str, Any] = {
            "seed": s,
            "linear_probe": clean[Unit("linear_probe", s)],
            "finetune": {},
            "controls": {},
        }
        for f, key in zip(fractions, keys):
            entry["finetune"][key] = clean[Unit("finetune", s, float(f))]
        for c in CONTROLS:
            if Unit(c, s) in clean:
                entry["controls"][c] = clean[Unit(c, s)]
        per_seed.append(entry)
    out: dict[str, Any] = {
        "linear_probe": _aggregate([e["linear_probe"] for e in per_seed]),
        "finetune": {k: _aggregate([e["finetune"][k] for e in per_seed]) for k in keys},
        "controls": {},
        "seeds": [int(s) for s in seeds],
        "fractions": keys,
        "per_seed": per_seed,
    }
    for c in CONTROLS:
        runs = [e["controls"][c] for e in per_seed if c in e["controls"]]
        if runs:
            out["controls"][c] = _aggregate(runs)
    return out


def _aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """DEFAULT_KEYS, plus each EXTRA_KEYS metric that every run of the group reports."""
    extra = [k for k in EXTRA_KEYS if all(k in r for r in runs)]
    return aggregate_runs(runs, (*DEFAULT_KEYS, *extra))
