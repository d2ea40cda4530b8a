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

from .base import Strategy, antithetic_noise


def nes_utilities(p: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Rank-based NES utilities for ranks 1..p (best first); they sum to zero."""
    k = torch.arange(1, p + 1, device=device, dtype=torch.float64)
    w = (math.log(p / 2 + 1) - torch.log(k)).clamp_min(0)
    return (w / w.sum() - 1.0 / p).to(dtype)


class SNES(Strategy):
    name = "snes"
    state_names = ("mu", "sigma", "_s")
    default_hparams: dict[str, Any] = {
        "sigma_init": 0.1,
        "lr_mean": 1.0,
        "lr_sigma": None,  # None: (3 + ln d) / (5 sqrt d)
        "antithetic": False,
        "sigma_min": 1e-12,
    }

    def _init_state(self, mean: Tensor | None, population: Tensor | None) -> None:
        if population is not None:
            mean = population.mean(0)
        self.mu = (
            torch.zeros(self.dim, device=self.device, dtype=self.dtype) if mean is None else mean
        )
        self.sigma = torch.full(
            (self.dim,), float(self.hp["sigma_init"]), device=self.device, dtype=self.dtype
        )

    def _get_mean(self) -> Tensor:
        return self.mu

    def _set_mean(self, mean: Tensor) -> None:
        self.mu = mean

    def _ask(self) -> Tensor:
        if self.hp["antithetic"]:
            self._s = antithetic_noise(self, self.popsize)
        else:
            self._s = self.randn_buffer(self.popsize)
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
