"""The parts of a run beyond ask -> evaluate -> tell, each with its state declared here and its
inputs passed in; `LatentEvolution` (loop.py) composes them and gathers their state.

    Switcher   the phase (latent / direct), the direct phase's strategy and space, the switch rule
    Warmup     the direct-space population evolving alongside during the fine-tuning warm-up
    screen     surrogate pre-screening by the compressor's fitness head
    maybe_rebase / recentre      moving a latent search onto a genome (residual re-basing)

Switch rule (logged as a "switch" event with its reason): in latent space, when the best fitness
improved by less than `switch.tol` over the last `switch.window` generations (and at least a
window after the previous switch), continue in direct space from the best genome with
`switch.strategy` (over the whole genome, or only the tensors `switch.tensors` names); with
`switch.back`, a direct phase that stalls by the same rule returns to
latent space re-centred (residual: re-based) on the best genome. `final_direct_generations`
forces the last N generations into direct space (hybrid refinement).

Parts with scalar state return `(tensors, meta)` from `state_dict()`, like the run itself: tensors
go to safetensors, the rest to JSON.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from latent_evo.evolution.config import ConfigError, StrategyConfig, SwitchConfig, WarmupConfig
from latent_evo.evolution.spaces import (
    DecoderSpace,
    DirectSpace,
    LatentSpace,
    ResidualSpace,
    SearchSpace,
    SubsetSpace,
    subset_index,
    tensor_shapes,
)
from latent_evo.strategies import Strategy, get_strategy
from latent_evo.strategies.shaping import sanitize_fitness

# Offsets of the seeds of the run's independent random streams (strategy / switch / warm-up):
# each strategy draws from its own generator, so adding a part never shifts another's draws.
SEED_STRATEGY, SEED_DIRECT, SEED_WARMUP = 1, 2, 3

#: `(space, x (P, d)) -> (fitness (P,), genomes (P, n))`, counting the evaluations it spends
Evaluate = Callable[[SearchSpace, Tensor], tuple[Tensor, Tensor]]


def make_space(cfg: Any, task: Any, compressor: Any) -> SearchSpace:
    """The search space of `cfg.mode` (an `EvolveConfig`) for `task`'s genome."""
    mode, chunk = cfg.mode, cfg.decode_chunk
    if mode == "direct":
        return DirectSpace(task.spec.numel, tensor_shapes(task.spec))
    if mode == "hypernetwork":  # the genome is a generator's weights (no compressor)
        from latent_evo.evolution.hyper import HyperSpace

        return HyperSpace(task, cfg.hypernetwork)
    if mode == "decoder":  # the code and chosen decoder parameters
        dec = cfg.decoder
        return DecoderSpace(compressor, dec.components, cfg.seed, chunk, dec.latent_mutation_prob)
    if mode == "latent":
        return LatentSpace(compressor, chunk)
    return ResidualSpace(compressor, cfg.residual.alpha, chunk)


def make_strategy(
    cfg: StrategyConfig, space: SearchSpace, device: torch.device, seed: int
) -> Strategy:
    """`cfg`'s strategy over `space`. A strategy that exploits matrix structure (EGGROLL) is
    given the space's tensor shapes unless its hparams set them: without them EGGROLL's noise
    is full rank, i.e. it silently becomes OpenAI-ES. A GA over a space made of components
    (`DecoderSpace`: the code, decoder parameters) mutates each with the space's probability."""
    hparams = dict(cfg.hparams)
    if cfg.name == "eggroll" and "shapes" not in hparams and space.shapes:
        hparams["shapes"] = space.shapes
    probs = getattr(space, "mutation_probs", None)
    if cfg.name == "ga" and probs and "groups" not in hparams:
        hparams["groups"], hparams["group_mutation_prob"] = list(space.groups), list(probs)
    return get_strategy(
        cfg.name, dim=space.dim, popsize=cfg.popsize, device=device, seed=seed, **hparams
    )


def prefixed(prefix: str, sd: dict[str, Tensor]) -> dict[str, Tensor]:
    return {f"{prefix}.{k}": v for k, v in sd.items()}


def unprefixed(prefix: str, sd: dict[str, Tensor]) -> dict[str, Tensor]:
    p = prefix + "."
    return {k[len(p) :]: v for k, v in sd.items() if k.startswith(p)}


