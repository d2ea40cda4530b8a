"""The evolution loop on MNIST-1D (tiny MLP, CPU): latent GA / CMA-ES with a tiny compressor
trained in a fixture on a tiny zoo of quick Adam runs, direct mode, residual search, switching,
surrogate screening, online fine-tuning, bit-identical resume, and clear errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from zoo_helpers import write_zoo

from latent_evo.compressor.attention import Compressor
from latent_evo.compressor.losses import compressor_loss
from latent_evo.compressor.mlp import MLPAutoencoder
from latent_evo.compressor.tokenizer import Tokenizer
from latent_evo.evolution.config import ConfigError, EvolveConfig
from latent_evo.evolution.evolve import evolve
from latent_evo.evolution.loop import LatentEvolution
from latent_evo.genome import GenomeError
from latent_evo.tasks import get_task
from latent_evo.tasks.function import FitnessShapeError

TASK = "mnist1d-mlp-tiny"


@pytest.fixture(scope="module")
def task():
    return get_task(TASK)


@pytest.fixture(scope="module")
def zoo(task):
    """(32, n): 8 networks x 4 snapshots (init, then every 10 Adam steps): a tiny model zoo."""
    g = task.init_genomes(8, torch.Generator().manual_seed(0)).clone().requires_grad_(True)
    opt = torch.optim.Adam([g], lr=1e-2)
    snaps = [g.detach().clone()]
    for s in range(30):
        loss = task.fitness_genomes(g, task.batch(s)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (s + 1) % 10 == 0:
            snaps.append(g.detach().clone())
    return torch.cat(snaps)


@pytest.fixture(scope="module")
def compressor(task, zoo):
    """A tiny pretrained compressor (MLP autoencoder, s = 8) fitted to the zoo in ~100 steps."""
    torch.manual_seed(0)
    tok = Tokenizer(task.spec, 32).fit_normalization(zoo)
    c = MLPAutoencoder.from_tokenizer(tok, hidden=64, num_latents=2, latent_dim=4)
    opt = torch.optim.Adam(c.parameters(), lr=3e-3)
    fit = task.fitness_genomes(zoo).detach()
    tokens = c.tokenizer.tokenize(zoo)
    for _ in range(100):
        t = compressor_loss(c, tokens, fitness=fit, lambda_fit=0.0, lambda_head=0.1)
        opt.zero_grad()
        t["loss"].backward()
        opt.step()
    return c.eval()


def _fresh(compressor):
    """A copy, so fine-tuning in one test does not leak into another."""
    c = MLPAutoencoder(compressor.config)
    c.load_state_dict(compressor.state_dict())
    return c.eval()


@pytest.mark.parametrize(
    "strategy, hp", [("ga", {"mutation_sigma": 0.3}), ("cma_es", {"sigma_init": 0.5})]
)
def test_latent_search_improves_test_accuracy(task, compressor, strategy, hp):
    # start from the encoding of fresh random inits (~10% accuracy): the search must find better
    run = LatentEvolution(task, compressor, strategy, {"seed": 0, "eval_every": 4,
                          "strategy": {"popsize": 16, "hparams": hp}})  # fmt: skip
    run.initialize()
    with torch.no_grad():
        start = run.space.to_genomes(run.strategy.mean[None])[0]
    first = task.evaluate(start)["test_accuracy"]
    res = run.run(generations=12)
    accs = [h["test_accuracy"] for h in res.history if "test_accuracy" in h]
    assert res.evaluations == 12 * 16 and len(res.history) == 12 and len(accs) == 3
    # train loss falls monotonically; test accuracy of the best genome ends well above the start
    fits = [h["best_fitness"] for h in res.history]
    assert fits == sorted(fits, reverse=True) and fits[-1] < fits[0] - 0.05
    assert res.test_metrics["test_accuracy"] > first + 0.04, (first, accs)
    assert isinstance(res.best_model, nn.Module)
    assert res.best_model(task.test_data[0][:4]).shape == (4, 10)


def test_direct_mode_same_api(task):
    res = evolve(task, None, "ga", generations=6, popsize=16, seed=0, eval_every=1,
                 strategy_hparams={"mutation_sigma": 0.02})  # fmt: skip
    assert res.history[0]["phase"] == "direct"
    assert res.best_genome.shape == (task.spec.numel,)
    fits = [h["best_fitness"] for h in res.history]
    assert fits == sorted(fits, reverse=True) and fits[-1] < fits[0]
    # the result's network is the best genome
    f = task.fitness_genomes(task.spec.flatten(res.best_model.state_dict())[None])
    assert math.isclose(float(f[0]), res.best_fitness, rel_tol=1e-5)


def test_fresh_minibatches_rescore_the_best_on_each_batch(task):
    """With `fitness_batch: step`, the best so far is compared with each generation on that
    generation's batch (one counted evaluation per generation), so the reported best fitness is
    the best network's loss on the last batch, not the luck of an easy batch."""
    gens, P = 6, 16
    res = evolve(task, None, "ga", generations=gens, popsize=P, seed=0, fitness_batch="step",
                 strategy_hparams={"mutation_sigma": 0.02})  # fmt: skip
    # one re-score per generation (none before generation 0), two per confirmation challenge
    extra = res.history[-1]["evaluations"] - gens * P - (gens - 1)
    assert extra % 2 == 0 and 0 <= extra <= 2 * (gens - 1)
    last = task.batch(gens - 1)
    f = task.fitness_genomes(res.best_genome[None], last)
    assert math.isclose(float(f[0]), res.best_fitness, rel_tol=1e-5)
    assert len({round(h["best_fitness"], 6) for h in res.history}) > 1


