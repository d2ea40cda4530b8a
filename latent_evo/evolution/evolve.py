"""`evolve()`: one call from keyword options to a finished run.

    from latent_evo import evolve
    res = evolve(task="mnist1d-mlp-tiny", compressor="runs/compressor", strategy="cma_es",
                 generations=50, seed=0)
    res.best_model, res.history, res.evaluations

The options are `EvolveConfig` fields, merged into one typed config; `LatentEvolution` (loop.py)
is the same run for step-by-step control.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from latent_evo.evolution.config import ConfigError, EvolveConfig
from latent_evo.evolution.loop import Callback, EvolveResult, LatentEvolution
from latent_evo.strategies import Strategy


def evolve(
    task: Any,
    compressor: Any = None,
    strategy: str | Strategy | None = None,
    generations: int | None = None,
    evaluations: int | None = None,
    callbacks: Sequence[Callback] = (),
    device: str | torch.device | None = None,
    seed: int | None = None,
    fitness_fn: Callable | None = None,
    config: EvolveConfig | dict | None = None,
    progress: bool = False,
    **options: Any,
) -> EvolveResult:
    """Run an evolution and return its `EvolveResult`. `options` are `EvolveConfig` fields
    (`mode="residual"`, `switch={"enabled": True}`, `strategy_hparams={...}`, ...)."""
    d = config.to_dict() if isinstance(config, EvolveConfig) else dict(config or {})
    hp, popsize = options.pop("strategy_hparams", None), options.pop("popsize", None)
    d.update(options)
    name = strategy.name if isinstance(strategy, Strategy) else strategy
    if hp is not None or popsize is not None or name is not None:
        d["strategy"] = dict(d.get("strategy") or {})
        if hp is not None:
            d["strategy"]["hparams"] = dict(hp)
        if popsize is not None:
            d["strategy"]["popsize"] = popsize
        if name is not None:  # the hparams are validated against the strategy they are for
            d["strategy"]["name"] = name
    if generations is not None or evaluations is not None:
        d["generations"], d["evaluations"] = generations, evaluations
    cfg = EvolveConfig.from_dict(d)  # one typed build: a wrong value names its key
    if cfg.pbt.enabled:  # N runs, a different result: not what this one-run call returns
        raise ConfigError(
            "pbt.enabled: evolve() runs one search; use latent_evo.evolution.PBT(task, "
            "compressor, config).run() or `latent-evo evolve --pbt N`"
        )
    run = LatentEvolution(task, compressor, strategy, cfg, callbacks, device, seed, fitness_fn)
    return run.run(progress=progress)
