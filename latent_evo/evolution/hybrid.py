"""The parts of the loop that go beyond ask -> evaluate -> tell, as a mixin of
`LatentEvolution`: surrogate pre-screening, the direct warm-up population, automatic switching
between latent and direct space, residual re-basing, and online fine-tuning with re-encoding.

Switch rule (logged as a "switch" event with its reason): in latent space, when the best fitness
improved by less than `switch.tol` over the last `switch.window` generations (and at least a
window after the previous switch), continue in direct space from the best genome with
`switch.strategy` (over the whole genome, or only the tensors `switch.tensors` names); with
`switch.back`, a direct phase that stalls by the same rule returns to
latent space re-centred (residual: re-based) on the best genome. `final_direct_generations`
forces the last N generations into direct space (hybrid refinement).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from latent_evo.evolution.config import StrategyConfig
from latent_evo.evolution.finetune import finetune, reencode
from latent_evo.evolution.spaces import ResidualSpace, SubsetSpace
from latent_evo.strategies import Strategy, get_strategy

# Offsets of the seeds of the run's independent random streams (strategy / switch / warm-up).
SEED_STRATEGY, SEED_DIRECT, SEED_WARMUP = 1, 2, 3


def make_strategy(cfg: StrategyConfig, dim: int, device: torch.device, seed: int) -> Strategy:
    return get_strategy(
        cfg.name, dim=dim, popsize=cfg.popsize, device=device, seed=seed, **cfg.hparams
    )


def strategy_points(strategy: Strategy) -> Tensor:
    """The strategy's current state as points `(k, d)`: a GA's population, an ES's mean."""
    pop = getattr(strategy, "population", None)
    return pop if torch.is_tensor(pop) and pop.ndim == 2 else strategy.mean[None]


