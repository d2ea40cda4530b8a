"""Online fine-tuning of the compressor on the genomes an evolution run has evaluated.

The run keeps an `Archive` of every truly evaluated genome with its fitness (a ring buffer of
tensors, checkpointable). Every k generations `finetune` takes a few optimiser steps of the
combined loss on archive minibatches; `reencode` then moves the strategy's codes so that they
decode to the same phenotypes as before the fine-tune (encoder first, then a few gradient steps
on the code against the old genome), and reports how far they drifted. `finetune_and_reencode`
is one such round of a run: fine-tune, re-encode, re-seat the strategy, measure the drift.

`Warmup` is the two-phase schedule of fine-tuning: a direct-space population evolves alongside
the latent search and feeds the archive until the compressor fits it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from latent_evo.evolution.checkpoint import prefixed, unprefixed
from latent_evo.evolution.config import FinetuneConfig, WarmupConfig
from latent_evo.evolution.factory import SEED_WARMUP, RunContext, make_strategy
from latent_evo.evolution.spaces import DirectSpace, Evaluate, ResidualSpace, SearchSpace
from latent_evo.strategies import PopulationStrategy, Strategy
from latent_evo.tasks.protocol import MinibatchTask


class Archive:
    """Ring buffer of `(genome (n,), fitness)` pairs on the run's device."""

    def __init__(self, capacity: int, numel: int, device: torch.device, dtype=torch.float32):
        self.capacity = int(capacity)
        self.genomes = torch.zeros(self.capacity, numel, device=device, dtype=dtype)
        self.fitness = torch.zeros(self.capacity, device=device, dtype=dtype)
        self.count = 0  # total ever added; the buffer holds min(count, capacity)

    def __len__(self) -> int:
        return min(self.count, self.capacity)

    def add(self, genomes: Tensor, fitness: Tensor) -> None:
        genomes, fitness = genomes[-self.capacity :], fitness[-self.capacity :]
        idx = (torch.arange(len(genomes), device=genomes.device) + self.count) % self.capacity
        self.genomes[idx] = genomes.to(self.genomes.dtype)
        self.fitness[idx] = fitness.to(self.fitness.dtype)
        self.count += len(genomes)

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        # indices drawn on CPU: the same generator state gives the same batch on every device
        idx = torch.randint(0, len(self), (n,), generator=generator).to(self.genomes.device)
        return self.genomes[idx], self.fitness[idx]

    def state_dict(self) -> dict[str, Tensor]:
        return {
            "genomes": self.genomes,
            "fitness": self.fitness,
            "count": torch.tensor(self.count, dtype=torch.int64),
        }

    def load_state_dict(self, sd: dict[str, Tensor]) -> None:
        self.genomes = sd["genomes"].to(self.genomes.device).clone()
        self.fitness = sd["fitness"].to(self.fitness.device).clone()
        self.count = int(sd["count"])


def finetune_loss(
    compressor: Any,
    task: Any,
    genomes: Tensor,
    fitness: Tensor,
    batch: Any,
    fitness_weight: float = 1.0,
    head_weight: float = 0.1,
) -> tuple[Tensor, dict[str, float]]:
    """The pretraining loss (`latent_evo.compressor.losses.compressor_loss`) on archive genomes `(B, n)`
    with their true `fitness (B,)`: reconstruction + functional fitness term on `batch` + head
    + KL. `task.fitness(params, batch)` is the differentiable population fitness."""
    from latent_evo.compressor.losses import compressor_loss

    tokens = compressor.tokenizer.tokenize(genomes)  # (B, T, C) normalised
    terms = compressor_loss(
        compressor,
        tokens,
        fitness_fn=task.fitness,
        batch=batch,
        fitness=fitness,
        lambda_fit=fitness_weight,
        lambda_head=head_weight,
    )
    parts = {k: float(v.detach()) for k, v in terms.items() if k in ("recon", "fit", "head", "kl")}
    return terms["loss"], parts


