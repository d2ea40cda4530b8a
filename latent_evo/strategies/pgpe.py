"""PGPE: Sehnke, Osendorfer, Rückstieß, Graves, Peters & Schmidhuber (2010), "Parameter-exploring
policy gradients", Neural Networks 23(4).

Separable Gaussian ``N(μ, diag(σ²))`` with symmetric sampling: each pair is ``μ ± ε``,
``ε ~ N(0, diag(σ²))``. With fitness shaped by centred ranks and ``r`` the (to-be-maximised)
utility, the paper's gradients are

    ∇μ = Σ_pairs (r⁺ - r⁻) / 2 · ε
    ∇σ = Σ_pairs ((r⁺ + r⁻) / 2 - b) · (ε² - σ²) / σ      (b: mean utility = baseline)

μ follows Adam (as in evotorch / ClipUp-style practice); σ takes a plain gradient step whose
relative change is clipped to ``sigma_max_change`` (Toklu et al. 2020), so it never collapses
in one generation. O(P d): fit for direct weight space. Default start: ``μ = 0``.
An odd ``popsize`` gets one extra unpaired sample that only enters the baseline.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .base import Strategy, adam_update, centered_ranks


class PGPE(Strategy):
    name = "pgpe"
    state_names = ("mu", "sigma", "adam_m", "adam_v", "adam_t", "_eps")
    default_hparams: dict[str, Any] = {
        "sigma_init": 0.1,
        "lr": 0.05,
        "lr_sigma": 0.1,
        "sigma_max_change": 0.2,
        "sigma_min": 1e-8,
        "beta1": 0.9,
        "beta2": 0.999,
    }

    def _init_state(self, mean: Tensor | None, population: Tensor | None) -> None:
        if population is not None:
            mean = population.mean(0)
        z = torch.zeros(self.dim, device=self.device, dtype=self.dtype)
        self.mu = z.clone() if mean is None else mean
        self.sigma = torch.full_like(z, float(self.hp["sigma_init"]))
        self.adam_m, self.adam_v = z.clone(), z.clone()
        self.adam_t = torch.zeros((), dtype=torch.int64)

    def _get_mean(self) -> Tensor:
        return self.mu

    def _set_mean(self, mean: Tensor) -> None:
        self.mu = mean

    def _ask(self) -> Tensor:
        half = self.popsize // 2
        eps = self.noise_buffer(self.popsize)  # reused scratch: no 1 GB allocation at d = 1e6
        torch.randn((half, self.dim), generator=self.generator, out=eps[:half])
        eps[:half].mul_(self.sigma)
        torch.neg(eps[:half], out=eps[half : 2 * half])
        if self.popsize % 2:
            torch.randn((1, self.dim), generator=self.generator, out=eps[2 * half :])
            eps[2 * half :].mul_(self.sigma)
        self._eps = eps
        return self.mu + eps

    def _tell(self, x: Tensor, fitness: Tensor, descriptors: Tensor | None) -> None:
        half = self.popsize // 2
        r = -centered_ranks(fitness)  # utility to maximise
        eps = self._eps[:half]
        r_plus, r_minus = r[:half], r[half : 2 * half]
        grad_mu = ((r_plus - r_minus) / 2) @ eps / half
        base = r.mean()
        grad_sigma = (((r_plus + r_minus) / 2 - base) @ (eps * eps - self.sigma**2)) / (
            half * self.sigma
        )
        # ascent on utility == descent on -grad
        self.mu = self.mu - adam_update(
            -grad_mu, self.adam_m, self.adam_v, self.adam_t, self.hp["lr"],
            self.hp["beta1"], self.hp["beta2"],
        )  # fmt: skip
        step = self.hp["lr_sigma"] * grad_sigma
        c = float(self.hp["sigma_max_change"])
        step = torch.clamp(step, -c * self.sigma, c * self.sigma)
        self.sigma = (self.sigma + step).clamp_min(self.hp["sigma_min"])
        self._eps = None
