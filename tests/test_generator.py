"""The generator search space (mode generator): a coordinate-query generator whose weights are the genome."""

from __future__ import annotations

import pytest
import torch

from latent_evo import get_task
from latent_evo.evolution.generator import (
    CoordinateGenerator,
    GeneratorConfig,
    GeneratorSpace,
    parameter_counts,
    train_generator_backprop,
)
from latent_evo.evolution.spaces import SearchSpace
from latent_evo.strategies import get_strategy

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny():
    return get_task("mnist1d-mlp-tiny")


@pytest.fixture(scope="module")
def resnet():
    # conv kernels, BatchNorm affine ("norm") and running statistics ("buffer")
    return get_task("digits-resnet8-tiny")


@pytest.mark.parametrize("fixture", ["tiny", "resnet"])
def test_shapes_and_parameter_budget(fixture, request):
    task = request.getfixturevalue(fixture)
    space = GeneratorSpace(task)
    assert isinstance(space, SearchSpace) and space.name == "generator"
    counts = parameter_counts(task, GeneratorConfig())
    assert counts["generator"] == space.dim
    assert counts["target"] == task.spec.numel
    assert space.dim * 4 <= counts["target_trained"], counts
    theta = space.initial_mean()
    assert theta.shape == (space.dim,)
    g = space.to_genomes(torch.stack([theta, theta + 0.1]))
    assert g.shape == (2, task.spec.numel) and g.dtype == task.spec.dtype
    assert torch.isfinite(g).all()
    # the first phenotype has the scale of the task's own init (per-tensor scales)
    ref = task.genome()
    assert 0.5 < float(g[0].std() / ref.std()) < 2.0
    assert torch.isfinite(task.fitness_genomes(g)).all()


def test_buffers_are_constants(resnet):
    space = GeneratorSpace(resnet)
    g = space.to_genomes(torch.randn(3, space.dim, generator=torch.Generator().manual_seed(1)))
    ref = resnet.genome()
    for t, off, k in zip(resnet.spec.tensors, resnet.spec.offsets, resnet.spec.numels, strict=True):
        part = g[:, off : off + k]
        if t.kind == "buffer":  # running statistics: the init's values, whatever theta is
            assert torch.equal(part, ref[off : off + k].expand(3, -1)), t.name
        else:  # generated: members differ
            assert not torch.equal(part[0], part[1]), t.name


def test_generate_is_batched_and_matches_a_loop(tiny):
    space = GeneratorSpace(tiny)
    theta = torch.randn(5, space.dim, generator=torch.Generator().manual_seed(0)) * 0.3
    batched = space.to_genomes(theta)
    rows = torch.cat([space.to_genomes(theta[i : i + 1]) for i in range(5)])
    torch.testing.assert_close(batched, rows, rtol=1e-5, atol=1e-6)
    # chunked over coordinates (a tiny memory bound) gives the same genomes
    small = CoordinateGenerator.from_task(tiny, GeneratorConfig(max_chunk_elements=500))
    torch.testing.assert_close(small.generate(theta), batched, rtol=1e-5, atol=1e-6)
    # deterministic: same seed, same init
    assert torch.equal(space.initial_mean(), GeneratorSpace(tiny).initial_mean())


def test_gradient_reaches_theta_and_backprop_lowers_loss(tiny):
    space = GeneratorSpace(tiny)
    theta = space.initial_mean()[None].requires_grad_(True)
    tiny.fitness_genomes(space.to_genomes(theta)).sum().backward()
    assert theta.grad is not None and theta.grad.abs().sum() > 0

    r = train_generator_backprop(tiny, GeneratorConfig(), steps=50, lr=3e-2, seed=0)
    assert r["trained_params"] == space.dim and r["steps"] == 50
    assert {"history", "test", "wall_s", "theta"} <= set(r)
    assert "test_accuracy" in r["test"]
    before = float(tiny.fitness_genomes(space.to_genomes(space.initial_mean()[None]))[0])
    after = float(tiny.fitness_genomes(space.to_genomes(r["theta"][None]))[0])
    assert after < before - 0.05, (before, after)


@pytest.mark.parametrize(
    "name,hparams",
    [("snes", {"sigma_init": 0.1}), ("ga", {"init_scale": 0.1, "mutation_sigma": 0.05})],
)
def test_search_over_hyperspace_improves_fitness(tiny, name, hparams):
    space = GeneratorSpace(tiny)
    s = get_strategy(name, dim=space.dim, popsize=16, seed=0, **hparams)
    s.init(mean=space.initial_mean())
    best = []
    for _ in range(15):
        x = s.ask()
        assert x.shape == (16, space.dim)
        with torch.no_grad():
            f = tiny.fitness_genomes(space.to_genomes(x))
        s.tell(f)
        best.append(float(f.min()))
    assert min(best[-3:]) < best[0] - 0.02, best  # a theta-blind space gives 0


def test_from_genomes_fits_better_than_init(tiny):
    space = GeneratorSpace(tiny, GeneratorConfig(fit_steps=100))
    g = tiny.init_genomes(2, torch.Generator().manual_seed(3))
    with torch.no_grad():  # as the loop calls it
        theta = space.from_genomes(g)
    assert theta.shape == (2, space.dim) and not theta.requires_grad
    init = space.to_genomes(space.initial_mean().expand(2, -1))
    fit = space.to_genomes(theta)
    mse_init = float((init - g).square().mean())
    mse_fit = float((fit - g).square().mean())
    assert mse_fit < 0.8 * mse_init, (mse_init, mse_fit)


def test_bad_input_names_the_expected_width(tiny):
    space = GeneratorSpace(tiny)
    with pytest.raises(ValueError, match=f"\\(P, {space.dim}\\)"):
        space.to_genomes(torch.zeros(2, space.dim + 1))
    with pytest.raises(ValueError, match=str(space.dim)):
        space.to_genomes(torch.zeros(space.dim))  # (d,) without the population dim
    with pytest.raises(ValueError, match="activation"):
        GeneratorConfig(activation="sine")
    with pytest.raises(ValueError, match="hidden"):
        GeneratorConfig(hidden=0)
    with pytest.raises(ValueError, match="length"):
        space.from_genomes(torch.zeros(1, tiny.spec.numel + 3))


def test_generator_mode_in_the_loop_improves_and_resumes(tmp_path):
    """`mode: generator` through `LatentEvolution`: no compressor, starts at the generator's
    init, improves, and a checkpoint resumes bit-identically."""
    from latent_evo.evolution.loop import LatentEvolution

    cfg = {"mode": "generator", "strategy": {"name": "snes", "popsize": 8,
                                                "hparams": {"sigma_init": 0.1}},
           "generations": 8, "eval_every": 0, "seed": 0}  # fmt: skip
    task = get_task("mnist1d-mlp-tiny")
    full = LatentEvolution(task, None, None, cfg)
    res = full.run()
    assert full.space.name == "generator" and full.strategy.dim == full.space.dim
    assert res.best_fitness < full.history[0]["best_fitness"]
    part = LatentEvolution(task, None, None, cfg)
    for _ in range(4):
        part.step()
    part.save(tmp_path)
    resumed = LatentEvolution(task, None, None, cfg)
    resumed.load(tmp_path)
    for _ in range(4):
        resumed.step()
    assert resumed.history == full.history
    assert torch.equal(resumed.best_genome, full.best_genome)
    with pytest.raises(ValueError, match="generator.hidden must be >= 1"):
        LatentEvolution(task, None, None, {**cfg, "generator": {"hidden": 0}})
