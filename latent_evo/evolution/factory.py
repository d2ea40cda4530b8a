"""Factories of a run's search space and strategies, and the seed offsets of its random streams.

`make_space` turns `EvolveConfig.mode` into a `SearchSpace`; `make_strategy` a `StrategyConfig`
into a `Strategy` over a space, passing it what the space knows of its own structure (EGGROLL's
matrix shapes, a GA's per-component mutation probabilities).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from latent_evo.evolution.config import StrategyConfig
from latent_evo.evolution.spaces import (
    DecoderSpace,
    DirectSpace,
    LatentSpace,
    ResidualSpace,
    SearchSpace,
    tensor_shapes,
)
from latent_evo.genome import GenomeSpec
from latent_evo.strategies import Strategy, get_strategy

# Offsets of the seeds of the run's independent random streams (strategy / switch / warm-up):
# each strategy draws from its own generator, so adding a part never shifts another's draws.
SEED_STRATEGY, SEED_DIRECT, SEED_WARMUP = 1, 2, 3


@dataclass(frozen=True)
class RunContext:
    """What every part of a run shares (the switcher, the portfolio, the warm-up), handed over
    once: the genome layout, the device, the run's seed (each part offsets it for its own
    stream), and whether fitness comes from fresh minibatches (progress then judged on gains
    paired on one batch)."""

    spec: GenomeSpec
    device: torch.device
    seed: int
    paired: bool = False


def make_space(cfg: Any, task: Any, compressor: Any) -> SearchSpace:
    """The search space of `cfg.mode` (an `EvolveConfig`) for `task`'s genome."""
    mode, chunk = cfg.mode, cfg.decode_chunk
    if mode == "direct":
        return DirectSpace(task.spec.numel, tensor_shapes(task.spec))
    if mode == "generator":  # the genome is a generator's weights (no compressor)
        from latent_evo.evolution.generator import GeneratorSpace

        return GeneratorSpace(task, cfg.generator)
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
    probs = space.mutation_probs
    if cfg.name == "ga" and probs and "groups" not in hparams:
        hparams["groups"], hparams["group_mutation_prob"] = list(space.groups), list(probs)
    return get_strategy(
        cfg.name, dim=space.dim, popsize=cfg.popsize, device=device, seed=seed, **hparams
    )
