"""Function-preserving permutation augmentation of hidden units, for whole batches of genomes.

Zoo models trained from different seeds differ by hidden-unit permutations; showing the
compressor random permutations of every training genome teaches it that they are the same network
(see DESIGN.md, fact 1). The fitness of a permuted genome is unchanged, so targets stay valid.
"""

from __future__ import annotations

import torch
from torch import nn

from latent_evo.genome import GenomeSpec
from latent_evo.models.symmetry import apply_permutation, permutation_groups, random_permutations


class PermutationAugment:
    """Randomly permute the hidden units of `(B, n)` genomes of `model`'s architecture.

    Models without `permutation_groups()` (or with none) make this a no-op; `enabled` says which.
    """

    def __init__(self, model: nn.Module, spec: GenomeSpec):
        self.spec = spec
        self.groups = permutation_groups(model)
        self.enabled = bool(self.groups)

    def __call__(
        self, genomes: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        if not self.enabled:
            return genomes
        params = self.spec.unflatten(genomes)  # {name: (B, *shape)} views
        perms = random_permutations(self.groups, params, generator)  # [(B, units)] per group
        return self.spec.flatten_batch(apply_permutation(params, self.groups, perms))  # (B, n)
