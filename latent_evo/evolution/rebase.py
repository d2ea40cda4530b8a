"""Moving a latent search onto a genome: residual re-basing, and re-centring after a switch.

A residual search (`ResidualSpace`) decodes changes around a base genome; re-basing it on the best
genome found keeps every candidate's latent point (the anchor moves by delta, the strategy's
mean by -delta), so the search continues where it was, now around a better network.
"""

from __future__ import annotations

import torch
from torch import Tensor

from latent_evo.evolution.spaces import ResidualSpace, SearchSpace
from latent_evo.strategies import Strategy


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
