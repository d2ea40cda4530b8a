"""Fitness shaping and the Adam step shared by the gradient-based ES.

Fitness is always **minimised**. Shaping maps a ``(P,)`` fitness vector to ``(P,)`` utilities
so that an ES update depends on the ranking, or the standardised value, of the fitness rather
than on its raw scale. ``adam_update`` keeps its optimiser state in tensors so that it goes into
``state_dict`` and a resumed run stays bit-identical.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "SHAPINGS",
    "sanitize_fitness",
    "centered_ranks",
    "z_score",
    "shape_fitness",
    "nes_utilities",
    "adam_update",
]

#: values of OpenAI-ES's ``fitness_shaping`` option
SHAPINGS = ("centered_ranks", "z_score", "raw")


def sanitize_fitness(f: Tensor) -> Tensor:
    """Replace NaN and ±inf by +inf so that they rank as the worst (fitness is minimised)."""
    return torch.where(torch.isfinite(f), f, torch.full_like(f, math.inf))


def centered_ranks(f: Tensor) -> Tensor:
    """Ranks mapped linearly to [-0.5, 0.5]; the lowest (best) fitness gets -0.5.

    Ties (e.g. several +inf) are broken by index, which keeps the result deterministic.
    Rank shaping makes ES updates invariant to monotone transforms of fitness (Salimans 2017).
    """
    n = f.shape[0]
    ranks = torch.empty_like(f)
    ranks[torch.argsort(f, stable=True)] = torch.arange(n, device=f.device, dtype=f.dtype)
    return ranks / max(n - 1, 1) - 0.5


def z_score(f: Tensor, eps: float = 1e-8) -> Tensor:
    """Standardise fitness to zero mean, unit std. Non-finite values are set to the worst
    finite value first (or 0 if none is finite) so one NaN does not poison the whole batch."""
    finite = torch.isfinite(f)
    worst = f[finite].max() if bool(finite.any()) else f.new_tensor(0.0)
    g = torch.where(finite, f, worst)
    return (g - g.mean()) / (g.std(unbiased=False) + eps)


def shape_fitness(f: Tensor, how: str) -> Tensor:
    """Utilities by one of ``SHAPINGS``; ``"raw"`` keeps the fitness, non-finite values set to
    the worst finite one (it raises if no value is finite)."""
    if how == "centered_ranks":
        return centered_ranks(f)
    if how == "z_score":
        return z_score(f)
    return torch.where(torch.isfinite(f), f, f[torch.isfinite(f)].max())


def nes_utilities(p: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Rank-based NES utilities for ranks 1..p (best first); they sum to zero.

    ``max(0, log(p/2 + 1) - log k)``, normalised, minus ``1/p`` (used by SNES)."""
    k = torch.arange(1, p + 1, device=device, dtype=torch.float64)
    w = (math.log(p / 2 + 1) - torch.log(k)).clamp_min(0)
    return (w / w.sum() - 1.0 / p).to(dtype)


def adam_update(
    grad: Tensor,
    m: Tensor,
    v: Tensor,
    t: Tensor,
    lr: float,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
) -> Tensor:
    """One Adam step; updates ``m``, ``v`` and the step counter ``t`` in place and returns the
    step to *subtract* from the parameters. Kept as tensors so optimiser state checkpoints."""
    t.add_(1)
    m.mul_(beta1).add_(grad, alpha=1 - beta1)
    v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    step = int(t.item())
    mhat = m / (1 - beta1**step)
    vhat = v / (1 - beta2**step)
    return lr * mhat / (vhat.sqrt() + eps)
