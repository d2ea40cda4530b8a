"""SNES: Schaul, Glasmachers & Schmidhuber (2011), "High Dimensions and Heavy Tails for Natural
Evolution Strategies", GECCO.

Separable natural evolution strategy: a diagonal Gaussian ``N(μ, diag(σ²))`` updated with the
natural gradient. Costs O(P d) per generation, so it scales to direct weight space (d = 1e6).
Utilities are the standard NES rank weights ``max(0, log(P/2 + 1) - log k)``, normalised, minus
``1/P``. Default start: ``μ = 0``, ``σ = sigma_init``; learning rates default to the paper's
``η_μ = 1`` and ``η_σ = (3 + ln d) / (5 √d)``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .gaussian import GaussianES
from .shaping import nes_utilities


class SNES(GaussianES):
    name = "snes"
    uses_adam = False  # the natural gradient step needs no optimiser
    noise_name = "_s"
    default_hparams: dict[str, Any] = {
        "sigma_init": 0.1,
        "lr_mean": 1.0,
        "lr_sigma": None,  # None: (3 + ln d) / (5 sqrt d)
        "antithetic": False,
        "sigma_min": 1e-12,
    }

    def _ask(self) -> Tensor:
        self._s = self._sample_noise(self.hp["antithetic"])
        return torch.addcmul(self.mu, self._s, self.sigma)  # one (P, d) allocation

    def _tell(self, x: Tensor, fitness: Tensor, descriptors: Tensor | None) -> None:
        p = fitness.shape[0]
        lr_sigma = self.hp["lr_sigma"]
        if lr_sigma is None:
            lr_sigma = (3 + math.log(self.dim)) / (5 * math.sqrt(self.dim))
        order = torch.argsort(fitness, stable=True)  # best (lowest) first
        u = torch.empty_like(fitness)
        u[order] = nes_utilities(p, self.device, self.dtype)
        s = self._s
        grad_mu = u @ s
        # u @ (s² - 1), squaring the scratch noise buffer in place (saves a (P, d) temporary)
        grad_sigma = u @ s.square_() - u.sum()
        self.mu = self.mu + self.hp["lr_mean"] * self.sigma * grad_mu
        self.sigma = (self.sigma * torch.exp(0.5 * lr_sigma * grad_sigma)).clamp_min(
            self.hp["sigma_min"]
        )
        self._s = None
