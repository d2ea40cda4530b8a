"""Every task and compressor class satisfies the protocols the loop is typed against, and the
strategies' documented way to change a hyper-parameter during a run works as PBT uses it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from latent_evo.compressor.attention import Compressor
from latent_evo.compressor.mlp import MLPAutoencoder
from latent_evo.compressor.protocol import CompressorProtocol
from latent_evo.compressor.tokenizer import Tokenizer
from latent_evo.evolution.config import ConfigError, EvolveConfig
from latent_evo.evolution.loop import LatentEvolution
from latent_evo.genome import GenomeSpec
from latent_evo.strategies import GA, STRATEGIES, PopulationStrategy, get_strategy
from latent_evo.tasks import FunctionTask, MinibatchTask, Task, get_task
from latent_evo.tasks.lora import LoRATask
from latent_evo.tasks.protocol import missing_members


def _tasks() -> dict[str, object]:
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    fn = FunctionTask(model, lambda p: sum(v.square().sum() for v in p.values()))
    base = get_task("mnist1d-mlp-tiny")
    return {"supervised": base, "function": fn, "lora": LoRATask(base, rank=2)}


@pytest.mark.parametrize("name", ["supervised", "function", "lora"])
def test_every_task_class_is_a_task(name):
    task = _tasks()[name]
    assert isinstance(task, Task), missing_members(task, Task)


def test_minibatch_tasks_are_told_apart_by_the_protocol():
    tasks = _tasks()
    assert isinstance(tasks["supervised"], MinibatchTask)
    assert isinstance(tasks["lora"], MinibatchTask)  # the base task's minibatches
    assert not isinstance(tasks["function"], MinibatchTask)  # a function of the weights alone


def test_an_object_that_is_not_a_task_is_refused_naming_what_it_lacks():
    with pytest.raises(TypeError, match="lacks .*fitness_genomes"):
        LatentEvolution(object(), None, "ga", {"generations": 1, "mode": "direct"})


@pytest.mark.parametrize("cls", [Compressor, MLPAutoencoder])
def test_every_compressor_class_satisfies_the_protocol(cls):
    spec = GenomeSpec.from_module(nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2)))
    comp = cls.from_tokenizer(Tokenizer(spec, 8))
    assert isinstance(comp, CompressorProtocol), missing_members(comp, CompressorProtocol)
    z = comp.sample(3, torch.Generator().manual_seed(0))
    assert comp.decode_genomes(z).shape == (3, spec.numel)


def test_a_compressor_without_the_protocol_is_refused_before_any_work():
    with pytest.raises(TypeError, match="lacks .*decode_genomes"):
        LatentEvolution("mnist1d-mlp-tiny", object(), "cma_es", {"generations": 1})


def test_population_strategies_say_so_by_class():
    kinds = {name: issubclass(cls, PopulationStrategy) for name, cls in STRATEGIES.items()}
    assert kinds["ga"] and not kinds["cma_es"] and not kinds["openai_es"]


def test_set_and_scale_hparam_change_a_running_strategy():
    es = get_strategy("openai_es", dim=4, popsize=4, sigma_init=0.1, lr=0.01)
    es.init()
    sigma = es.sigma.clone()
    es.scale_hparam("sigma_init", 2.0)  # a step size: the live sigma moves with it
    assert es.hp["sigma_init"] == pytest.approx(0.2) and torch.allclose(es.sigma, 2 * sigma)
    es.set_hparam("lr", 0.05)
    assert es.hp["lr"] == 0.05
    with pytest.raises(ValueError, match="lr must be > 0"):
        es.set_hparam("lr", -1.0)
    with pytest.raises(ValueError, match="unknown hyper-parameter"):
        es.set_hparam("lrr", 0.1)
    assert "mutation_sigma" in GA.tunable_hparams() and "lr" in es.tunable_hparams()


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"strategy": {"name": "snes", "hparams": {"sigma_init": -1.0}}}, r"strategy\.hparams: .*> 0"),
        ({"strategy": {"name": "cma_es", "hparams": {"lrr": 1.0}}}, r"strategy\.hparams: .*lrr"),
        ({"strategy": {"name": "nope"}}, r"strategy\.name: unknown strategy 'nope'"),
        ({"switch": {"enabled": True, "strategy": {"name": "ga", "popsize": 1}}},
         r"switch\.strategy\.popsize"),
        ({"pbt": {"spread": 0.5}}, r"pbt\.spread"),
    ],
)  # fmt: skip
def test_config_values_are_checked_once_where_the_config_is_built(section, message):
    with pytest.raises(ConfigError, match=message):
        EvolveConfig.from_dict({"generations": 2, **section})
