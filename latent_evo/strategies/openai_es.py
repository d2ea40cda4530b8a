"""OpenAI-ES: Salimans, Ho, Chen, Sidor & Sutskever (2017), "Evolution Strategies as a Scalable
Alternative to Reinforcement Learning", arXiv:1703.03864.

Isotropic Gaussian search distribution ``N(θ, σ² I)``. Candidates are antithetic pairs
``θ ± σ ε`` (mirrored sampling halves the variance of the gradient estimate); fitness is shaped
by centred ranks; the search-gradient estimate ``∇ ≈ Σ u_i ε_i / (P σ)`` plus an L2 weight-decay
term is fed to Adam (or plain SGD). σ is fixed unless ``sigma_decay < 1``.
Default start: ``θ = 0``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .gaussian import ADAM_HPARAMS, GaussianES
from .shaping import SHAPINGS, shape_fitness


class OpenAIES(GaussianES):
    name = "openai_es"
    mean_name = "theta"
    sigma_shape = "scalar"
    default_hparams: dict[str, Any] = {
        "sigma_init": 0.1,
        **ADAM_HPARAMS,
        "weight_decay": 0.0,
        "optimizer": "adam",
        "momentum": 0.9,
        "antithetic": True,
        "fitness_shaping": "centered_ranks",
        "sigma_decay": 1.0,
        "sigma_min": 0.0,
    }

    def _check_hparams(self) -> None:
        if self.hp["optimizer"] not in ("adam", "sgd"):
            raise ValueError(
                f"openai_es: optimizer must be 'adam' or 'sgd', got {self.hp['optimizer']!r}"
            )
        if self.hp["fitness_shaping"] not in SHAPINGS:
            raise ValueError(f"openai_es: fitness_shaping must be one of {SHAPINGS}")

    def _ask(self) -> Tensor:
        self._eps = self._sample_noise(self.hp["antithetic"])
        return torch.addcmul(self.theta, self._eps, self.sigma)  # one (P, d) allocation

    def _tell(self, x: Tensor, fitness: Tensor, descriptors: Tensor | None) -> None:
        u = shape_fitness(fitness, self.hp["fitness_shaping"])
        # gradient of E[f] w.r.t. θ (we descend it: fitness is minimised)
        grad = (u @ self._eps) / (self.popsize * self.sigma)
        grad = grad + self.hp["weight_decay"] * self.theta
        if self.hp["optimizer"] == "adam":
            step = self._adam_step(grad)
        else:  # SGD with momentum; adam_m is the velocity
            self.adam_m.mul_(self.hp["momentum"]).add_(grad)
            step = self.hp["lr"] * self.adam_m
        self.theta = self.theta - step
        self.sigma = (self.sigma * self.hp["sigma_decay"]).clamp_min(self.hp["sigma_min"])
        self._eps = None
