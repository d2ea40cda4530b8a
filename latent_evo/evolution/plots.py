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
    switches between latent and direct space are drawn as vertical lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evals = [h["evaluations"] for h in history]
    fig, ax = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    ax[0].plot(evals, [h["best_fitness"] for h in history], label="best so far")
    mean = [h["mean_fitness"] for h in history]
    finite = [m if math.isfinite(m) and m < 1e8 else float("nan") for m in mean]
    ax[0].plot(evals, finite, label="generation mean", alpha=0.7)
    ax[0].set_xlabel("true fitness evaluations")
    ax[0].set_ylabel("fitness (loss, lower is better)")
    ax[0].legend()
    acc = [(h["evaluations"], h["test_accuracy"]) for h in history if "test_accuracy" in h]
    if acc:
        ax[1].plot(*zip(*acc, strict=True), marker="o", ms=3)
        ax[1].set_ylabel("test accuracy of the best genome")
    else:
        ax[1].text(0.5, 0.5, "no test metrics", ha="center", va="center", transform=ax[1].transAxes)
    ax[1].set_xlabel("true fitness evaluations")
    for e in events:
        if e.get("event") == "switch":
            for a in ax:
                a.axvline(e["evaluations"], color="gray", ls="--", lw=0.8)
    if title:
        fig.suptitle(title)
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def summary_table(rows: dict[str, Any]) -> str:
    """A two-column Markdown table."""
    lines = ["| quantity | value |", "|---|---|"]
    for k, v in rows.items():
        if isinstance(v, float):
            v = f"{v:.5g}"
        lines.append(f"| {k} | {v} |")
    return "\n".join(lines)
