"""The incumbent: the best network a run knows, and when a challenger may replace it.

On the task's fixed data a generation's best member replaces the incumbent when its fitness is
lower. On fresh minibatches (`fitness_batch: step`) fitness values of different batches are not
comparable, so the incumbent is re-scored on each generation's batch (`rescore`), and a
generation's best member, the luckiest of P on that batch, must also win on a second,
independent batch (`offer(..., confirm=True)`); else a chain of lucky wins drifts to worse
networks. Every evaluation spent here is returned to the caller, which counts it in the budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from latent_evo.strategies.shaping import sanitize_fitness

#: `(genomes (P, n), batch) -> (P,)` fitness, not counted
EvaluateGenomes = Callable[[Tensor, Any], Tensor]


class Incumbent:
    """`genome (n,)` and its `fitness` (inf until the first offer). `batch_of(generator)` draws
    an independent minibatch on fresh minibatches; None means fixed data (no re-scoring)."""

    def __init__(
        self,
        evaluate: EvaluateGenomes,
        batch_of: Callable[[torch.Generator], Any] | None,
        seed: int,
    ):
        self.genome: Tensor | None = None
        self.fitness = math.inf
        self._evaluate, self._batch_of, self._seed = evaluate, batch_of, seed

    def rescore(self, batch: Any) -> int:
        """Re-evaluate the incumbent on this generation's `batch` (fresh minibatches only), so it
        is replaced only by a member that beats it on the same data; returns evaluations spent."""
        if self._batch_of is None or self.genome is None:
            return 0
        self.fitness = float(sanitize_fitness(self._evaluate(self.genome[None], batch))[0])
        return 1

    def offer(self, f: Tensor, g: Tensor, confirm: bool = False, generation: int = 0) -> int:
        """The best of `g (P, n)` with fitness `f (P,)` replaces the incumbent if better (and,
        with `confirm` on fresh minibatches, better on a second batch too); returns the
        evaluations spent."""
        f = sanitize_fitness(f)  # NaN and +-inf rank as the worst, never as the best
        i = int(torch.argmin(f))
        if not float(f[i]) < self.fitness:
            return 0
        spent, won = 0, True
        if confirm and self._batch_of is not None and self.genome is not None:
            gen = torch.Generator().manual_seed(self._seed * 7919 + 2**40 + generation)
            pair = torch.stack([g[i], self.genome])
            fp = sanitize_fitness(self._evaluate(pair, self._batch_of(gen)))
            spent, won = 2, bool(fp[0] < fp[1])
        if won:
            self.fitness, self.genome = float(f[i]), g[i].clone()
        return spent