def test_fresh_minibatches_confirm_a_challenger_on_a_second_batch(task):
    """A member that beats the best on its generation's batch replaces it only if it also wins
    on an independent batch: a lucky (here: claimed) win by a bad network is refused."""
    run = LatentEvolution(task, None, "ga", {"generations": 3, "fitness_batch": "step",
                                             "strategy": {"popsize": 8}})  # fmt: skip
    run.step()
    best, spent = run.best_genome.clone(), run.evaluations
    bad = 50 * best[None]  # huge logits: a far worse network
    run._record_best(torch.tensor([-1.0]), bad, confirm=True)  # it "won" on this batch
    assert torch.equal(run.best_genome, best) and run.evaluations == spent + 2
    fixed = LatentEvolution(task, None, "ga", {"generations": 3, "strategy": {"popsize": 8}})
    fixed.step()
    before = fixed.evaluations
    fixed._record_best(torch.tensor([-1.0]), bad, confirm=True)  # fixed batch: no second batch
    assert torch.equal(fixed.best_genome, bad[0]) and fixed.evaluations == before


def test_residual_search_starts_at_base_and_beats_the_decoder(task, compressor, zoo, tmp_path):
    base = zoo[-1]  # a trained zoo network, given as a file: NOT in the decoder's image
    path = tmp_path / "base.safetensors"
    save_file({k: v.contiguous() for k, v in task.spec.unflatten(base).items()}, str(path))
    run = LatentEvolution(task, compressor, "cma_es", {"mode": "residual", "seed": 0,
                          "eval_every": 0, "strategy": {"popsize": 8, "hparams": {"sigma_init": 1.0}},
                          "residual": {"rebase_every": 2, "base": str(path)}})  # fmt: skip
    run.initialize()
    assert torch.equal(run.space.base, base)
    with torch.no_grad():  # u = 0 is exactly the base network, not its reconstruction
        assert torch.equal(run.space.to_genomes(torch.zeros(1, run.space.dim))[0], base)
        f_base = float(task.fitness_genomes(base[None])[0])
        decoded = float(task.fitness_genomes(compressor.decode_genomes(
            compressor.encode_genomes(base[None])))[0])  # fmt: skip
    assert run.best_fitness == f_base and run.evaluations == 1
    for _ in range(6):
        run.step()
    assert run.best_fitness <= f_base < decoded  # never worse than the base; the decoder is
    for e in (e for e in run.events if e["event"] == "rebase"):
        assert e["generation"] % 2 == 0
    if run.best_fitness < f_base and run.generation % 2 == 0:
        assert torch.equal(run.space.base, run.best_genome)  # the base followed the best


