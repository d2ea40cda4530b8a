"""Switching between latent and direct space (`switch:` in the config): the `Switcher`.

Switch rule (logged as a "switch" event with its reason): in latent space, when the best fitness
improved by less than `switch.tol` over the last `switch.window` generations (and at least a
window after the previous switch), continue in direct space from the best genome with
`switch.strategy` (over the whole genome, or only the tensors `switch.tensors` names); with
`switch.back`, a direct phase that stalls by the same rule returns to latent space re-centred
(residual: re-based) on the best genome. `final_direct_generations` forces the last N
generations into direct space (hybrid refinement).

Like the run itself, `state_dict()` returns `(tensors, meta)`: tensors go to safetensors, the
rest to JSON.
"""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor

from latent_evo.evolution.checkpoint import on_device, prefixed, unprefixed
from latent_evo.evolution.config import ConfigError, SwitchConfig
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
from latent_evo.strategies.shaping import sanitize_fitness


class Switcher:
    """Which space searches, and when that changes. In latent/residual mode the run starts in
    "latent"; a switch to "direct" hands the search to `strategy` over `space` (the whole
    genome, or a `SubsetSpace` of `switch.tensors` around the best genome at the switch). In
    direct mode the phase is "direct" for good and the run's own strategy searches."""

    def __init__(
        self,
        cfg: SwitchConfig,
        mode: str,
        generations: int | None,
        ctx: RunContext,
    ):
        self.cfg = cfg
        self.enabled = bool(cfg.enabled and mode != "direct")
        # fresh minibatches: best-so-far values of different generations come from different
        # batches, so a stall is judged on paired gains instead (each generation's best member
        # vs the run's best re-scored on the same batch); with a fixed batch both rules agree
        self.paired = ctx.paired
        self.gains: list[float] = []
        self.device = ctx.device
        self.seed = ctx.seed + SEED_DIRECT
        spec = ctx.spec
        n = cfg.final_direct_generations
        # the generation from which the run stays in direct space (final refinement), if any
        self.final_from = generations - n if n > 0 and generations is not None else None
        self.space: SearchSpace = DirectSpace(spec.numel, tensor_shapes(spec))
        if cfg.tensors:
            if mode == "direct":
                raise ConfigError("switch.tensors: a direct-mode run never switches; drop it")
            try:
                index = subset_index(spec, cfg.tensors)
            except ValueError as e:
                raise ConfigError(f"switch.tensors: {e}") from None
            self.space = SubsetSpace(spec.numel, index, tensor_shapes(spec, cfg.tensors))
        # created at the first switch to direct space, then kept (re-centred) for later ones
        self.strategy: Strategy | None = None
        self.phase = "direct" if mode == "direct" else "latent"
        self.last_switch = 0  # generation of the latest switch: no new one within a window

    def active(self, strategy: Strategy, space: SearchSpace) -> tuple[Strategy, SearchSpace]:
        """The pair that searches now: the direct phase's own after a switch, else the run's."""
        if self.phase == "direct" and self.strategy is not None:
            return self.strategy, self.space
        return strategy, space

    def stalled(self, generation: int, history: list[dict[str, Any]], best: float) -> bool:
        w = self.cfg.window
        if generation - self.last_switch < w or len(history) < w:
            return False
        if self.paired:  # the last w - 1 gains: what history[-w] - best measures unpaired
            return sum(self.gains[len(self.gains) - w + 1 :]) < self.cfg.tol
        return history[-w]["best_fitness"] - best < self.cfg.tol

    def maybe_switch(
        self,
        generation: int,
        history: list[dict[str, Any]],
        best_genome: Tensor,
        best_fitness: float,
        evaluations: int,
        latent: tuple[Strategy, SearchSpace],
    ) -> dict[str, Any] | None:
        """Switch if the rule says so (switching back re-centres the `latent` strategy and space
        on the best genome); returns the "switch" event, or None."""
        if not self.enabled:
            return None
        sw = self.cfg
        final = self.final_from is not None and generation >= self.final_from
        if self.phase == "latent" and (final or self.stalled(generation, history, best_fitness)):
            reason = (
                "final direct refinement" if final else f"stall: < {sw.tol} in {sw.window} gens"
            )
            self._enter_direct(best_genome)
            to = "direct"
        elif (
            self.phase == "direct"
            and sw.back
            and not final
            and self.stalled(generation, history, best_fitness)
        ):
            recentre(*latent, best_genome)
            to, reason = "latent", f"direct stall: < {sw.tol} in {sw.window} gens"
        else:
            return None
        event = {"generation": generation, "event": "switch", "from": self.phase, "to": to,
                 "reason": reason, "best_fitness": best_fitness, "evaluations": evaluations}  # fmt: skip
        self.phase, self.last_switch = to, generation
        return event

    def observe(self, best_before: float, f: Tensor, best_after: float) -> None:
        """Paired: record this generation's gain on its own batch (else the rule reads the
        run's history)."""
        if self.paired:
            new = float(sanitize_fitness(f).min())  # NaN / inf rank as the worst
            self.gains.append(max(0.0, best_before - new) if math.isfinite(best_before) else 0.0)

    def _enter_direct(self, best_genome: Tensor) -> None:
        if isinstance(self.space, SubsetSpace):
            self.space.set_base(best_genome)
        mean = self.space.from_genomes(best_genome[None])[0]
        if self.strategy is None:
            self.strategy = make_strategy(self.cfg.strategy, self.space, self.device, self.seed)
            self.strategy.init(mean=mean)
        else:
            self.strategy.set_mean(mean)

    def state_dict(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        t = prefixed("space", self.space.state_dict())
        if self.strategy is not None:
            t.update(prefixed("strategy", self.strategy.state_dict()))
        return t, {"phase": self.phase, "last_switch": self.last_switch, "gains": self.gains}

    def load_state_dict(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        self.space.load_state_dict(on_device(unprefixed("space", tensors), self.device))
        sd = unprefixed("strategy", tensors)
        if sd:
            self.strategy = make_strategy(self.cfg.strategy, self.space, self.device, self.seed)
            self.strategy.load_state_dict(sd)
        self.phase, self.last_switch = meta["phase"], meta["last_switch"]
        self.gains = list(meta.get("gains", []))
