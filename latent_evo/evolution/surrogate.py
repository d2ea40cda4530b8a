"""Surrogate pre-screening (`surrogate:` in the config): the compressor's fitness head ranks the
strategy's population, and only the top fraction is truly evaluated."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from latent_evo.evolution.spaces import Evaluate, ResidualSpace, SearchSpace


def screen(
    x: Tensor, space: SearchSpace, compressor: Any, fraction: float, evaluate: Evaluate
) -> tuple[Tensor, Tensor, Tensor, int, float]:
    """Rank the pool `x (P, d)` by the fitness head; evaluate only the top fraction. Unevaluated
    offspring are told a fitness worse than every evaluated one, in the head's order, so a
    rank-based strategy sees a consistent ranking.

    Returns (fitness to tell `(P,)`, true fitness `(k,)`, genomes `(k, n)`, offspring not
    evaluated, head/truth agreement: the fraction of concordant pairs among the evaluated)."""
    P = x.shape[0]
    k = max(1, math.ceil(fraction * P))
    z = x + space.anchor if isinstance(space, ResidualSpace) else x
    with torch.no_grad():
        pred = compressor.predict_fitness(z).reshape(-1).float()  # (P,)
    order = torch.argsort(pred, stable=True)
    top = order[:k]
    f_top, g = evaluate(space, x[top])
    rest = order[k:]
    f_all = torch.empty(P, device=x.device)
    f_all[top] = f_top
    if len(rest):
        worst = torch.nan_to_num(f_top, nan=0.0, posinf=0.0).max()
        f_all[rest] = worst + 1.0 + (pred[rest] - pred[rest].min())
    dp = pred[top][:, None] - pred[top][None, :]
    dt = f_top[:, None] - f_top[None, :]
    mask = torch.triu(torch.ones(k, k, dtype=torch.bool, device=x.device), 1)
    agree = float(((dp * dt)[mask] > 0).float().mean()) if k > 1 else float("nan")
    return f_all, f_top, g, P - k, agree