def test_init_from_zoo_top_k_and_from_a_network(task, compressor, zoo, tmp_path):
    write_zoo(tmp_path / "zoo", task.name, task.spec, zoo)
    run = LatentEvolution(task, compressor, "ga", {"seed": 0, "eval_every": 0,
                          "strategy": {"popsize": 6},
                          "init": {"kind": "zoo", "path": str(tmp_path / "zoo"),
                                   "top_k": 3}})  # fmt: skip
    run.initialize()
    f = task.fitness_genomes(zoo)
    assert run.evaluations == len(zoo) and run.best_fitness == pytest.approx(float(f.min()))
    top = compressor.encode_genomes(zoo[torch.argsort(f, stable=True)[:3]])
    assert torch.allclose(run.strategy.population, top.repeat(2, 1))  # top-3 cycled to P = 6
    path = tmp_path / "net.safetensors"
    save_file({k: v.contiguous() for k, v in task.spec.unflatten(zoo[5]).items()}, str(path))
    run = LatentEvolution(task, compressor, "cma_es", {"seed": 0,
                          "init": {"kind": "network", "path": str(path), "lossy_tol": None}})  # fmt: skip
    run.initialize()
    assert torch.allclose(run.strategy.mean, compressor.encode_genomes(zoo[5][None])[0])
    # by default a network the decoder cannot reproduce is searched around itself (residual)
    net = zoo[-1]  # a trained network the small compressor decodes worse
    save_file({k: v.contiguous() for k, v in task.spec.unflatten(net).items()}, str(path))
    with torch.no_grad():
        f_net = float(task.fitness_genomes(net[None])[0])
        copy = compressor.decode_genomes(compressor.encode_genomes(net[None]))
        assert float(task.fitness_genomes(copy)[0]) > 1.001 * f_net  # this compressor is lossy
    run = LatentEvolution(task, compressor, "cma_es", {"seed": 0,
                          "init": {"kind": "network", "path": str(path), "lossy_tol": 0.001}})  # fmt: skip
    run.initialize()
    assert run.cfg.mode == "residual" and run.events[0]["event"] == "residual_start"
    assert torch.equal(run.space.base, net) and run.best_fitness == pytest.approx(f_net)


def test_switch_to_direct_when_latent_stalls(task, compressor):
    res = evolve(task, compressor, "cma_es", generations=10, popsize=8, seed=0, eval_every=0,
                 strategy_hparams={"sigma_init": 1e-6},  # a frozen latent search stalls at once
                 switch={"enabled": True, "window": 3, "tol": 1e-4,
                         "strategy": {"name": "openai_es", "popsize": 8,
                                      "hparams": {"sigma_init": 0.02, "lr": 0.02}}})  # fmt: skip
    switches = [e for e in res.events if e["event"] == "switch"]
    assert len(switches) == 1 and switches[0]["to"] == "direct"
    assert "stall" in switches[0]["reason"]
    g = switches[0]["generation"]
    assert res.history[g]["phase"] == "direct" and res.history[g - 1]["phase"] == "latent"
    assert res.best_fitness <= switches[0]["best_fitness"]


def test_switch_to_some_tensors_keeps_the_rest(task, compressor):
    """switch.tensors: the direct phase searches only the output layer; every other weight
    stays exactly as in the best genome at the switch."""
    run = LatentEvolution(task, compressor, "cma_es", {"seed": 0, "eval_every": 0,
        "strategy": {"popsize": 8, "hparams": {"sigma_init": 1e-6}},
        "switch": {"enabled": True, "window": 3, "tol": 1e-4, "tensors": ["layers.1.*"],
                   "strategy": {"name": "openai_es", "popsize": 8,
                                "hparams": {"sigma_init": 0.05, "lr": 0.05}}}})  # fmt: skip
    for _ in range(20):  # a frozen latent search stalls after `window` generations
        run.step()
        if run.phase == "direct":
            break
    assert run.phase == "direct"
    at_switch = run.best_genome.clone()
    head = run.switcher.space.index
    off = task.spec.offsets[task.spec.index("layers.1.weight")]
    assert head[0] == off and len(head) == task.spec.numel - off  # weight + bias of layer 1
    assert run.switcher.strategy.dim == len(head)
    for _ in range(4):
        run.step()
    genomes = run.switcher.space.to_genomes(run.switcher.strategy.ask())  # (P, n)
    keep = torch.ones(task.spec.numel, dtype=torch.bool, device=head.device)
    keep[head] = False
    assert torch.equal(genomes[:, keep], at_switch[keep].expand(len(genomes), -1))
    assert not torch.equal(genomes[:, head], at_switch[head].expand(len(genomes), -1))
    assert torch.equal(run.best_genome[keep], at_switch[keep])
    assert run.history[-1]["phase"] == "direct"


