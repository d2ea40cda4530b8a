"""Ask/tell search strategies (GA and ES families) over ``(P, d)`` tensors on any device.

    from latent_evo.strategies import get_strategy
    es = get_strategy("cma_es", dim=32, popsize=16, device="cuda", sigma_init=0.3)

Every strategy minimises fitness, is constructible from ``dim`` and ``popsize`` alone, keeps
all state in tensors (``state_dict``/``load_state_dict`` resume bit-identically) and draws
all randomness from its own seeded ``torch.Generator``.
"""

from __future__ import annotations

from typing import Any

import torch

from .base import Strategy, centered_ranks, z_score
from .cma_es import CMAES
from .deep_ga import DeepGA
from .eggroll import EGGROLL
from .ga import GA
from .map_elites import MAPElites
from .novelty_es import NSES, NSRAES, NSRES
from .openai_es import OpenAIES
from .pgpe import PGPE
from .snes import SNES

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (GA, OpenAIES, CMAES, SNES, PGPE, NSES, NSRES, NSRAES, MAPElites, DeepGA, EGGROLL)
}

__all__ = [
    "Strategy",
    "STRATEGIES",
    "get_strategy",
    "list_strategies",
    "centered_ranks",
    "z_score",
    *(cls.__name__ for cls in STRATEGIES.values()),
]


def list_strategies() -> list[str]:
    """Registry keys, in a stable order."""
    return list(STRATEGIES)


def get_strategy(
    name: str,
    dim: int,
    popsize: int,
    device: str | torch.device = "cpu",
    seed: int = 0,
    **hparams: Any,
) -> Strategy:
    """Build the strategy registered as ``name``. Unknown names and unknown hyper-parameters
    raise ``ValueError`` listing the valid ones (each class's ``default_hparams``)."""
    cls = STRATEGIES.get(name)
    if cls is None:
        raise ValueError(f"unknown strategy {name!r}; valid ones are: {', '.join(STRATEGIES)}")
    return cls(dim=dim, popsize=popsize, device=device, seed=seed, **hparams)
