"""The incumbent: the best network a run knows, and when a challenger may replace it.

On the task's fixed data a generation's best member replaces the incumbent when its fitness is
lower. On fresh minibatches (`fitness_batch: step`) fitness values of different batches are not
comparable, so the incumbent is re-scored on each generation's batch (`rescore`), and a
generation's best member, the luckiest of P on that batch, must also win on a second,
independent batch (`offer(..., confirm=True)`); else a chain of lucky wins drifts to worse
networks. Every evaluation spent here is returned to the caller, which counts it in the budget.

`ValidationGate` is what a run reports when `validation.enabled`: the task holds out part of its
training data (or episodes); each new training incumbent challenges the reported network on the
validation set, part by part, and replaces it only if its mean paired difference is below
`-z` standard errors. A search that over-fits its fitness sample, or drifts from a good start,
then never reports a network worse on validation than the one it had.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from latent_evo.evolution.config import ValidationConfig
from latent_evo.strategies.shaping import sanitize_fitness
from latent_evo.tasks.protocol import ValidatedTask

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
        self.version = 0  # counts replacements: a new incumbent challenges the validation gate
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
            self.version += 1
        return spent


class ValidationGate:
    """The reported network: `genome (n,)`, its training `fitness`, its validation `losses`
    `(chunks,)`; `since` counts the generations since it last changed (early stopping)."""

    def __init__(self, cfg: ValidationConfig, task: ValidatedTask):
        self.cfg, self.task = cfg, task
        self.genome: Tensor | None = None
        self.fitness = math.inf
        self.losses: Tensor | None = None
        self.since = 0

    @property
    def loss(self) -> float:
        """Mean validation loss of the reported network (inf before the first)."""
        return math.inf if self.losses is None else float(self.losses.mean())

    def challenge(self, genome: Tensor, fitness: float) -> int:
        """`genome (n,)` (training fitness `fitness`) replaces the reported network if it is
        better on validation by more than the noise; returns the evaluations spent (one: the
        challenger on the whole validation set; the reported network's losses are kept)."""
        losses = self.task.validation_losses(genome[None], self.cfg.chunks, self.cfg.metric)[0]
        losses = sanitize_fitness(losses)  # (chunks,)
        if self.losses is None:
            won = bool(torch.isfinite(losses).all())
        else:
            d = losses - self.losses  # (chunks,) paired differences: < 0 is better
            se = d.std() / math.sqrt(len(d))
            won = bool(d.mean() < 0) and bool(d.mean() + self.cfg.z * se < 0)
        if won:
            self.genome, self.fitness, self.losses = genome.clone(), float(fitness), losses
            self.since = 0
        return 1

    @property
    def exhausted(self) -> bool:
        """Patience has run out: the run stops early."""
        return bool(self.cfg.patience) and self.since >= self.cfg.patience

    def state_dict(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        t = {} if self.genome is None else {"genome": self.genome, "losses": self.losses}
        return t, {"fitness": self.fitness, "since": self.since}

    def load_state_dict(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        self.genome, self.losses = tensors.get("genome"), tensors.get("losses")
        self.fitness, self.since = meta["fitness"], meta["since"]
