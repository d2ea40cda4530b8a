"""Fresh minibatches that grow when their noise hides the search's progress: `BatchSchedule`.

A fixed fitness sample lets a search over-fit it; fresh minibatches (`fitness_batch: step`) see
the data, but a small batch is noisy. Each generation the run re-scores its incumbent on the
new batch; the spread of the differences of its scores on consecutive batches (a steady
progress cancels in the spread) measures the batch's noise for one network. When, over `window` differences, that
noise exceeds the spread of the members of one generation on one batch (their real
differences plus the batch's), the members' ranking is mostly noise: the batch grows by
`factor` (up to `max_size`).
"""

from __future__ import annotations

import statistics
from typing import Any

from torch import Tensor

from latent_evo.evolution.config import MinibatchConfig


class BatchSchedule:
    """`size`: the batch size of the next generation (None: the task's default)."""

    def __init__(self, cfg: MinibatchConfig):
        self.cfg = cfg
        self.size = cfg.size
        # differences of the incumbent's scores on consecutive batches
        self.diffs: list[float] = []
        self.last: float | None = None  # the incumbent's score on the previous batch

    def observe(self, rescore: float, f: Tensor) -> dict | None:
        """This generation's re-score of the incumbent and the members' fitness `f (P,)`;
        returns a "batch_grow" event when the batch grows."""
        if not self.cfg.grow:
            return None
        if self.last is not None:
            self.diffs.append(rescore - self.last)
        self.last = rescore
        if len(self.diffs) < self.cfg.window:
            return None
        # var(a - b) = 2 var(score) on independent batches; the standard deviation leaves out
        # the mean difference, i.e. the incumbent's steady progress
        noise = statistics.stdev(self.diffs[-self.cfg.window :]) / 2**0.5
        spread = float(f.float().std())
        grown = int(self.size * self.cfg.factor)
        if self.cfg.max_size is not None:
            grown = min(grown, self.cfg.max_size)
        if noise <= spread or grown <= self.size:
            return None
        size, self.size, self.diffs = self.size, grown, []
        return {"event": "batch_grow", "from": size, "size": grown, "noise": noise,
                "spread": spread}  # fmt: skip

    def state(self) -> dict[str, Any]:
        return {"size": self.size, "diffs": self.diffs, "last": self.last}

    def load(self, meta: dict[str, Any]) -> None:
        self.size, self.diffs, self.last = meta["size"], list(meta["diffs"]), meta["last"]
