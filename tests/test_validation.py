"""Validation-gated reporting: a search started from a good network never reports a worse one on
held-out data, even when its fitness sample tempts it to over-fit; early stopping; resume."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from latent_evo.evolution.config import ConfigError
from latent_evo.evolution.loop import LatentEvolution
from latent_evo.tasks import FunctionTask, get_task

TEMPTING = {"fitness_batch_size": 16}  # 16 fixed examples: easy to over-fit, far from the data


@pytest.fixture(scope="module")
def good_network(tmp_path_factory):
    """A tiny MLP trained by Adam on all of MNIST-1D's training split, saved as safetensors."""
    torch.manual_seed(0)
    task = get_task("mnist1d-mlp-tiny")
    g = task.init_genomes(1, torch.Generator().manual_seed(0)).clone().requires_grad_(True)
    opt = torch.optim.Adam([g], lr=1e-2)
    for step in range(150):
        loss = task.fitness_genomes(g, task.batch(step)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    path = tmp_path_factory.mktemp("net") / "good.safetensors"
    save_file({k: v.contiguous() for k, v in task.spec.unflatten(g.detach()[0]).items()}, path)
    return path


def _run(path, validation: bool, patience: int = 0, metric: str = "loss", **extra):
    cfg = {"mode": "direct", "seed": 0, "generations": 25, "eval_every": 0,
           "task": {"name": "mnist1d-mlp-tiny", "overrides": TEMPTING},
           "strategy": {"name": "openai_es", "popsize": 16,
                        "hparams": {"sigma_init": 0.05, "lr": 0.05}},
           "init": {"kind": "network", "path": str(path)},
           "validation": {"enabled": validation, "fraction": 0.2, "chunks": 8,
                          "patience": patience, "metric": metric}, **extra}  # fmt: skip
    return LatentEvolution(cfg["task"]["name"], None, None, cfg)


def test_started_from_a_network_it_never_reports_a_worse_one_on_validation(good_network):
    run = _run(good_network, validation=True)
    run.initialize()
    start_val = run.gate.loss  # the user's network, evaluated first (counted)
    assert torch.isfinite(torch.tensor(start_val)) and run.evaluations == 2
    res = run.run()
    assert res.validation_loss <= start_val
    start = run.task.validation_losses(run.gate.genome[None], 8)
    assert float(start.mean()) == pytest.approx(res.validation_loss)
    assert all("val_loss" in r for r in res.history)
    # the temptation is real: on its 16 fixed examples the search finds networks the gate refuses
    assert run.best_fitness < res.best_fitness
    assert float(run.task.validation_losses(run.best_genome[None], 8).mean()) > start_val


def test_early_stopping_on_validation_and_resume_is_bit_identical(good_network, tmp_path):
    res = _run(good_network, True, patience=5, generations=40).run()
    assert res.generations < 40  # stopped early: no progress on validation for 5 generations
    assert any(r["val_loss"] == res.validation_loss for r in res.history[-5:])
    assert [e["event"] for e in res.events] == ["early_stop"]
    _run(good_network, True, patience=5, generations=40).run(generations=3, checkpoint_dir=tmp_path)
    resumed = _run(good_network, True, patience=5, generations=40)
    resumed.load(tmp_path)
    rc = resumed.run()
    assert rc.generations == res.generations and torch.equal(rc.best_genome, res.best_genome)
    assert rc.validation_loss == res.validation_loss and rc.history == res.history


def test_a_task_without_validation_is_refused_naming_it():
    model = torch.nn.Linear(3, 2)
    task = FunctionTask(model, lambda p: p["weight"].square().sum(), name="quadratic")
    with pytest.raises(ConfigError, match="task 'quadratic' cannot hold out"):
        LatentEvolution(task, None, "snes", {"mode": "direct", "generations": 2,
                                             "validation": {"enabled": True}})  # fmt: skip


def test_bad_validation_options_are_config_errors():
    with pytest.raises(ConfigError, match="validation: fraction in"):
        LatentEvolution(
            "mnist1d-mlp-tiny",
            None,
            "snes",
            {"generations": 2, "validation": {"enabled": True, "fraction": 1.5}},
        )


def test_the_gate_can_compare_error_rates(good_network):
    """`validation.metric: error`: the gate compares what is reported (accuracy), part by part,
    and still never reports a network with a higher validation error than the start."""
    run = _run(good_network, True, metric="error", generations=6)
    run.initialize()
    start = run.gate.loss  # the user's network's validation error rate
    res = run.run()
    assert 0 <= res.validation_loss <= start <= 1
    again = run.task.validation_losses(run.gate.genome[None], 8, "error")  # (1, 8)
    assert float(again.mean()) == pytest.approx(res.validation_loss)
