"""Plots and tables of an evolution run's history (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def plot_history(
    history: Sequence[dict[str, Any]],
    path: str | Path,
    events: Sequence[dict[str, Any]] = (),
    title: str = "",
) -> Path:
    """PNG of best / generation-mean fitness and test accuracy against true evaluations;
    switches between latent and direct space are drawn as vertical lines. Episodic runs (records
    carrying `episodes` / `env_steps`, see `CountingTask`) add return against episodes and
    against environment steps: the axes RL results are compared on."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evals = [h["evaluations"] for h in history]
    episodic = bool(history) and all("episodes" in h and "env_steps" in h for h in history)
    fig, ax = plt.subplots(1, 3 if episodic else 2, figsize=(16 if episodic else 11, 4),
                           constrained_layout=True)  # fmt: skip
    ax[0].plot(evals, [h["best_fitness"] for h in history], label="best so far")
    mean = [h["mean_fitness"] for h in history]
    finite = [m if math.isfinite(m) and m < 1e8 else float("nan") for m in mean]
    ax[0].plot(evals, finite, label="generation mean", alpha=0.7)
    val = [(h["evaluations"], h["val_loss"]) for h in history
           if math.isfinite(h.get("val_loss", math.inf))]  # fmt: skip
    if val:  # the reported network's loss on held-out data (`validation.enabled`)
        ax[0].plot(*zip(*val, strict=True), label="reported network, validation", ls="--")
    stops = [e for e in events if e.get("event") == "early_stop"]
    if stops and history:
        ax[0].axvline(history[-1]["evaluations"], color="red", ls=":", lw=1, label="early stop")
    ax[0].set_xlabel("true fitness evaluations")
    ax[0].set_ylabel("fitness (loss, lower is better)")
    ax[0].legend()
    if episodic:  # the test return is drawn on both counters' axes
        _plot_returns(ax[1], history, "episodes", "episodes")
        _plot_returns(ax[2], history, "env_steps", "environment steps")
    else:
        acc = [(h["evaluations"], h["test_accuracy"]) for h in history if "test_accuracy" in h]
        if acc:
            ax[1].plot(*zip(*acc, strict=True), marker="o", ms=3)
            ax[1].set_ylabel("test accuracy of the reported genome")
        else:
            ax[1].text(
                0.5, 0.5, "no test metrics", ha="center", va="center", transform=ax[1].transAxes
            )
        ax[1].set_xlabel("true fitness evaluations")
    for e in events:
        if e.get("event") == "switch":
            for a in ax[: 1 if episodic else 2]:  # drawn on the evaluations axes only
                a.axvline(e["evaluations"], color="gray", ls="--", lw=0.8)
    if title:
        fig.suptitle(title)
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_returns(ax: Any, history: Sequence[dict[str, Any]], key: str, label: str) -> None:
    """Return (minus fitness) of the best so far and the generation mean, and the best's test
    return where it was measured, against the cumulative `key` counter."""
    x = [h[key] for h in history]
    ax.plot(x, [-h["best_fitness"] for h in history], label="best so far (training episodes)")
    mean = [
        -h["mean_fitness"] if math.isfinite(h["mean_fitness"]) else float("nan") for h in history
    ]
    ax.plot(x, mean, label="generation mean", alpha=0.7)
    test = [(h[key], h["test_return"]) for h in history if "test_return" in h]
    if test:
        ax.plot(*zip(*test, strict=True), marker="o", ms=3, label="test return of the best")
    ax.set_xlabel(label)
    ax.set_ylabel("return (higher is better)")
    ax.legend()


def summary_table(rows: dict[str, Any]) -> str:
    """A two-column Markdown table."""
    lines = ["| quantity | value |", "|---|---|"]
    for k, v in rows.items():
        if isinstance(v, float):
            v = f"{v:.5g}"
        lines.append(f"| {k} | {v} |")
    return "\n".join(lines)
