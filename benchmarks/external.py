"""Other libraries' optimizers on the search benchmark's task, budget and network
(`pip install latent-evo[bench]`): EvoTorch's SNES and separable CMA-ES, and PyGAD's GA.

Each runs in the flat weight space (direct search) from the task's own initialisation, with the
step sizes of our direct methods (σ 0.02), and every fitness evaluation goes through the same
counting `Tracker` as the baselines, so budgets and curves are comparable. A library that is not
installed gives a `skipped` row, not an error.
"""

from __future__ import annotations

from typing import Any

import torch

#: method name -> (library, what runs)
EXTERNAL = {
    "evotorch-snes": ("evotorch", "EvoTorch SNES"),
    "evotorch-cmaes": ("evotorch", "EvoTorch CMA-ES (separable: diagonal covariance)"),
    "pygad-ga": ("pygad", "PyGAD GA"),
}
SIGMA = 0.02  # as direct-snes / direct-openai-es in bench_search.evolve_methods


def run_external(name: str, task, tracker, budget: int, seed: int, popsize: int) -> dict[str, Any]:
    """Run one external optimizer until `tracker` has counted `budget` evaluations."""
    lib, _ = EXTERNAL[name]
    try:
        __import__(lib)
    except ImportError:
        return {"skipped": f"{lib} is not installed (pip install 'latent-evo[bench]')"}
    torch.manual_seed(seed)
    init = task.init_genomes(popsize, torch.Generator().manual_seed(seed))  # (P, d)
    if lib == "evotorch":
        _evotorch(name, task, tracker, budget, seed, popsize, init[0])
    else:
        _pygad(task, tracker, budget, seed, popsize, init)
    return {"note": f"{EXTERNAL[name][1]}, σ {SIGMA}, population {popsize}, from the task's init"}


def _evotorch(name, task, tracker, budget, seed, popsize, center) -> None:
    from evotorch import Problem
    from evotorch.algorithms import CMAES, SNES

    def fitness(x: torch.Tensor) -> torch.Tensor:  # (P, d) -> (P,), vectorised
        return tracker.fitness(x.to(task.spec.dtype))

    problem = Problem("min", fitness, solution_length=task.spec.numel, vectorized=True,
                      initial_bounds=(-SIGMA, SIGMA), seed=seed, dtype=torch.float32)  # fmt: skip
    if name == "evotorch-snes":
        searcher = SNES(problem, stdev_init=SIGMA, popsize=popsize, center_init=center)
    else:
        searcher = CMAES(problem, stdev_init=SIGMA, popsize=popsize, center_init=center,
                         separable=True)  # fmt: skip
    while tracker.evaluations < budget:
        searcher.step()


def _pygad(task, tracker, budget, seed, popsize, init) -> None:
    import numpy as np
    import pygad

    def fitness(_ga, solutions, _idx):  # a batch (B, d); PyGAD maximises
        x = torch.from_numpy(np.asarray(solutions, dtype=np.float32)).to(task.spec.dtype)
        return (-tracker.fitness(x)).tolist()

    ga = pygad.GA(
        num_generations=budget,  # stopped by on_generation once the budget is spent
        num_parents_mating=popsize // 2,
        sol_per_pop=popsize,
        initial_population=init.numpy(),
        fitness_func=fitness,
        fitness_batch_size=popsize,
        parent_selection_type="tournament",
        crossover_type="single_point",
        mutation_type="random",  # PyGAD's default: 10 % of genes get uniform noise
        mutation_by_replacement=False,
        random_mutation_min_val=-SIGMA,
        random_mutation_max_val=SIGMA,
        keep_elitism=1,
        random_seed=seed,
        suppress_warnings=True,
        on_generation=lambda _ga: "stop" if tracker.evaluations >= budget else None,
    )
    ga.run()
