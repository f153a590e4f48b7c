"""Figures for runs and reports: confusion matrix, t-SNE, loss curves, label-fraction curve.

Figures are drawn on a ``matplotlib.figure.Figure`` with an explicit Agg
canvas, never through ``pyplot``: no global backend is switched at import
(or at all), nothing needs a display, and figures are freed when they go
out of scope instead of piling up in pyplot's registry across a long flow.
Every file is written atomically (temp file + rename); the temp file has a
``.tmp`` suffix, so the format is passed explicitly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from trls_core.io import atomic_path


def new_figure(width: float, height: float, ncols: int = 1, nrows: int = 1):
    """A figure on the Agg canvas (no pyplot state, safe in worker threads) and its axes grid."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def save_figure(fig: Any, path: str | os.PathLike[str]) -> None:
    """``fig`` as a PNG at ``path``, written atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def plot_confusion_matrix(
    cm: Sequence[Sequence[int]] | np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike[str],
    title: str = "Confusion matrix",
) -> None:
    """Row-normalised colours (recall per true class) annotated with raw counts.

    Row normalisation keeps minority classes readable on imbalanced data
    (seizure EEG is 20 % of Epilepsy); the counts keep the absolute picture.
    """
    m = np.asarray(cm, dtype=np.float64)
    k = len(class_names)
    if m.shape != (k, k):
        raise ValueError(f"plot_confusion_matrix: matrix shape {m.shape} does not match {k} class names")
    rows = m.sum(axis=1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    size = max(3.5, 0.7 * k + 2.0)
    fig, axes = new_figure(size + 1.0, size)
    ax = axes[0, 0]
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of true class")
    ax.set_xticks(range(k), labels=list(class_names), rotation=45, ha="right")
    ax.set_yticks(range(k), labels=list(class_names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                f"{int(m[i, j])}",
                ha="center",
                va="center",
                color="white" if norm[i, j] > 0.5 else "black",
                fontsize=8,
            )
    save_figure(fig, path)


def plot_tsne(
    z: np.ndarray,
    y: np.ndarray | Sequence[int],
    class_names: Sequence[str],
    path: str | os.PathLike[str],
    seed: int = 0,
    max_points: int = 3000,
    title: str = "t-SNE of test representations",
) -> None:
    """2-D t-SNE of representations coloured by class; subsampled to ``max_points`` for speed.

    t-SNE is O(N log N) but slow in practice on 2 cores; 3,000 points take
    tens of seconds and show the structure as well as 10,000. The subsample
    is seeded, and perplexity shrinks for tiny inputs (it must be < N).
    """
    from sklearn.manifold import TSNE

    z = np.asarray(z, dtype=np.float32).reshape(len(z), -1)
    y = np.asarray(y).astype(np.int64)
    if len(z) != len(y):
        raise ValueError(f"plot_tsne: {len(z)} points but {len(y)} labels")
    if len(z) < 3:
        raise ValueError(f"plot_tsne: need at least 3 points, got {len(z)}")
    rng = np.random.default_rng(seed)
    if len(z) > max_points:
        keep = np.sort(rng.choice(len(z), size=max_points, replace=False))
        z, y = z[keep], y[keep]
    perplexity = float(min(30.0, max(1.0, (len(z) - 1) / 3.0)))
    emb = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(z)
    fig, axes = new_figure(6.0, 5.0)
    ax = axes[0, 0]
    cmap = palette(len(class_names))
    for c, name in enumerate(class_names):
        sel = y == c
        if sel.any():
            ax.scatter(emb[sel, 0], emb[sel, 1], s=4, alpha=0.7, color=cmap[c], label=f"{name} ({sel.sum()})")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    ax.legend(markerscale=3, fontsize=8, loc="best")
    save_figure(fig, path)


def palette(k: int) -> list[Any]:
    """``k`` distinct colours (tab10, or tab20 past ten)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if k <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(k)]


