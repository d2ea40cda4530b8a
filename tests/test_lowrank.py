"""Low-rank populations: the batched forward equals each member's materialised network, for
nn.Linear (MLP) and GPT-2's Conv1D layout; bad factors name the layer."""

from __future__ import annotations

import pytest
import torch

from latent_evo.models import GPT2, MLP, GPT2Config
from latent_evo.models.lowrank import linear_layers, low_rank_population, materialize


def _factors(model, names, P, r, scale=0.05, seed=0):
    from latent_evo.models.lowrank import layer_dims

    g = torch.Generator().manual_seed(seed)
    out = {}
    for name in names:
        n_in, n_out = layer_dims(model, name)
        out[name] = (
            scale * torch.randn(P, n_out, r, generator=g),
            scale * torch.randn(P, n_in, r, generator=g),
        )
    return out


@pytest.mark.parametrize("family", ["mlp", "gpt2"])
def test_population_forward_equals_materialised_members(family):
    torch.manual_seed(0)
    if family == "mlp":
        model = MLP(in_features=10, hidden=(16, 12), out_features=3).eval()
        x = torch.randn(5, 10)
    else:
        model = GPT2(GPT2Config(vocab_size=32, n_ctx=16, n_embd=24, n_layer=2, n_head=3)).eval()
        x = torch.randint(0, 32, (2, 9))
    names = linear_layers(model)
    assert names and "lm_head" not in names
    P, r = 4, 2
    factors = _factors(model, names, P, r)
    with torch.no_grad(), low_rank_population(model, factors) as n:
        assert n == P
        out = model(x.repeat(P, *[1] * (x.dim() - 1)))  # (P * b, ...) member-major
    out = out.reshape(P, *model(x).shape)
    for p in range(P):
        ref = torch.func.functional_call(model, materialize(model, factors, p), (x,))
        torch.testing.assert_close(out[p], ref, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(out[0], out[1])
    with torch.no_grad():  # the hooks are gone: the base network again
        base = dict(model.named_parameters())
        torch.testing.assert_close(model(x), torch.func.functional_call(model, base, (x,)))


def test_bad_factors_name_the_layer():
    model = MLP(in_features=10, hidden=(16,), out_features=3)
    good = _factors(model, ["layers.0"], 2, 2)
    with pytest.raises(KeyError, match="no layer 'nope'"):
        with low_rank_population(model, {"nope": good["layers.0"]}):
            pass
    a, b = good["layers.0"]
    with pytest.raises(ValueError, match="layers.0: the layer maps 10 -> 16"):
        with low_rank_population(model, {"layers.0": (a, b[:, :5])}):
            pass
    with pytest.raises(ValueError, match="population size"):
        more = _factors(model, ["layers.1"], 3, 2)
        with low_rank_population(model, {**good, **more}):
            pass


@pytest.mark.parametrize("name", ["mnist1d-mlp-tiny", "text-gpt2-tiny"])
def test_task_fitness_low_rank_equals_materialised_genomes(name):
    """`Task.fitness_low_rank`: a population's fitness from factors alone, equal to the fitness
    of the genomes the factors would build, around the task's model or a given base genome."""
    from latent_evo.tasks import get_task
    from latent_evo.tasks.function import genome_to_module

    task = get_task(name)
    model = task.model
    names = linear_layers(model, include="transformer.h." if "gpt2" in name else "")
    P = 5
    factors = _factors(model, names, P, 2, scale=0.1)
    base = task.init_genomes(1, torch.Generator().manual_seed(3))[0]
    with torch.no_grad():
        for b in (None, base):
            ref_model = model if b is None else genome_to_module(task, b)
            f = task.fitness_low_rank(factors, model=ref_model, members_per_pass=2)
            genomes = torch.stack([
                task.spec.flatten(materialize(ref_model, factors, p)) for p in range(P)
            ])  # fmt: skip
            torch.testing.assert_close(f, task.fitness_genomes(genomes), rtol=1e-4, atol=1e-5)
    assert f.shape == (P,) and not torch.allclose(f[0], f[1])
