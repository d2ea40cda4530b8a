"""The tqdm bar of a run: one tick per generation, with evaluations, best and mean fitness, the
searching space and evaluations per second; shown on the main rank only."""

from __future__ import annotations

from typing import Any

from latent_evo.evolution.distributed import is_main


class RunProgress:
    """`update(record)` after each generation, `close()` at the end; a no-op when disabled."""

    def __init__(self, total: int | None, initial: int, enabled: bool) -> None:
        self.bar = None
        if enabled and is_main():
            from tqdm.auto import tqdm  # lazily: a run without a bar never imports it

            self.bar = tqdm(total=total, initial=initial, unit="gen", dynamic_ncols=True)

    def update(self, rec: dict[str, Any]) -> None:
        if self.bar is None:
            return
        elapsed = max(self.bar.format_dict["elapsed"], 1e-9)
        self.bar.set_postfix(
            evals=rec["evaluations"], best=f"{rec['best_fitness']:.4g}",
            mean=f"{rec['mean_fitness']:.4g}", phase=rec["phase"],
            evals_s=f"{rec['evaluations'] / elapsed:.0f}", refresh=False,
        )  # fmt: skip
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
