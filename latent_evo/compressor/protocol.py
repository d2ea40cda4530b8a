"""What the evolution loop needs of a genome compressor: `CompressorProtocol`.

Both shipped compressors (the attention `Compressor` and the `MLPAutoencoder`, through their
common base `GenomeAutoencoder`) satisfy it; so may any object a user brings (a PCA, a fixed
random projection), as long as it maps genomes to codes and back. The loop checks it with
`isinstance` when a run starts and names the missing members.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from latent_evo.genome import GenomeSpec


@runtime_checkable
class CompressorProtocol(Protocol):
    spec: GenomeSpec  # the genome layout the compressor was built for

    @property
    def latent_size(self) -> int:
        """`s`, the size of one code."""
        ...

    def check_spec(self, spec: GenomeSpec) -> None:
        """Raise a clear error naming the first tensor where `spec` differs from `self.spec`."""
        ...

    def encode_genomes(self, genomes: Tensor) -> Tensor:
        """`(P, n)` genomes -> `(P, s)` codes."""
        ...

    def decode_genomes(self, z: Tensor, block_size: int | None = None) -> Tensor:
        """`(P, s)` codes -> `(P, n)` genomes."""
        ...

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """`(n, s)` codes from the compressor's prior."""
        ...

    def predict_fitness(self, z: Tensor) -> Tensor:
        """`(P, s)` codes -> `(P,)` predicted fitness (the surrogate head)."""
        ...

    def to(self, device: str | torch.device) -> CompressorProtocol: ...

    def eval(self) -> CompressorProtocol: ...
