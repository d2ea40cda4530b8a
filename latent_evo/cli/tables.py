"""Fixed-width results tables for the terminal (the demos print one per run)."""

from __future__ import annotations

from typing import Any

ACCURACY = (("test accuracy", "test_accuracy"), ("test loss", "test_loss"))


def results_table(rows: list[dict[str, Any]], *metrics: tuple[str, str]) -> str:
    """A fixed-width table of `rows`; `metrics`: (column title, row key), default accuracy + loss."""
    metrics = metrics or ACCURACY
    head = ["method", "evaluations", "wall time (s)", *(title for title, _ in metrics)]
    lines = [head] + [
        [r["method"], str(r["evaluations"]), f"{r['wall_s']:.1f}", *(f"{r[k]:.3f}" for _, k in metrics)]
        for r in rows
    ]  # fmt: skip
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*lines[0]), fmt.format(*["-" * w for w in widths])]
    return "\n".join(out + [fmt.format(*line) for line in lines[1:]])
