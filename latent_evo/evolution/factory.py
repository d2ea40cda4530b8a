"""Factories of a run's parts: its compressor, search space and strategies, the context they
share, and the seed offsets of its random streams.

`make_space` turns `EvolveConfig.mode` into a `SearchSpace`; `make_strategy` a `StrategyConfig`
into a `Strategy` over a space, passing it what the space knows of its own structure (EGGROLL's
matrix shapes, a GA's per-component mutation probabilities).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from latent_evo.compressor.protocol import CompressorProtocol
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
from latent_evo.tasks.protocol import Task, missing_members

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


#: `compressor: fresh` -- latent size of the run's own compressor (small: it learns from the run
#: alone) and the width of its MLP autoencoder
FRESH_LATENTS, FRESH_LATENT_DIM, FRESH_HIDDEN = 2, 8, 64


def make_compressor(
    cfg: Any, compressor: Any, task: Task, device: torch.device
) -> CompressorProtocol | None:
    """The run's compressor: None in a mode without one; `compressor` (or `cfg.compressor`) as
    an object, a folder / Hub id, or "fresh" (untrained: fine-tuning trains it on the run's own
    genomes); a copy when fine-tuning must not change the caller's. Checked against the
    protocol and the task's genome before any work."""
    if cfg.mode in ("direct", "generator"):
        return None
    compressor = compressor if compressor is not None else cfg.compressor
    if isinstance(compressor, str) and compressor == "fresh":  # learns from this run alone
        gen = torch.Generator().manual_seed(cfg.seed + 7)
        compressor = fresh_compressor(task, gen)
    elif isinstance(compressor, str | Path):
        from latent_evo.compressor.hub import load_compressor

        compressor = load_compressor(compressor)
    elif cfg.finetune.enabled and not cfg.finetune.in_place:
        compressor = copy.deepcopy(compressor)  # fine-tuning must not change the caller's
    if not isinstance(compressor, CompressorProtocol):
        missing = ", ".join(missing_members(compressor, CompressorProtocol))
        raise TypeError(f"compressor {type(compressor).__name__} lacks {missing}")
    compressor.check_spec(task.spec)  # a clear error naming the mismatch
    compressor.to(device).eval()
    return compressor


def fresh_compressor(task: Any, generator: torch.Generator) -> Any:
    """An untrained MLP autoencoder for `task`'s architecture, normalised on fresh task inits:
    the compressor of a run with no pretrained one (`compressor: fresh`), which online
    fine-tuning trains on the run's own evaluated genomes (direct-space ones included). Its
    latent space starts as a random 16-d subspace and learns the directions the search moves."""
    from latent_evo.compressor.mlp import MLPAutoencoder
    from latent_evo.compressor.tokenizer import Tokenizer

    genomes = task.init_genomes(64, generator)  # (64, n) for the per-tensor statistics
    tok = Tokenizer(task.spec, 64).fit_normalization(genomes)
    # layer inits draw from torch's global RNG: seed it from `generator`, leave it as it was
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        return MLPAutoencoder.from_tokenizer(
            tok, hidden=FRESH_HIDDEN, num_latents=FRESH_LATENTS, latent_dim=FRESH_LATENT_DIM
        )
