"""Ask/tell search strategies (GA and ES families) over ``(P, d)`` tensors on any device.

    from latent_evo.strategies import get_strategy
    es = get_strategy("cma_es", dim=32, popsize=16, device="cuda", sigma_init=0.3)

Every strategy minimises fitness, is constructible from ``dim`` and ``popsize`` alone, keeps
all state in tensors (``state_dict``/``load_state_dict`` resume bit-identically) and draws
all randomness from its own seeded ``torch.Generator``.

Files:

* ``base.py``: ``Strategy``, the ask/tell bookkeeping every strategy shares (seeding, shape
  checks, best-so-far, checkpointing); subclasses write ``_init_state``/``_ask``/``_tell``.
* ``shaping.py``: fitness shaping (centred ranks, z-score, NES utilities) and the Adam step.
* ``gaussian.py``: ``GaussianES``, the mean / σ / Adam / noise state of the Gaussian ES below.
* ``openai_es.py``, ``pgpe.py``, ``snes.py``, ``eggroll.py``: the Gaussian ES (``GaussianES``).
* ``cma_es.py``: CMA-ES with optional IPOP restarts.
* ``novelty_es.py``: NS-ES, NSR-ES, NSRA-ES (novelty-seeking meta-population of ES centres).
* ``ga.py``, ``operators.py``: the genetic algorithm and its selection / crossover / mutation
  operators.
* ``deep_ga.py``: Deep GA with the compact (seed-list) genome encoding.
* ``map_elites.py``: MAP-Elites (quality-diversity grid).
"""

from __future__ import annotations

from typing import Any

import torch

from .base import PopulationStrategy, Strategy
from .cma_es import CMAES
from .deep_ga import DeepGA
from .eggroll import EGGROLL
from .ga import GA
from .gaussian import GaussianES
from .map_elites import MAPElites
from .novelty_es import NSES, NSRAES, NSRES
from .openai_es import OpenAIES
from .pgpe import PGPE
from .shaping import centered_ranks, z_score
from .snes import SNES

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (GA, OpenAIES, CMAES, SNES, PGPE, NSES, NSRES, NSRAES, MAPElites, DeepGA, EGGROLL)
}

__all__ = [
    "PopulationStrategy",
    "Strategy",
    "GaussianES",
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