def test_switch_tensors_pattern_that_matches_nothing_is_an_error(task, compressor):
    with pytest.raises(
        ConfigError, match=r"switch\.tensors: .*'head\.\*' matches no tensor.*layers\.0"
    ):
        LatentEvolution(
            task, compressor, "cma_es", {"switch": {"enabled": True, "tensors": ["head.*"]}}
        )
    with pytest.raises(ConfigError, match=r"switch\.tensors: expected a list"):
        EvolveConfig.from_dict({"switch": {"enabled": True, "tensors": "layers.1.*"}})
    with pytest.raises(ConfigError, match=r"switch\.tensors: set, but switch\.enabled is false"):
        EvolveConfig.from_dict({"switch": {"tensors": ["layers.1.*"]}})
    with pytest.raises(ConfigError, match=r"switch\.tensors: a direct-mode run never switches"):
        LatentEvolution(
            task, None, "snes", {"switch": {"enabled": True, "tensors": ["layers.1.*"]}}
        )


def test_surrogate_prescreening_counts_savings(task, compressor):
    res = evolve(task, compressor, "cma_es", generations=4, popsize=16, seed=0, eval_every=0,
                 strategy_hparams={"sigma_init": 0.5},
                 surrogate={"enabled": True, "fraction": 0.25})  # fmt: skip
    assert res.evaluations == 4 * 4
    last = res.history[-1]
    assert last["saved_evaluations"] == 4 * 12
    assert 0.0 <= last["surrogate_agreement"] <= 1.0


# ------------------------------------------------------------------------------ fine-tuning
def test_online_finetune_changes_compressor_and_reencoding_keeps_fitness(task, compressor):
    c = _fresh(compressor)
    before = {k: v.clone() for k, v in c.state_dict().items()}
    ft = {"enabled": True, "every": 2, "steps": 5, "lr": 1e-3, "batch_size": 16,
          "reencode_steps": 30}  # fmt: skip
    run = LatentEvolution(task, c, "ga", {"generations": 4, "seed": 0, "eval_every": 0,
                          "strategy": {"popsize": 8, "hparams": {"mutation_sigma": 0.3}},
                          "finetune": ft})  # fmt: skip
    res = run.run()
    # the run fine-tunes its own copy; the caller's compressor is untouched
    assert all(torch.equal(before[k], v) for k, v in c.state_dict().items())
    assert any(not torch.equal(before[k], v) for k, v in run.compressor.state_dict().items())
    evolve(
        task,
        c,
        "ga",
        generations=4,
        popsize=8,
        seed=0,
        eval_every=0,
        strategy_hparams={"mutation_sigma": 0.3},
        finetune={**ft, "in_place": True},
    )
    assert any(not torch.equal(before[k], v) for k, v in c.state_dict().items())  # asked for
    fts = [e for e in res.events if e["event"] == "finetune"]
    assert len(fts) == 2
    for e in fts:
        assert e["loss_after"] < 1.5 * e["loss_before"]  # a few small steps: no blow-up
        # re-encoded population decodes to nearly the same networks: fitness barely moves
        assert e["reencode_error"] < 0.2
        assert e["fitness_drift"] < 0.05 * e["fitness_before"], e


def test_warmup_phase_feeds_archive_then_ends(task, compressor):
    run = LatentEvolution(task, _fresh(compressor), "cma_es", {"seed": 0, "eval_every": 0,
        "strategy": {"popsize": 8, "hparams": {"sigma_init": 0.5}},
        "finetune": {"enabled": True, "every": 2, "steps": 3, "lr": 1e-3,
                     "warmup": {"enabled": True, "threshold": 1e9,
                                "strategy": {"name": "openai_es", "popsize": 4}}}})  # fmt: skip
    run.step()
    assert run.warmup.active and run.evaluations == 8 + 4 and run.archive.count == 12
    run.step()  # fine-tune: loss < threshold ends the warm-up
    assert not run.warmup.active
    assert run.events[-1].get("warmup_ended")
    run.step()
    assert run.archive.count == 12 + 12 + 8  # warm-up ran in generation 2, not after


# ------------------------------------------------------------------------------ checkpoints
def _cfg(**kw):
    base = {"seed": 3, "eval_every": 2, "mode": "residual",
            "strategy": {"name": "ga", "popsize": 8, "hparams": {"mutation_sigma": 0.3}},
            "residual": {"rebase_every": 2},
            "finetune": {"enabled": True, "every": 2, "steps": 2, "lr": 1e-3, "batch_size": 8,
                         "reencode_steps": 3},
            "switch": {"enabled": True, "window": 2, "tol": 10.0, "back": True,
                       "strategy": {"name": "openai_es", "popsize": 8}}}  # fmt: skip
    base.update(kw)
    return base


