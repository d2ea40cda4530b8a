"""Direct-space runs tell structure-aware strategies where the genome's matrices are: EGGROLL
through `evolve()` perturbs each weight matrix by a rank-r product, not by full-rank noise."""

from __future__ import annotations

import torch

from latent_evo.evolution.loop import LatentEvolution
from latent_evo.evolution.spaces import tensor_shapes
from latent_evo.tasks import get_task


def test_tensor_shapes_cover_the_genome_in_order():
    task = get_task("mnist1d-cnn-tiny")
    shapes = tensor_shapes(task.spec)
    assert sum(int(torch.tensor(s).prod()) for s in shapes) == task.spec.numel
    conv = task.spec.tensors[0]
    assert len(conv.shape) == 3 and shapes[0] == (conv.shape[0], conv.shape[1] * conv.shape[2])
    assert tensor_shapes(task.spec, ["nope.*"]) == []


def _eggroll_run(hparams):
    task = get_task("mnist1d-mlp-tiny")
    cfg = {"mode": "direct", "seed": 0, "eval_every": 0, "init": {"kind": "zeros"},
           "strategy": {"name": "eggroll", "popsize": 8,
                        "hparams": {"sigma_init": 0.1, "rank": 1, **hparams}}}  # fmt: skip
    return task, LatentEvolution(task, None, None, cfg)


def test_direct_eggroll_gets_the_matrix_shapes_and_low_rank_noise():
    task, run = _eggroll_run({})
    strat = run.strategy
    assert strat.segments == [tuple(s) for s in tensor_shapes(task.spec)]
    x = strat.ask() - strat.mean  # (P, n) perturbations around the mean
    w = task.spec.tensors[0]
    block = x[0, : w.shape[0] * w.shape[1]].reshape(w.shape)  # first weight matrix, member 0
    assert torch.linalg.matrix_rank(block) == 1  # rank-1 noise, as EGGROLL is meant to be

    # shapes given by the user win; without any, the whole genome is one full-noise segment
    _, plain = _eggroll_run({"shapes": [task.spec.numel]})
    y = plain.strategy.ask() - plain.strategy.mean
    assert torch.linalg.matrix_rank(y[0, : w.shape[0] * w.shape[1]].reshape(w.shape)) > 1
    for _ in range(3):
        run.step()
        plain.step()
    assert not torch.equal(run.strategy.mean, plain.strategy.mean)
