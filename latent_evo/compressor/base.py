"""What every genome compressor shares, whatever its encoder and decoder.

A compressor owns a `Tokenizer` of its architecture (with per-tensor normalisation statistics
stored as buffers, so they travel with the weights), maps normalised tokens `(P, T, C)` to codes
`(P, s)` and back, and adds the genome-space API evolution uses (`encode_genomes`,
`decode_genomes`), a sampling prior and a fitness head `z -> predicted fitness`.

NOTE: no `from __future__ import annotations` in compressor modules: PyTorchModelHubMixin
inspects the real type of `__init__(config: ...)` to rebuild the dataclass config.
"""

import torch
import torch.nn.functional as F
from torch import nn

from latent_evo.compressor.tokenizer import Tokenizer
from latent_evo.genome import GenomeError, GenomeSpec

REGULARIZERS = ("kl", "noise", "none")
_HUB = dict(library_name="latent-evo", tags=["latent-neuroevolution", "hypernetwork"])


class GenomeAutoencoder(nn.Module):
    """What every compressor shares: tokenizer + norm buffers, genome-space API, prior, head.

    Subclasses define `encode_dist(tokens) -> (mu, logvar|None)` and `decode(z) -> tokens`.
    """

    def _setup_common(self, config) -> None:
        self.config = config
        self.spec = GenomeSpec.from_dict(config.genome_spec)
        self._tok = Tokenizer(self.spec, config.chunk_size)
        self._tok_key = None
        # normalisation statistics travel in model.safetensors with the weights
        self.register_buffer("norm_mean", self._tok.mean.clone())  # (num_tensors,)
        self.register_buffer("norm_std", self._tok.std.clone())  # (num_tensors,)
        s = self.latent_size
        # what `sample` draws from: N(0, I) until `fit_prior` fits it to real networks' codes
        self.register_buffer("prior_mean", torch.zeros(s))  # (s,)
        self.register_buffer("prior_chol", torch.eye(s))  # (s, s) lower Cholesky factor
        self.head = nn.Sequential(
            nn.Linear(s, config.head_hidden), nn.GELU(), nn.Linear(config.head_hidden, 1)
        )

    @classmethod
    def from_tokenizer(cls, tokenizer: Tokenizer, **overrides):
        """A fresh compressor for `tokenizer`'s spec and chunk size, adopting its statistics."""
        model = cls(
            cls.config_class(
                genome_spec=tokenizer.spec.to_dict(), chunk_size=tokenizer.chunk_size, **overrides
            )
        )
        with torch.no_grad():
            model.norm_mean.copy_(tokenizer.mean)
            model.norm_std.copy_(tokenizer.std)
        return model

    @property
    def latent_size(self) -> int:
        return self.config.num_latents * self.config.latent_dim

    @property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer of this compressor's spec, on its device, with its current statistics."""
        m, s = self.norm_mean, self.norm_std
        key = (m.device, m.data_ptr(), m._version, s.data_ptr(), s._version)
        if key != self._tok_key:
            if self._tok.device != m.device:
                self._tok.to(m.device)
            self._tok._set_stats(m.detach(), s.detach())
            self._tok_key = key
        return self._tok

    def check_spec(self, spec: GenomeSpec) -> None:
        """Raise a GenomeError naming the first difference if `spec` is not this compressor's."""
        if spec != self.spec:
            raise GenomeError(
                f"genome spec does not match the compressor's ({self.spec!r} vs {spec!r}): "
                f"{self.spec.describe_mismatch(spec)}"
            )

    def _check_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        T, C = self.tokenizer.num_tokens, self.config.chunk_size
        if (
            not torch.is_tensor(tokens)
            or tokens.dim() not in (2, 3)
            or tuple(tokens.shape[-2:]) != (T, C)
        ):
            got = tuple(tokens.shape) if torch.is_tensor(tokens) else type(tokens).__name__
            raise GenomeError(f"tokens must have shape (P, {T}, {C}) for {self.spec!r}, got {got}")
        return tokens[None] if tokens.dim() == 2 else tokens  # (P, T, C)

    def _check_z(self, z: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(z) or z.dim() not in (1, 2) or z.shape[-1] != self.latent_size:
            got = tuple(z.shape) if torch.is_tensor(z) else type(z).__name__
            raise ValueError(f"latent codes must have shape (P, {self.latent_size}), got {got}")
        return z[None] if z.dim() == 1 else z  # (P, s)

    def _finish_mu(self, mu: torch.Tensor, logvar: torch.Tensor | None):
        # Without a KL prior, standardise codes (zero mean, unit RMS per code): N(0, I) samples
        # from `sample` and Gaussian mutations then live where the encoder puts real genomes.
        if self.config.regularizer != "kl":
            return F.layer_norm(mu, mu.shape[-1:]), None
        return mu, logvar.clamp(-12.0, 8.0)

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """(P, T, C) normalised tokens -> (P, s) codes (the posterior mean)."""
        return self.encode_dist(tokens)[0]

    def encode_genomes(self, genomes: torch.Tensor) -> torch.Tensor:
        """(P, n) or (n,) raw genomes -> (P, s) codes."""
        self.spec.check_genome(genomes, what=f"genome for compressor of {self.spec!r}")
        return self.encode(self.tokenizer.tokenize(genomes.to(self.norm_mean.device)))

    def decode_genomes(self, z: torch.Tensor, block_size: int | None = None) -> torch.Tensor:
        """(P, s) codes -> (P, n) raw genomes in the spec's dtype (views via `spec.unflatten`)."""
        return self.tokenizer.detokenize(self.decode(z, block_size=block_size))

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor | None) -> torch.Tensor:
        if not self.training or self.config.regularizer == "none":
            return mu
        if self.config.regularizer == "kl":
            return mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return mu + self.config.noise_std * torch.randn_like(mu)

    def forward(self, tokens: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """Training pass: recon (P, T, C), z / mu / logvar (P, s) (logvar None unless KL) and
        fitness_pred (P,) from the head."""
        mu, logvar = self.encode_dist(tokens)
        z = self.reparameterize(mu, logvar)
        return {
            "recon": self.decode(z),
            "z": z,
            "mu": mu,
            "logvar": logvar,
            "fitness_pred": self.predict_fitness(z),
        }

    def predict_fitness(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self._check_z(z)).squeeze(-1)  # (P,)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n, s) codes from the prior: N(0, I), or the Gaussian set by `fit_prior`. The noise is
        drawn on the generator's device and moved to ours."""
        dev = generator.device if generator is not None else self.norm_mean.device
        eps = torch.randn(n, self.latent_size, generator=generator, device=dev)  # (n, s)
        return self.prior_mean + eps.to(self.prior_mean.device) @ self.prior_chol.T

    @torch.no_grad()
    def fit_prior(self, codes: torch.Tensor, shrinkage: float = 0.05) -> None:
        """Make `sample` draw from N(mean, cov) of `codes` (N, s), e.g. a zoo's encodings.

        With a small KL weight, real networks' codes fill a small, tilted part of N(0, I), and
        most N(0, I) samples decode to networks no zoo holds (benchmarks/results/pretrain.md). The
        covariance is shrunk towards its diagonal by `shrinkage` because N is often close to s.
        """
        codes = self._check_z(codes).double()
        if len(codes) < 2:
            raise ValueError(f"fit_prior needs at least 2 codes, got {len(codes)}")
        if not bool(torch.isfinite(codes).all()):
            raise ValueError("fit_prior: codes contain NaN or inf")
        if not 0.0 <= shrinkage <= 1.0:
            raise ValueError(f"fit_prior: shrinkage must be in [0, 1], got {shrinkage}")
        cov = torch.cov(codes.T)  # (s, s)
        cov = (1 - shrinkage) * cov + shrinkage * torch.diag(cov.diagonal())
        jitter = 1e-6 * float(cov.diagonal().mean().clamp(min=1e-12))
        cov = cov + jitter * torch.eye(len(cov), dtype=cov.dtype, device=cov.device)
        self.prior_mean.copy_(codes.mean(0))
        self.prior_chol.copy_(torch.linalg.cholesky(cov))
