"""`mode: decoder`: the latent code and chosen decoder parameters searched together
(`DecoderSpace`), per-component step sizes and a GA's per-component mutation probabilities."""

from __future__ import annotations

import pytest
import torch

from latent_evo.compressor.losses import compressor_loss
from latent_evo.compressor.mlp import MLPAutoencoder
from latent_evo.compressor.tokenizer import Tokenizer
from latent_evo.evolution.config import ConfigError, DecoderComponent, EvolveConfig
from latent_evo.evolution.loop import LatentEvolution
from latent_evo.evolution.spaces import DecoderSpace, LatentSpace
from latent_evo.strategies import get_strategy
from latent_evo.tasks import get_task

TASK = "mnist1d-mlp-tiny"


@pytest.fixture(scope="module")
def task():
    return get_task(TASK)


@pytest.fixture(scope="module")
def compressor(task):
    """A small MLP autoencoder (s = 8) fitted for 60 steps to 16 random inits and their copies
    after a few Adam steps: enough for a decoder with non-trivial parameters."""
    torch.manual_seed(0)
    g = task.init_genomes(16, torch.Generator().manual_seed(0)).clone().requires_grad_(True)
    opt = torch.optim.Adam([g], lr=1e-2)
    for s in range(10):
        loss = task.fitness_genomes(g, task.batch(s)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    zoo = g.detach()
    c = MLPAutoencoder.from_tokenizer(Tokenizer(task.spec, 32).fit_normalization(zoo), hidden=32,
                                      num_latents=2, latent_dim=4)  # fmt: skip
    opt = torch.optim.Adam(c.parameters(), lr=3e-3)
    tokens = c.tokenizer.tokenize(zoo)
    for _ in range(60):
        t = compressor_loss(c, tokens, fitness=None, lambda_fit=0.0, lambda_head=0.0)
        opt.zero_grad()
        t["loss"].backward()
        opt.step()
    return c.eval()


def _params(c):
    return {k: v.clone() for k, v in c.named_parameters()}


def test_zero_delta_is_the_latent_space_and_the_compressor_is_restored(compressor):
    comps = [DecoderComponent(params=["decoder.4.bias"]), DecoderComponent(params=["decoder.2.*"])]
    space = DecoderSpace(compressor, comps)
    s, n = compressor.latent_size, compressor.spec.numel
    assert space.groups == [s, n, 32 * 32 + 32] and space.dim == sum(space.groups)
    z = torch.randn(6, s, generator=torch.Generator().manual_seed(1))
    x = space.from_codes(z)
    with torch.no_grad():
        assert torch.equal(space.to_genomes(x), LatentSpace(compressor).to_genomes(z))
        before = _params(compressor)
        x[3:, s:] = torch.randn(3, space.dim - s, generator=torch.Generator().manual_seed(2))
        x[5, s:] = x[4, s:]  # two members share their decoder part: decoded in one batch
        g = space.to_genomes(x)
    after = _params(compressor)
    assert all(torch.equal(before[k], after[k]) for k in before)  # always left as it came
    assert torch.equal(g[:3], LatentSpace(compressor).to_genomes(z[:3]))
    assert not torch.allclose(g[3:], LatentSpace(compressor).to_genomes(z[3:]))
    # member 5 alone, decoded by itself, gives the same genome as in the shared batch
    with torch.no_grad():
        assert torch.allclose(space.to_genomes(x[5:6]), g[5:6], atol=1e-6)


def test_scale_is_the_components_step_size_and_rank_is_low_rank(compressor):
    s = compressor.latent_size
    small = DecoderSpace(compressor, [DecoderComponent(params=["decoder.4.bias"], scale=0.01)])
    big = DecoderSpace(compressor, [DecoderComponent(params=["decoder.4.bias"], scale=0.1)])
    x = small.from_codes(torch.zeros(1, s))
    x[0, s:] = 1.0
    with torch.no_grad():
        base = LatentSpace(compressor).to_genomes(torch.zeros(1, s))
        d_small, d_big = small.to_genomes(x) - base, big.to_genomes(x) - base
    assert torch.allclose(d_big, 10 * d_small, rtol=1e-3, atol=1e-6)
    low = DecoderSpace(compressor, [DecoderComponent(params=["decoder.4.weight"], rank=2)])
    assert low.dim == s + compressor.spec.numel * 2  # B (out, 2) searched, A (2, in) fixed
    assert set(low.state_dict()) == {"proj.decoder.4.weight"}


def test_ga_mutates_each_component_with_its_probability():
    ga = get_strategy("ga", dim=10, popsize=16, seed=0, mutation_sigma=0.5, crossover="uniform",
                      groups=[6, 4], group_mutation_prob=[1.0, 0.0])  # fmt: skip
    pop = torch.randn(16, 10, generator=torch.Generator().manual_seed(0))
    pop[:, 6:] = 0.0
    ga.init(population=pop)
    for _ in range(5):
        x = ga.ask()
        assert torch.equal(x[:, 6:], torch.zeros(16, 4))  # the second component never mutates
        ga.tell(x.square().sum(1))
    assert ga.generation == 5
    with pytest.raises(ValueError, match="group_mutation_prob needs 2 values"):
        get_strategy("ga", dim=10, popsize=8, groups=[6, 4], group_mutation_prob=[1.0])
    with pytest.raises(ValueError, match="groups sum to 9, dim is 10"):
        get_strategy("ga", dim=10, popsize=8, groups=[6, 3], group_mutation_prob=[1.0, 1.0])


def _cfg(**over):
    cfg = {"mode": "decoder", "strategy": {"name": "snes", "popsize": 8,
                                           "hparams": {"sigma_init": 0.5}},
           "init": {"kind": "prior"}, "generations": 6, "eval_every": 0, "seed": 0,
           "decoder": {"components": [{"params": ["decoder.4.bias"], "scale": 0.05}]}}  # fmt: skip
    cfg.update(over)
    return cfg


def test_decoder_mode_runs_improves_and_resumes_bit_identically(task, compressor, tmp_path):
    full = LatentEvolution(task, compressor, None, _cfg())
    res = full.run()
    first = full.history[0]["best_fitness"]
    assert res.best_fitness < first
    part = LatentEvolution(task, compressor, None, _cfg())
    for _ in range(3):
        part.step()
    part.save(tmp_path)
    resumed = LatentEvolution(task, compressor, None, _cfg())
    resumed.load(tmp_path)
    for _ in range(3):
        resumed.step()
    assert resumed.history == full.history
    assert torch.equal(resumed.best_genome, full.best_genome)
    # a GA over the same space gets the per-component mutation probabilities
    ga = LatentEvolution(task, compressor, None, _cfg(strategy={"name": "ga", "popsize": 8}))
    assert ga.strategy.hp["groups"] == ga.space.groups
    assert ga.strategy.hp["group_mutation_prob"] == [1.0, 0.5]


def test_decoder_mode_errors_name_the_option(task, compressor):
    with pytest.raises(ValueError, match=r"decoder.components\[0\].params \['nope.\*'\] match no"):
        LatentEvolution(task, compressor, None,
                        _cfg(decoder={"components": [{"params": ["nope.*"]}]}))  # fmt: skip
    with pytest.raises(ConfigError, match="mode decoder needs at least one component"):
        EvolveConfig.from_dict(_cfg(decoder={"components": []}))
    with pytest.raises(ConfigError, match="finetune.enabled"):
        EvolveConfig.from_dict(_cfg(finetune={"enabled": True}))
    with pytest.raises(ConfigError, match="decoder.components: set, but mode is not decoder"):
        EvolveConfig.from_dict(_cfg(mode="latent"))
    with pytest.raises(ConfigError, match="mutation probabilities"):
        EvolveConfig.from_dict(_cfg(decoder={"components": [{"params": ["x"],
                                                             "mutation_prob": 2.0}]}))  # fmt: skip
