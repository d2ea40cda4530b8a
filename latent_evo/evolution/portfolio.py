"""A portfolio over search spaces: each generation goes to the space that has lately been
improving the best genome fastest, so evaluations stop flowing to a space that does not help.

    arms        "latent" (the run's own strategy and latent/residual space) and one or more
                direct arms ("direct": the whole genome; "direct:<patterns>": some tensors)
    credit      gain of a generation = how much it lowered its arm's best fitness, per
                evaluation; an arm's score = its mean gain over its generations among the
                last `window` (a sliding window in time, so every score is of today's scale)
    choice      first `probe` generations per arm in turn; then the arm with the best score,
                except that an arm with less than `min_share` of the last `window`
                generations is played (so an arm that went quiet is measured again, and one
                that starts helping again is found)
    relay       an arm about to play, whose best is behind the run's best, starts from the run's
                best genome: the latent arm re-bases (residual) or re-centres on its encoding
                (latent) whenever it is behind; a direct arm moves its mean there at its first
                play, later only when behind by more than `relay_margin` (relative): an ES
                mean is usually better than the samples that show its progress, and replacing
                it with another arm's lucky sample undoes that progress.

Why gains on the best rather than fitness: the arms are scored on the one quantity the run wants,
the best-so-far, in the same units; a space that cannot reach below the best (a decoder whose
image lies above it) earns nothing, however good its own population looks. Why a window in time
rather than a running average per arm: gains shrink as a run converges, so an arm played rarely
would keep an old, large average and be over-played (measured: 22 % of the budget to an arm
2.6x less productive, digits40-mlp).

Same interface as `switch.Switcher` (`maybe_switch`, `active`, `observe`, `phase`, state), so the
loop composes either. The choice is deterministic: a resumed run chooses exactly as the original.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from latent_evo.evolution.checkpoint import on_device, prefixed, unprefixed
from latent_evo.evolution.config import ConfigError, PortfolioConfig
from latent_evo.evolution.factory import SEED_DIRECT, RunContext, make_strategy
from latent_evo.evolution.rebase import recentre
from latent_evo.evolution.spaces import (
    DirectSpace,
    SearchSpace,
    SubsetSpace,
    subset_index,
    tensor_shapes,
)
from latent_evo.strategies import Strategy


def arm_name(patterns: list[str]) -> str:
    return "direct" if not patterns else "direct:" + ",".join(patterns)


class Portfolio:
    """The arms' strategies, spaces and statistics, and the rule that picks one per generation."""

    def __init__(self, cfg: PortfolioConfig, ctx: RunContext):
        self.cfg = cfg
        spec, seed = ctx.spec, ctx.seed
        # fresh minibatches: a gain is measured against the run's best re-scored on the same
        # batch (an arm's own best from an easier batch would credit noise, or hide progress)
        self.paired = ctx.paired
        self.enabled = True
        self.device = ctx.device
        self.names = ["latent"]
        self.spaces: dict[str, SearchSpace] = {}
        for i, patterns in enumerate(cfg.direct):
            name = arm_name(list(patterns))
            if name in self.names:
                raise ConfigError(f"portfolio.direct[{i}]: the arm {name!r} is listed twice")
            if patterns:
                try:
                    index = subset_index(spec, list(patterns))
                except ValueError as e:
                    raise ConfigError(f"portfolio.direct[{i}]: {e}") from None
                self.spaces[name] = SubsetSpace(
                    spec.numel, index, tensor_shapes(spec, list(patterns))
                )
            else:
                self.spaces[name] = DirectSpace(spec.numel, tensor_shapes(spec))
            self.names.append(name)
        # every direct arm draws from its own generator: adding an arm never shifts another's
        self.seeds = {n: seed + SEED_DIRECT + 97 * i for i, n in enumerate(self.names)}
        self.strategies: dict[str, Strategy] = {}  # direct arms, created at their first play
        self.gains: list[float] = []  # gain per evaluation of every generation so far
        self.plays = dict.fromkeys(self.names, 0)
        self.arm_best = dict.fromkeys(self.names, math.inf)  # best fitness each arm has seen
        self.played: list[str] = []  # the arm of every generation so far
        self.phase = "latent"

    # ------------------------------------------------------------------ the choice
    def choose(self) -> str:
        cfg = self.cfg
        if min(self.plays.values()) < cfg.probe:  # probing: every arm in turn
            return min(self.names, key=lambda n: (self.plays[n], self.names.index(n)))
        recent = self.played[-cfg.window :]
        share = {n: recent.count(n) / len(recent) for n in self.names}
        starved = [n for n in self.names if share[n] < cfg.min_share]
        if starved:  # an arm that went quiet is measured again
            return min(starved, key=lambda n: (share[n], self.names.index(n)))
        score = self.scores()
        best = max(self.names, key=lambda n: (score[n], -self.names.index(n)))
        # hysteresis: the arm playing now keeps the budget unless another clearly beats it
        # (one lucky generation of an arm played rarely is not a trend)
        if self.phase in score and score[best] <= (1 + cfg.hysteresis) * score[self.phase]:
            return self.phase
        return best

    def scores(self) -> dict[str, float]:
        """Each arm's mean gain per evaluation over its generations in the last `window`
        (0 for an arm with none there)."""
        w = self.cfg.window
        out = {}
        for name in self.names:
            g = [x for x, n in zip(self.gains[-w:], self.played[-w:], strict=True) if n == name]
            out[name] = sum(g) / len(g) if g else 0.0
        return out

    def maybe_switch(
        self,
        generation: int,
        history: list[dict[str, Any]],
        best_genome: Tensor | None,
        best_fitness: float,
        evaluations: int,
        latent: tuple[Strategy, SearchSpace],
    ) -> dict[str, Any] | None:
        """Pick this generation's arm, relaying the run's best genome to it when that is better
        than anything the arm has seen; returns a "switch" event when the arm changes."""
        if not self.played:  # the initial population (prior, zoo, base) was the latent arm's
            self.arm_best["latent"] = best_fitness
        name = self.choose() if best_genome is not None else "latent"
        own = self.arm_best[name]
        if name == "latent" or name not in self.strategies:
            relayed = own > best_fitness  # re-basing a residual search costs nothing
        else:  # an ES mean is better than its samples look: move it only for a clear lead
            relayed = own - best_fitness > self.cfg.relay_margin * abs(own)
        if relayed:
            self._relay(name, best_genome, latent)
            # the arm now searches from this genome (a latent re-centre decodes near, not at,
            # it: relaying again before another arm beats it would pin the search)
            self.arm_best[name] = best_fitness
        prev, self.phase = self.phase, name
        if prev == name:
            return None
        return {"generation": generation, "event": "switch", "from": prev, "to": name,
                "reason": "portfolio", "relayed": relayed, "best_fitness": best_fitness,
                "evaluations": evaluations,
                "scores": self.scores()}  # fmt: skip

    def _relay(self, name: str, genome: Tensor, latent: tuple[Strategy, SearchSpace]) -> None:
        if name == "latent":
            recentre(*latent, genome)
            return
        space = self.spaces[name]
        if isinstance(space, SubsetSpace):
            space.set_base(genome)
        mean = space.from_genomes(genome[None])[0]
        if name not in self.strategies:
            strat = make_strategy(self.cfg.strategy, space, self.device, self.seeds[name])
            strat.init(mean=mean)
            self.strategies[name] = strat
        else:
            self.strategies[name].set_mean(mean)

    def active(self, strategy: Strategy, space: SearchSpace) -> tuple[Strategy, SearchSpace]:
        if self.phase == "latent":
            return strategy, space
        return self.strategies[self.phase], self.spaces[self.phase]

    def observe(self, best_before: float, f: Tensor, best_after: float) -> None:
        """Credit this generation's arm with its gain on its own best, per evaluation."""
        name = self.phase
        finite = f[torch.isfinite(f)]
        new = float(finite.min()) if finite.numel() else math.inf
        own = self.arm_best[name]
        ref = best_before if self.paired else own
        gain = max(0.0, ref - new) / max(1, f.numel()) if math.isfinite(ref) else 0.0
        self.gains.append(gain)
        self.arm_best[name] = min(own, new)
        self.plays[name] += 1
        self.played.append(name)

    def shares(self) -> dict[str, float]:
        """Fraction of the generations each arm got so far."""
        total = max(1, len(self.played))
        return {n: self.played.count(n) / total for n in self.names}

    # ------------------------------------------------------------------ state
    def state_dict(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        t: dict[str, Tensor] = {}
        for name, space in self.spaces.items():
            t.update(prefixed(f"space.{name}", space.state_dict()))
        for name, strat in self.strategies.items():
            t.update(prefixed(f"strategy.{name}", strat.state_dict()))
        meta = {"phase": self.phase, "gains": self.gains, "plays": self.plays,
                "arm_best": self.arm_best, "played": self.played,
                "strategies": sorted(self.strategies)}  # fmt: skip
        return t, meta

    def load_state_dict(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        for name, space in self.spaces.items():
            space.load_state_dict(on_device(unprefixed(f"space.{name}", tensors), self.device))
        self.strategies = {}
        for name in meta["strategies"]:
            strat = make_strategy(
                self.cfg.strategy, self.spaces[name], self.device, self.seeds[name]
            )
            strat.load_state_dict(unprefixed(f"strategy.{name}", tensors))
            self.strategies[name] = strat
        self.phase = meta["phase"]
        self.gains, self.plays = list(meta["gains"]), dict(meta["plays"])
        self.arm_best, self.played = dict(meta["arm_best"]), list(meta["played"])
