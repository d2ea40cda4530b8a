"""LoRATask: evolution over low-rank adapters of a network through `evolve()`, fitness from
the factors alone, equal to the materialised network's; EGGROLL gets each factor's shape."""

from __future__ import annotations

import torch

from latent_evo.evolution.evolve import evolve
from latent_evo.models.lowrank import linear_layers
from latent_evo.tasks import get_task
from latent_evo.tasks.lora import LoRATask


def test_low_rank_task_fitness_equals_the_materialised_network():
    base = get_task("text-gpt2-tiny")
    task = LoRATask(base, rank=2, layers=linear_layers(base.model, "transformer.h."))
    g = torch.randn(3, task.spec.numel, generator=torch.Generator().manual_seed(0)) * 0.05
    with torch.no_grad():
        f = task.fitness_genomes(g)
        ref = base.fitness_genomes(torch.stack([task.network_genome(x) for x in g]))
        torch.testing.assert_close(f, ref, rtol=1e-4, atol=1e-5)
        fresh = task.init_genomes(4, torch.Generator().manual_seed(1))  # A = 0: the base itself
        base_f = base.fitness_genomes(base.spec.flatten(dict(base.model.named_parameters()))[None])
        torch.testing.assert_close(task.fitness_genomes(fresh), base_f.expand(4))


def test_evolve_over_adapters_improves_and_best_model_is_a_network():
    base = get_task("mnist1d-mlp-tiny")
    task = LoRATask(base, rank=2)
    res = evolve(task=task, strategy="eggroll", mode="direct", evaluations=800, popsize=16,
                 strategy_hparams={"sigma_init": 0.05, "lr": 0.05, "rank": 1},
                 init={"kind": "task"}, seed=0)  # fmt: skip
    assert res.best_fitness < res.history[0]["best_fitness"]
    x = base.fitness_batch()[0][:5]
    out = res.best_model(x)  # the base network with the best adapters applied
    ref = torch.func.functional_call(
        base.model, base.spec.unflatten(task.network_genome(res.best_genome)), (x,)
    )
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    assert 0.0 <= res.test_metrics["test_accuracy"] <= 1.0
