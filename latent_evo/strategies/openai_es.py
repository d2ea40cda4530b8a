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

from .base import Strategy, adam_update, antithetic_noise, centered_ranks, z_score

SHAPINGS = ("centered_ranks", "z_score", "raw")


def shape_fitness(f: Tensor, how: str) -> Tensor:
    if how == "centered_ranks":
        return centered_ranks(f)
    if how == "z_score":
        return z_score(f)
    return torch.where(torch.isfinite(f), f, f[torch.isfinite(f)].max())


class OpenAIES(Strategy):
    name = "openai_es"
    state_names = ("theta", "sigma", "adam_m", "adam_v", "adam_t", "_eps")
    default_hparams: dict[str, Any] = {
        "sigma_init": 0.1,
        "lr": 0.05,
        "beta1": 0.9,
        "beta2": 0.999,
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

    def _init_state(self, mean: Tensor | None, population: Tensor | None) -> None:
        if population is not None:
            mean = population.mean(0)
        z = torch.zeros(self.dim, device=self.device, dtype=self.dtype)
        self.theta = z.clone() if mean is None else mean
        self.sigma = torch.tensor(
            float(self.hp["sigma_init"]), device=self.device, dtype=self.dtype
        )
        self.adam_m, self.adam_v = z.clone(), z.clone()
        self.adam_t = torch.zeros((), dtype=torch.int64)

    def _get_mean(self) -> Tensor:
        return self.theta

    def _set_mean(self, mean: Tensor) -> None:
        self.theta = mean

    def _ask(self) -> Tensor:
        if self.hp["antithetic"]:
            self._eps = antithetic_noise(self, self.popsize)
        else:
            self._eps = self.randn_buffer(self.popsize)
        return torch.addcmul(self.theta, self._eps, self.sigma)  # one (P, d) allocation

    def _tell(self, x: Tensor, fitness: Tensor, descriptors: Tensor | None) -> None:
        u = shape_fitness(fitness, self.hp["fitness_shaping"])
        # gradient of E[f] w.r.t. θ (we descend it: fitness is minimised)
        grad = (u @ self._eps) / (self.popsize * self.sigma)
        grad = grad + self.hp["weight_decay"] * self.theta
        if self.hp["optimizer"] == "adam":
            step = adam_update(
                grad, self.adam_m, self.adam_v, self.adam_t, self.hp["lr"],
                self.hp["beta1"], self.hp["beta2"],
            )  # fmt: skip
        else:  # SGD with momentum; adam_m is the velocity
            self.adam_m.mul_(self.hp["momentum"]).add_(grad)
            step = self.hp["lr"] * self.adam_m
        self.theta = self.theta - step
        self.sigma = (self.sigma * self.hp["sigma_decay"]).clamp_min(self.hp["sigma_min"])
        self._eps = None