class HybridMixin:
    """Methods of `LatentEvolution` (they use its attributes: cfg, strategy, space, ...)."""

    def _screened_evaluation(self, space, x, record) -> tuple[Tensor, Tensor, Tensor]:
        """Rank the pool by the fitness head; evaluate only the top fraction. Unevaluated
        offspring are told a fitness worse than every evaluated one, in the head's order, so a
        rank-based strategy sees a consistent ranking."""
        P = x.shape[0]
        k = max(1, math.ceil(self.cfg.surrogate.fraction * P))
        z = x + space.anchor if isinstance(space, ResidualSpace) else x
        with torch.no_grad():
            pred = self.compressor.predict_fitness(z).reshape(-1).float()  # (P,)
        order = torch.argsort(pred, stable=True)
        top = order[:k]
        f_top, g = self._evaluate(space, x[top])
        rest = order[k:]
        f_all = torch.empty(P, device=x.device)
        f_all[top] = f_top
        if len(rest):
            worst = torch.nan_to_num(f_top, nan=0.0, posinf=0.0).max()
            f_all[rest] = worst + 1.0 + (pred[rest] - pred[rest].min())
        self.saved_evaluations += P - k
        # agreement: fraction of concordant pairs between head and truth among the evaluated
        dp = pred[top][:, None] - pred[top][None, :]
        dt = f_top[:, None] - f_top[None, :]
        mask = torch.triu(torch.ones(k, k, dtype=torch.bool, device=x.device), 1)
        agree = float(((dp * dt)[mask] > 0).float().mean()) if k > 1 else float("nan")
        record.update(surrogate_agreement=agree, saved_evaluations=self.saved_evaluations)
        return f_all, f_top, g

    def _warmup_step(self) -> None:
        """The direct-space population of the warm-up phase: evolves alongside, feeds the
        archive (and may find the best genome itself: its evaluations are real)."""
        if self.warmup_strategy is None:
            wcfg = self.cfg.finetune.warmup.strategy
            self.warmup_strategy = make_strategy(
                wcfg, self.n, self.device, self.cfg.seed + SEED_WARMUP
            )
            self.warmup_strategy.init(mean=self.best_genome)
        xd = self.warmup_strategy.ask()
        fd, gd = self._evaluate(self.direct_space, xd)
        self.warmup_strategy.tell(fd)
        self._record_best(fd, gd)
        self.archive.add(gd, fd)

    # ------------------------------------------------------------------ switching / rebasing
    def _stalled(self) -> bool:
        w = self.cfg.switch.window
        if self.generation - self.last_switch < w or len(self.history) < w:
            return False
        old = self.history[-w]["best_fitness"]
        return old - self.best_fitness < self.cfg.switch.tol

    def _maybe_switch(self) -> None:
        sw = self.cfg.switch
        if not sw.enabled or self.cfg.mode == "direct":
            return
        final = (
            sw.final_direct_generations > 0
            and self.cfg.generations is not None
            and self.generation >= self.cfg.generations - sw.final_direct_generations
        )
        if self.phase == "latent" and (final or self._stalled()):
            reason = (
                "final direct refinement" if final else f"stall: < {sw.tol} in {sw.window} gens"
            )
            space = self.switch_space
            if isinstance(space, SubsetSpace):
                space.set_base(self.best_genome)
            mean = space.from_genomes(self.best_genome[None])[0]
            if self.direct_strategy is None:
                self.direct_strategy = make_strategy(
                    sw.strategy, space.dim, self.device, self.cfg.seed + SEED_DIRECT
                )
                self.direct_strategy.init(mean=mean)
            else:
                self.direct_strategy.set_mean(mean)
            self._switch("direct", reason)
        elif self.phase == "direct" and sw.back and not final and self._stalled():
            self._recentre_latent(self.best_genome)
            self._switch("latent", f"direct stall: < {sw.tol} in {sw.window} gens")

    def _switch(self, phase: str, reason: str) -> None:
        self.events.append(
            {"generation": self.generation, "event": "switch", "from": self.phase, "to": phase,
             "reason": reason, "best_fitness": self.best_fitness, "evaluations": self.evaluations}
        )  # fmt: skip
        self.phase = phase
        self.last_switch = self.generation

    def _recentre_latent(self, genome: Tensor) -> None:
        """Continue latent search from `genome`: residual re-bases on it exactly; latent mode
        re-centres on its encoding."""
        if isinstance(self.space, ResidualSpace):
            old_anchor = self.space.anchor
            self.space.set_base(genome)
            self.strategy.set_mean(self.strategy.mean + old_anchor - self.space.anchor)
        else:
            with torch.no_grad():
                self.strategy.set_mean(self.space.from_genomes(genome[None])[0])
        self.strategy.reset_best()

    def _maybe_rebase(self) -> None:
        k = self.cfg.residual.rebase_every
        if not isinstance(self.space, ResidualSpace) or self.phase != "latent" or not k:
            return
        if self.generation % k or torch.equal(self.best_genome, self.space.base):
            return
        # keep every candidate's latent point: anchor moves by delta, the strategy by -delta
        old_anchor = self.space.anchor
        self.space.set_base(self.best_genome)
        self.strategy.set_mean(self.strategy.mean + old_anchor - self.space.anchor)
        self.strategy.reset_best()
        self.events.append(
            {"generation": self.generation, "event": "rebase", "best_fitness": self.best_fitness}
        )

    # ------------------------------------------------------------------ online fine-tuning
    def _finetune_and_reencode(self, record: dict[str, Any]) -> None:
        ft, strat = self.cfg.finetune, self.strategy
        with torch.no_grad():
            points = strategy_points(strat)  # (k, d)
            targets = self.space.to_genomes(points)  # phenotypes before the fine-tune
            f_before = self._evaluate_genomes(targets)
        stats = finetune(
            self.compressor, self.task, self.archive, ft.steps, ft.lr, ft.batch_size, self.rng,
            # fresh minibatches each round: a pure function of (generation, step)
            batch_fn=lambda s: (
                self.task.batch(self.generation * 1009 + s) if hasattr(self.task, "batch") else None
            ),
            fitness_weight=ft.fitness_weight, head_weight=ft.head_weight,
        )  # fmt: skip
        if isinstance(self.space, ResidualSpace):  # the anchor's decoding changed
            self.space.set_base(self.space.base, self.space.anchor)
        x_new, err = reencode(self.space, targets, ft.reencode_steps, ft.reencode_lr)
        if "population" in strat.state_names and len(x_new) > 1:
            strat.init(population=x_new)
        else:
            strat.set_mean(x_new[0])
        strat.reset_best()
        with torch.no_grad():
            f_after = self._evaluate_genomes(self.space.to_genomes(x_new))
        self.evaluations += 2 * len(x_new)  # the drift check is real evaluations
        drift = float((f_after - f_before).abs().mean())
        event = {"generation": self.generation, "event": "finetune", **stats,
                 "reencode_error": err, "fitness_drift": drift,
                 "fitness_before": float(f_before.mean()), "fitness_after": float(f_after.mean())}  # fmt: skip
        if self.warmup_active and stats["loss_after"] < ft.warmup.threshold:
            self.warmup_active = False
            event["warmup_ended"] = True
        self.events.append(event)
        record.update(finetune_loss=stats["loss_after"], reencode_error=err, fitness_drift=drift)
