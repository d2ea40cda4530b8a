"""Plain MLP autoencoder over the whole flattened genome: the baseline every
compressor is measured against.

    tokens (P, T, C) -> the n real values (normalised) -> MLP -> z (P, s) -> MLP -> n values

It sees no structure (no tokens, no metadata), has O(n * hidden) parameters, and its decoder costs
2 * hidden FLOPs per emitted value -- the point of comparison for the hypernetwork decoder.
Same API as `Compressor` (encode / decode / genomes / prior / fitness head / save & load).

No `from __future__ import annotations`: PyTorchModelHubMixin needs the real config type.
"""

from dataclasses import dataclass

import torch
from torch import nn

from latent_evo.compressor.base import _HUB, REGULARIZERS, GenomeAutoencoder
from latent_evo.compressor.mixin import FORMAT_VERSION, SafeHubMixin


@dataclass
class MLPAutoencoderConfig:
    genome_spec: dict | None = None  # GenomeSpec.to_dict() of the architecture it compresses
    chunk_size: int = 64  # only for the shared tokenizer (normalisation + token layout)
    hidden: int = 256  # width of encoder and decoder hidden layers (params ~ 2 * n * hidden)
    num_latents: int = 16  # s = num_latents * latent_dim, as for Compressor
    latent_dim: int = 8
    regularizer: str = "kl"  # "kl", "noise" or "none" (see CompressorConfig)
    beta: float = 1e-3
    noise_std: float = 0.1
    head_hidden: int = 64
    format_version: int = FORMAT_VERSION

    def __post_init__(self):
        if self.genome_spec is None:
            raise ValueError("MLPAutoencoderConfig needs genome_spec (GenomeSpec.to_dict())")
        if self.regularizer not in REGULARIZERS:
            raise ValueError(f"regularizer must be one of {REGULARIZERS}, got {self.regularizer!r}")


class MLPAutoencoder(GenomeAutoencoder, SafeHubMixin, **_HUB):
    config_class = MLPAutoencoderConfig

    def __init__(self, config: MLPAutoencoderConfig):
        super().__init__()
        if isinstance(config, dict):
            config = MLPAutoencoderConfig(**config)
        self._setup_common(config)
        n, h, s = self.spec.numel, config.hidden, self.latent_size
        self.encoder = nn.Sequential(nn.Linear(n, h), nn.GELU(), nn.Linear(h, h), nn.GELU())
        self.to_z = nn.Linear(h, 2 * s if config.regularizer == "kl" else s)
        self.decoder = nn.Sequential(
            nn.Linear(s, h), nn.GELU(), nn.Linear(h, h), nn.GELU(), nn.Linear(h, n)
        )

    def _slots(self) -> torch.Tensor:
        """(n,) positions of the real values in the flattened (T*C) token grid."""
        return self.tokenizer.scatter_index

    def encode_dist(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        tokens = self._check_tokens(tokens)  # (P, T, C)
        x = tokens.flatten(1).index_select(1, self._slots())  # (P, n) normalised values
        h = self.to_z(self.encoder(x))  # (P, s) or (P, 2s)
        if self.config.regularizer == "kl":
            mu, logvar = h.chunk(2, dim=-1)  # (P, s) each
            return self._finish_mu(mu, logvar)
        return self._finish_mu(h, None)

    def decode(self, z: torch.Tensor, block_size: int | None = None) -> torch.Tensor:
        """(P, s) -> (P, T, C) tokens (block_size is accepted for API parity; the last layer
        emits all n values at once)."""
        return self.values_to_tokens(self.decoder(self._check_z(z)))

    def values_to_tokens(self, y: torch.Tensor) -> torch.Tensor:
        """(P, n) normalised values, as the decoder's last layer emits them -> (P, T, C) tokens."""
        T, C = self.tokenizer.num_tokens, self.config.chunk_size
        out = y.new_zeros(y.shape[0], T * C)  # (P, T*C)
        out = out.index_copy(1, self._slots(), y)  # differentiable scatter into the grid
        return out.view(y.shape[0], T, C)  # (P, T, C)