def plot_loss_curve(
    history: Sequence[Mapping[str, Any]],
    path: str | os.PathLike[str],
    title: str = "Training curves",
) -> None:
    """One panel per numeric series in ``history`` (loss, tau, lr, val metrics ...) against epoch.

    Generic over the keys so the same function draws BYOL pretraining
    (loss, tau, lr) and fine-tuning (train_loss, val_macro_f1, ...)
    histories. Loss-like series come first; ``seconds`` is skipped.
    """
    if not history:
        raise ValueError("plot_loss_curve: empty history")
    epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
    skip = {"epoch", "seconds", "step"}
    keys: list[str] = []
    for h in history:
        for k, v in h.items():
            if k not in skip and k not in keys and isinstance(v, (int, float)) and not isinstance(v, bool):
                keys.append(k)
    if not keys:
        raise ValueError(f"plot_loss_curve: no numeric series in history keys {sorted(history[0])}")
    keys.sort(key=lambda k: 0 if "loss" in k else 1)
    n = len(keys)
    ncols = min(n, 3)
    nrows = (n + ncols - 1) // ncols
    fig, axes = new_figure(4.0 * ncols, 3.0 * nrows, ncols=ncols, nrows=nrows)
    flat = axes.ravel()
    for ax, key in zip(flat, keys):
        pts = [(e, h[key]) for e, h in zip(epochs, history) if isinstance(h.get(key), (int, float))]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o" if len(pts) < 30 else None, ms=3)
        ax.set_title(key)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if key == "lr" or key.endswith("_lr"):
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    for ax in flat[n:]:
        ax.set_visible(False)
    fig.suptitle(title)
    save_figure(fig, path)


def plot_label_fraction_curve(
    results_finetune: Mapping[str, Mapping[str, Mapping[str, Any]]],
    path: str | os.PathLike[str],
    metrics: Sequence[str] = ("accuracy", "macro_f1"),
    title: str = "Fine-tuning vs. label fraction",
    reference: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """Mean ± std (over seeds, shaded) of each metric, in percent, against the label fraction (log x).

    ``results_finetune`` is ``results["finetune"]``: {fraction key:
    {metric: {mean, std, ...}}}. ``reference`` (e.g.
    ``results["linear_probe"]``) draws a dashed horizontal line per metric.
    """
    if not results_finetune:
        raise ValueError("plot_label_fraction_curve: no fine-tuning results")
    fracs = sorted(results_finetune, key=float)
    x = np.array([float(f) for f in fracs])
    fig, axes = new_figure(6.0, 4.2)
    ax = axes[0, 0]
    colors = palette(max(len(metrics), 2))
    for c, metric in enumerate(metrics):
        mean = np.array([100 * results_finetune[f][metric]["mean"] for f in fracs])
        std = np.array([100 * results_finetune[f][metric].get("std", 0.0) for f in fracs])
        ax.plot(x, mean, marker="o", color=colors[c], label=f"fine-tune {metric}")
        ax.fill_between(x, mean - std, mean + std, color=colors[c], alpha=0.2)
        if reference is not None and metric in reference:
            ax.axhline(100 * reference[metric]["mean"], color=colors[c], ls="--", lw=1, label=f"linear probe {metric}")
    ax.set_xscale("log")
    ax.set_xticks(x, labels=[f"{100 * v:g}%" for v in x])
    ax.minorticks_off()
    ax.set_xlabel("fraction of training labels")
    ax.set_ylabel("score (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def plot_score_bars(
    scores: Mapping[str, Sequence[float] | float],
    path: str | os.PathLike[str],
    metric: str,
    title: str = "",
) -> None:
    """Horizontal bars of ``mean ± std`` per setting, every seed's value as a dot (scores in [0, 1]).

    Why dots: with 3 seeds a mean hides whether a margin is beyond the seed
    spread, which is the question these benchmark pages answer.
    """
    if not scores:
        raise ValueError("plot_score_bars: no scores")
    names = list(scores)
    vals = [np.atleast_1d(np.asarray(scores[n], dtype=float)) for n in names]
    fig, axes = new_figure(7.0, 0.45 * len(names) + 1.2)
    ax = axes[0][0]
    y = np.arange(len(names))[::-1]
    means = [float(v.mean()) for v in vals]
    stds = [float(v.std(ddof=1)) if v.size > 1 else 0.0 for v in vals]
    ax.barh(y, means, xerr=stds, color=palette(len(names)), alpha=0.6, capsize=3)
    for yi, v in zip(y, vals):
        ax.plot(v, np.full(v.size, yi), "k.", ms=4)
    for yi, m, sd, v in zip(y, means, stds, vals):
        ax.text(min(max(m + sd, float(v.max())) + 0.015, 0.95), yi, f"{m:.3f}", va="center", fontsize=8)
    ax.set_yticks(y, names)
    ax.set_xlim(0, 1)
    ax.set_xlabel(metric)
    if title:
        ax.set_title(title)
    save_figure(fig, path)
