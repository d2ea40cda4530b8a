"""Fresh minibatches that grow when their noise hides the search's progress."""

from __future__ import annotations

import pytest
import torch

from latent_evo.evolution.config import ConfigError
from latent_evo.evolution.loop import LatentEvolution

CFG = {"mode": "direct", "seed": 0, "generations": 16, "eval_every": 0, "fitness_batch": "step",
       "task": {"name": "mnist1d-mlp-tiny"},
       "strategy": {"name": "openai_es", "popsize": 8, "hparams": {"sigma_init": 0.02, "lr": 0.01}},
       "minibatch": {"grow": True, "size": 4, "window": 3}}  # fmt: skip


def _run() -> LatentEvolution:
    return LatentEvolution("mnist1d-mlp-tiny", None, None, CFG)


def test_a_noisy_batch_grows_and_the_members_see_the_new_size():
    run = _run()
    seen: list[int] = []
    fitness = run.task.fitness_genomes
    run.task.fitness_genomes = lambda g, batch=None: seen.append(len(batch[0])) or fitness(g, batch)
    res = run.run()
    grows = [e for e in res.events if e["event"] == "batch_grow"]
    assert grows, "4 examples: the incumbent's scores vary more than the members differ"
    assert all(e["noise"] > e["spread"] for e in grows)
    assert [e["size"] for e in grows] == [4 * 2 ** (i + 1) for i in range(len(grows))]
    assert seen[0] == 4 and seen[-1] == grows[-1]["size"]


def test_growth_resumes_bit_identically(tmp_path):
    full = _run().run()
    _run().run(generations=7, checkpoint_dir=tmp_path)
    resumed = _run()
    resumed.load(tmp_path)
    res = resumed.run()
    assert torch.equal(res.best_genome, full.best_genome) and res.events == full.events
    assert resumed.schedule.size == [e for e in full.events if "size" in e][-1]["size"]


@pytest.mark.parametrize(
    ("section", "message"),
    [({"fitness_batch": "fixed"}, "needs fitness_batch: step"),
     ({"minibatch": {"grow": True}}, "give minibatch.size")],
)  # fmt: skip
def test_minibatch_options_are_checked(section, message):
    with pytest.raises(ConfigError, match=message):
        LatentEvolution("mnist1d-mlp-tiny", None, None, {**CFG, **section})