def on_device(sd: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    # spaces keep the tensors they are given; checkpoints load on the CPU
    return {k: v.to(device) for k, v in sd.items()}


# ---------------------------------------------------------------------- moving a latent search
def rebase_residual(space: ResidualSpace, strategy: Strategy, genome: Tensor) -> None:
    """Make `genome` the residual base, keeping every candidate's latent point: the anchor moves
    by delta, the strategy's mean by -delta."""
    old_anchor = space.anchor
    space.set_base(genome)
    strategy.set_mean(strategy.mean + old_anchor - space.anchor)
    strategy.reset_best()


def maybe_rebase(
    space: SearchSpace, strategy: Strategy, best_genome: Tensor, generation: int, every: int
) -> bool:
    """Residual search re-bases on the best genome every `every` generations (0: never), unless
    it is the base already; returns whether it did."""
    if not isinstance(space, ResidualSpace) or not every:
        return False
    if generation % every or torch.equal(best_genome, space.base):
        return False
    rebase_residual(space, strategy, best_genome)
    return True


def recentre(strategy: Strategy, space: SearchSpace, genome: Tensor) -> None:
    """Continue a latent search from `genome`: residual re-bases on it exactly; latent mode
    re-centres on its encoding."""
    if isinstance(space, ResidualSpace):
        rebase_residual(space, strategy, genome)
        return
    with torch.no_grad():
        strategy.set_mean(space.from_genomes(genome[None])[0])
    strategy.reset_best()


# ---------------------------------------------------------------------- switching
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
        spec: Any,
        device: torch.device,
        seed: int,
        paired: bool = False,
    ):
        self.cfg = cfg
        self.enabled = bool(cfg.enabled and mode != "direct")
        # fresh minibatches: best-so-far values of different generations come from different
        # batches, so a stall is judged on paired gains instead (each generation's best member
        # vs the run's best re-scored on the same batch); with a fixed batch both rules agree
        self.paired = paired
        self.gains: list[float] = []
        self.device = device
        self.seed = seed + SEED_DIRECT
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


# ---------------------------------------------------------------------- warm-up
class Warmup:
    """The direct-space population of the fine-tuning warm-up: it evolves alongside the latent
    search and feeds the archive (its evaluations are real, so it may find the best genome)
    until a fine-tune round fits the archive to `threshold`."""

    def __init__(self, cfg: WarmupConfig, numel: int, device: torch.device, seed: int):
        self.cfg = cfg
        self.device = device
        self.seed = seed + SEED_WARMUP
        self.space = DirectSpace(numel)
        self.strategy: Strategy | None = None  # created at its first generation, at the best
        self.active = True

    def step(self, best_genome: Tensor, evaluate: Evaluate) -> tuple[Tensor, Tensor]:
        """One generation; returns its fitness `(P,)` and genomes `(P, n)`."""
        if self.strategy is None:
            self.strategy = make_strategy(self.cfg.strategy, self.space, self.device, self.seed)
            self.strategy.init(mean=best_genome)
        x = self.strategy.ask()
        f, g = evaluate(self.space, x)
        self.strategy.tell(f)
        return f, g

    def end_if_fitted(self, loss: float) -> bool:
        """End the warm-up once the compressor's archive loss is below the threshold; returns
        whether it ended now."""
        if self.active and loss < self.cfg.threshold:
            self.active = False
            return True
        return False

    def state_dict(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        t = {} if self.strategy is None else prefixed("strategy", self.strategy.state_dict())
        return t, {"active": self.active}

    def load_state_dict(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        sd = unprefixed("strategy", tensors)
        if sd:
            self.strategy = make_strategy(self.cfg.strategy, self.space, self.device, self.seed)
            self.strategy.load_state_dict(sd)
        self.active = meta["active"]


# ---------------------------------------------------------------------- surrogate screening
def screen(
    x: Tensor, space: SearchSpace, compressor: Any, fraction: float, evaluate: Evaluate
) -> tuple[Tensor, Tensor, Tensor, int, float]:
    """Rank the pool `x (P, d)` by the fitness head; evaluate only the top fraction. Unevaluated
    offspring are told a fitness worse than every evaluated one, in the head's order, so a
    rank-based strategy sees a consistent ranking.

    Returns (fitness to tell `(P,)`, true fitness `(k,)`, genomes `(k, n)`, offspring not
    evaluated, head/truth agreement: the fraction of concordant pairs among the evaluated)."""
    P = x.shape[0]
    k = max(1, math.ceil(fraction * P))
    z = x + space.anchor if isinstance(space, ResidualSpace) else x
    with torch.no_grad():
        pred = compressor.predict_fitness(z).reshape(-1).float()  # (P,)
    order = torch.argsort(pred, stable=True)
    top = order[:k]
    f_top, g = evaluate(space, x[top])
    rest = order[k:]
    f_all = torch.empty(P, device=x.device)
    f_all[top] = f_top
    if len(rest):
        worst = torch.nan_to_num(f_top, nan=0.0, posinf=0.0).max()
        f_all[rest] = worst + 1.0 + (pred[rest] - pred[rest].min())
    dp = pred[top][:, None] - pred[top][None, :]
    dt = f_top[:, None] - f_top[None, :]
    mask = torch.triu(torch.ones(k, k, dtype=torch.bool, device=x.device), 1)
    agree = float(((dp * dt)[mask] > 0).float().mean()) if k > 1 else float("nan")
    return f_all, f_top, g, P - k, agree