@pytest.mark.parametrize(
    "tensors, warmup",
    [([], False), (["layers.1.*"], False), ([], True)],
    ids=["whole-genome", "some-tensors", "warm-up"],
)
def test_resume_is_bit_identical(task, compressor, tmp_path, tensors, warmup):
    # residual GA + re-basing + fine-tuning + switching there and back (+ a direct warm-up
    # population that never ends: threshold 0): every piece of state
    cfg = _cfg()
    cfg["switch"]["tensors"] = tensors
    if warmup:
        cfg["finetune"]["warmup"] = {"enabled": True, "threshold": 0.0,
                                     "strategy": {"name": "openai_es", "popsize": 4}}  # fmt: skip
    full = LatentEvolution(task, _fresh(compressor), None, cfg)
    for _ in range(8):
        full.step()
    assert {e["event"] for e in full.events} == {"finetune", "switch", "rebase"}
    # latent -> direct -> latent -> direct: the checkpoint (generation 5) falls in the second
    # latent phase, so the resumed run re-enters direct space from restored state
    assert [e["to"] for e in full.events if e["event"] == "switch"] == [
        "direct",
        "latent",
        "direct",
    ]
    part = LatentEvolution(task, _fresh(compressor), None, cfg)
    for _ in range(5):
        part.step()
    part.save(tmp_path)
    del part
    resumed = LatentEvolution(task, _fresh(compressor), None, cfg)
    resumed.load(tmp_path)
    assert resumed.generation == 5
    for _ in range(3):
        resumed.step()
    assert resumed.history == full.history  # floats compared exactly
    assert resumed.events == full.events
    assert torch.equal(resumed.best_genome, full.best_genome)

    def strategies(run):  # the run's, the direct phase's, the warm-up's
        return [run.strategy, run.switcher.strategy] + ([run.warmup.strategy] if warmup else [])

    for a, b in zip(strategies(resumed), strategies(full), strict=True):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sb)
    assert resumed.archive.count == full.archive.count
    assert torch.equal(resumed.archive.genomes, full.archive.genomes)
    ca, cb = resumed.compressor.state_dict(), full.compressor.state_dict()
    assert all(torch.equal(ca[k], cb[k]) for k in cb)


# ------------------------------------------------------------------------------ user modules
def test_user_module_and_fitness_function():
    torch.manual_seed(0)
    x = torch.randn(64, 3)
    y = x @ torch.tensor([1.0, -2.0, 0.5])
    model = nn.Linear(3, 1)

    def fitness(params):
        return F.mse_loss(torch.func.functional_call(model, params, (x,)).squeeze(-1), y)

    res = evolve(model, fitness_fn=fitness, strategy="cma_es", generations=30, popsize=8,
                 strategy_hparams={"sigma_init": 0.5}, seed=0)  # fmt: skip
    with torch.no_grad():
        start = float(fitness(dict(model.named_parameters())))
    assert res.best_fitness < 0.5 * start
    assert res.test_metrics["fitness"] == pytest.approx(res.best_fitness)


# ------------------------------------------------------------------------------ bad input
def test_compressor_spec_mismatch_is_clear(task):
    other = get_task("digits-mlp-tiny")
    c = Compressor.from_tokenizer(Tokenizer(other.spec, 32), d_model=16, n_heads=2,
                                  encoder_layers=1, num_latents=2, latent_dim=2)  # fmt: skip
    with pytest.raises(GenomeError, match="does not match"):
        LatentEvolution(task, c, "ga")


def test_unknown_config_key_is_clear(task):
    with pytest.raises(ConfigError, match="'finetune.evry'"):
        EvolveConfig.from_dict({"finetune": {"evry": 3}})
    with pytest.raises(ConfigError, match="'strategi'"):
        LatentEvolution(task, None, "ga", {"strategi": {}})


def test_wrong_fitness_shape_is_clear():
    model = nn.Linear(3, 2)

    def fitness(params):  # returns one value per output: (2,) instead of a scalar
        return torch.func.functional_call(model, params, (torch.ones(1, 3),))[0]

    with pytest.raises(FitnessShapeError, match=r"returned shape \(4, 2\).*expected \(4,\)"):
        evolve(model, fitness_fn=fitness, strategy="ga", generations=1, popsize=4)


def test_latent_mode_without_compressor_is_clear(task):
    with pytest.raises(ValueError, match="needs a compressor"):
        LatentEvolution(task, None, "ga", {"mode": "residual"})