def finetune(
    compressor: Any,
    task: Any,
    archive: Archive,
    steps: int,
    lr: float,
    batch_size: int,
    generator: torch.Generator,
    batch_fn: Callable[[int], Any],
    fitness_weight: float = 1.0,
    head_weight: float = 0.1,
    eval_size: int = 64,
) -> dict[str, float]:
    """`steps` Adam steps on archive minibatches; returns the archive loss before and after
    (on a fixed evaluation sample, so the two numbers are comparable)."""
    n_eval = min(len(archive), eval_size)
    eval_g, eval_f = archive.genomes[:n_eval], archive.fitness[:n_eval]
    eval_batch = batch_fn(0)

    def archive_loss() -> float:
        compressor.eval()
        with torch.no_grad():
            loss, _ = finetune_loss(
                compressor, task, eval_g, eval_f, eval_batch, fitness_weight, head_weight
            )
        return float(loss)

    before = archive_loss()
    params = [p for p in compressor.parameters() if p.requires_grad]
    # a fresh optimiser per round: no optimiser state to checkpoint between rounds
    opt = torch.optim.Adam(params, lr=lr)
    compressor.train()
    parts: dict[str, float] = {}
    for step in range(steps):
        g, f = archive.sample(min(batch_size, len(archive)), generator)
        loss, parts = finetune_loss(
            compressor, task, g, f, batch_fn(step + 1), fitness_weight, head_weight
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    compressor.eval()
    after = archive_loss()
    return {
        "loss_before": before,
        "loss_after": after,
        **{f"last_{k}": v for k, v in parts.items()},
    }


def reencode(
    space: SearchSpace, targets: Tensor, steps: int = 20, lr: float = 0.05
) -> tuple[Tensor, float]:
    """Codes `(P, d)` whose genomes under the (fine-tuned) `space` match `targets (P, n)`: the
    encoder's guess refined by `steps` Adam steps on the mean squared genome error. Returns the
    codes and the relative reconstruction error ||to_genomes(x) - targets|| / ||targets||."""
    with torch.no_grad():
        x0 = space.from_genomes(targets)
    x = x0.clone().requires_grad_(True)
    if steps > 0:
        opt = torch.optim.Adam([x], lr=lr)
        for _ in range(steps):
            loss = (space.to_genomes(x) - targets).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    x = x.detach()
    with torch.no_grad():
        # per row, keep whichever of the encoder's guess and the refined code is closer
        e0 = (space.to_genomes(x0) - targets).pow(2).sum(1)  # (P,)
        e1 = (space.to_genomes(x) - targets).pow(2).sum(1)
        x = torch.where((e1 <= e0)[:, None], x, x0)
        err = torch.minimum(e0, e1).sum().sqrt() / targets.norm().clamp_min(1e-12)
    return x, float(err)


def strategy_points(strategy: Strategy) -> Tensor:
    """The strategy's current state as points `(k, d)`: a GA's population, an ES's mean."""
    if isinstance(strategy, PopulationStrategy) and strategy.population is not None:
        return strategy.population
    return strategy.mean[None]


def finetune_and_reencode(
    compressor: Any,
    task: Any,
    archive: Archive,
    space: SearchSpace,
    strategy: Strategy,
    cfg: FinetuneConfig,
    generator: torch.Generator,
    generation: int,
    evaluate_genomes: Callable[[Tensor], Tensor],
) -> tuple[dict[str, float], int]:
    """One fine-tuning round of a run: fine-tune `compressor` on `archive`, then re-encode the
    strategy's points so they decode to the networks they were before, and re-seat `strategy`
    on them. The fitness of those networks before and after (`evaluate_genomes`, real
    evaluations) measures the drift. Returns the report and the evaluations spent."""
    with torch.no_grad():
        points = strategy_points(strategy)  # (k, d)
        targets = space.to_genomes(points)  # phenotypes before the fine-tune
        f_before = evaluate_genomes(targets)
    stats = finetune(
        compressor, task, archive, cfg.steps, cfg.lr, cfg.batch_size, generator,
        # fresh minibatches each round: a pure function of (generation, step)
        batch_fn=lambda s: (
            task.batch(generation * 1009 + s) if isinstance(task, MinibatchTask) else None
        ),
        fitness_weight=cfg.fitness_weight, head_weight=cfg.head_weight,
    )  # fmt: skip
    if isinstance(space, ResidualSpace):  # the anchor's decoding changed
        space.set_base(space.base, space.anchor)
    x_new, err = reencode(space, targets, cfg.reencode_steps, cfg.reencode_lr)
    if isinstance(strategy, PopulationStrategy) and len(x_new) > 1:
        strategy.init(population=x_new)
    else:
        strategy.set_mean(x_new[0])
    strategy.reset_best()
    with torch.no_grad():
        f_after = evaluate_genomes(space.to_genomes(x_new))
    report = {**stats, "reencode_error": err,
              "fitness_drift": float((f_after - f_before).abs().mean()),
              "fitness_before": float(f_before.mean()), "fitness_after": float(f_after.mean())}  # fmt: skip
    return report, 2 * len(x_new)


# ---------------------------------------------------------------------- warm-up
class Warmup:
    """The direct-space population of the fine-tuning warm-up: it evolves alongside the latent
    search and feeds the archive (its evaluations are real, so it may find the best genome)
    until a fine-tune round fits the archive to `threshold`."""

    def __init__(self, cfg: WarmupConfig, ctx: RunContext):
        self.cfg = cfg
        self.device = ctx.device
        self.seed = ctx.seed + SEED_WARMUP
        self.space = DirectSpace(ctx.spec.numel)
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
