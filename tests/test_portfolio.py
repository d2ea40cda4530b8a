"""The portfolio over search spaces: probing, credit, the share floor, relaying the best genome,
bit-identical resume, and clear config errors. Tiny MNIST-1D MLP and a tiny MLP autoencoder."""

from __future__ import annotations

import pytest
import torch

from latent_evo.compressor.mlp import MLPAutoencoder
from latent_evo.compressor.tokenizer import Tokenizer
from latent_evo.evolution.config import ConfigError
from latent_evo.evolution.evolve import evolve
from latent_evo.evolution.loop import LatentEvolution
from latent_evo.tasks import get_task

FROZEN = {"sigma_init": 1e-9, "lr": 1e-9}  # a strategy that cannot move: its space never helps


@pytest.fixture(scope="module")
def task():
    return get_task("mnist1d-mlp-tiny")


@pytest.fixture(scope="module")
def compressor(task):
    torch.manual_seed(0)
    g = task.init_genomes(16, torch.Generator().manual_seed(0))
    tok = Tokenizer(task.spec, 32).fit_normalization(g)
    return MLPAutoencoder.from_tokenizer(tok, hidden=32, num_latents=2, latent_dim=4).eval()


def _cfg(latent_hp=None, direct_hp=None, **portfolio):
    return {
        "seed": 0,
        "eval_every": 0,
        "mode": "residual",
        "strategy": {"name": "cma_es", "popsize": 8, "hparams": latent_hp or {"sigma_init": 0.5}},
        "init": {"kind": "task", "top_k": 4},
        "portfolio": {
            "enabled": True,
            "probe": 2,
            "window": 10,
            "min_share": 0.1,
            "strategy": {"name": "openai_es", "popsize": 8,
                         "hparams": direct_hp or {"sigma_init": 0.02, "lr": 0.02}},
            **portfolio,
        },
    }  # fmt: skip


def _shares(run):
    return run.switcher.shares()


def _stepped(compressor, cfg, steps, task):
    run = LatentEvolution(task, compressor, None, cfg)
    for _ in range(steps):
        run.step()
    return run


def _resumed(task, compressor, cfg, tmp_path, split, total):
    """A run of `split` generations, saved, loaded into a fresh run and continued to `total`."""
    _stepped(compressor, cfg, split, task).save(tmp_path)
    resumed = LatentEvolution(task, compressor, None, cfg)
    resumed.load(tmp_path)
    for _ in range(total - split):
        resumed.step()
    return resumed


def test_probe_then_budget_goes_to_the_space_that_improves(task, compressor):
    # the latent arm is frozen: after probing, the direct arm gets all but the share floor
    run = LatentEvolution(task, compressor, None, _cfg(latent_hp={"sigma_init": 1e-9}))
    for _ in range(30):
        run.step()
    played = run.switcher.played
    assert played[:4] == ["latent", "direct", "latent", "direct"]  # probing, in turn
    assert _shares(run)["direct"] >= 0.75
    assert run.switcher.scores()["direct"] > run.switcher.scores()["latent"]
    # the share floor: the frozen arm is still measured every window
    assert 1 <= played[-10:].count("latent") <= 2
    assert {r["phase"] for r in run.history} == {"latent", "direct"}


def test_frozen_direct_arm_leaves_the_budget_to_latent(task, compressor):
    run = LatentEvolution(task, compressor, None, _cfg(direct_hp=FROZEN))
    for _ in range(30):
        run.step()
    assert _shares(run)["latent"] >= 0.75
    assert run.evaluations == 8 * 30 + 8  # + the initial population (P task inits)


def test_relay_moves_an_arm_to_the_runs_best(task, compressor):
    run = LatentEvolution(task, compressor, None, _cfg())
    pf, relayed = run.switcher, []
    relay = pf._relay

    def spy(name, genome, latent):  # after a relay the arm searches from the run's best
        relay(name, genome, latent)
        if name == "latent":
            relayed.append((name, torch.equal(run.space.base, genome)))
        else:
            mean = pf.spaces[name].from_genomes(genome[None])[0]
            relayed.append((name, torch.equal(pf.strategies[name].mean, mean)))

    pf._relay = spy
    for _ in range(12):
        run.step()
    assert {n for n, _ in relayed} == {"latent", "direct"}
    assert all(ok for _, ok in relayed)
    events = [e for e in run.events if e["event"] == "switch" and e["relayed"]]
    assert len(events) >= len(relayed) - 1  # a relay on a repeated arm raises no switch event


def test_two_direct_arms_and_output_layer_keeps_the_rest(task, compressor):
    cfg = _cfg(latent_hp={"sigma_init": 1e-9}, direct=[[], ["layers.1.*"]])
    run = LatentEvolution(task, compressor, None, cfg)
    for _ in range(12):
        run.step()
    assert set(run.switcher.played) == {"latent", "direct", "direct:layers.1.*"}
    assert run.best_fitness < run.history[0]["best_fitness"]


def test_portfolio_resume_is_bit_identical(task, compressor, tmp_path):
    cfg = _cfg(direct=[[], ["layers.1.*"]])
    full = _stepped(compressor, cfg, 14, task)
    resumed = _resumed(task, compressor, cfg, tmp_path, 9, 14)
    assert resumed.history == full.history and resumed.events == full.events
    assert resumed.switcher.played == full.switcher.played
    assert torch.equal(resumed.best_genome, full.best_genome)
    for name, strat in full.switcher.strategies.items():
        sa, sb = resumed.switcher.strategies[name].state_dict(), strat.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sb)


def test_evolve_spends_exactly_the_budget(task, compressor):
    res = evolve(task, compressor, evaluations=200, config=_cfg())
    assert res.evaluations >= 200 and res.evaluations < 200 + 8
    assert any(e["event"] == "switch" and e["reason"] == "portfolio" for e in res.events)


@pytest.mark.parametrize(
    "change, match",
    [
        ({"switch": {"enabled": True}}, "enable one of them"),
        ({"mode": "direct"}, "no latent arm"),
        ({"portfolio": {"enabled": True, "direct": []}}, "at least one direct arm"),
        ({"portfolio": {"enabled": True, "min_share": 1.5}}, "min_share"),
        ({"portfolio": {"enabled": True, "direct": [[], []]}}, "listed twice"),
        ({"portfolio": {"enabled": True, "direct": [["nope.*"]]}}, r"portfolio.direct\[0\]"),
    ],
)
def test_bad_portfolio_config_names_the_option(task, compressor, change, match):
    cfg = _cfg()
    cfg.update(change)
    with pytest.raises(ConfigError, match=match):
        LatentEvolution(task, compressor if cfg["mode"] != "direct" else None, None, cfg)


def test_fresh_compressor_learns_from_the_run_alone(task, tmp_path):
    """`compressor: fresh`: an untrained compressor, fine-tuned on the run's genomes (direct arm
    included), inside the portfolio; it resumes bit-identically like any run."""
    cfg = _cfg()
    cfg.update(
        compressor="fresh", finetune={"enabled": True, "every": 3, "steps": 5, "reencode_steps": 3}
    )
    full = _stepped(None, cfg, 8, task)
    tunes = [e for e in full.events if e["event"] == "finetune"]
    assert len(tunes) == 2 and all(e["loss_after"] < e["loss_before"] for e in tunes)
    assert full.archive.count > 0 and set(full.switcher.played) == {"latent", "direct"}
    resumed = _resumed(task, None, cfg, tmp_path, 4, 8)
    assert resumed.history == full.history
    assert torch.equal(resumed.best_genome, full.best_genome)


def test_fresh_compressor_without_finetuning_is_refused(task):
    cfg = _cfg()
    cfg["compressor"] = "fresh"
    with pytest.raises(ConfigError, match="fresh needs finetune.enabled"):
        LatentEvolution(task, None, None, cfg)


def test_prior_init_with_samples_starts_from_the_best_sample(task, compressor):
    """init.samples: N prior samples are decoded, evaluated (counted) and the ES starts at the
    best one; with 0 the start is the first draw, unevaluated (as before)."""
    from latent_evo.evolution.sources import prior_codes

    cfg = _cfg()
    cfg.update(mode="latent", init={"kind": "prior", "samples": 40})
    run = LatentEvolution(task, compressor, None, cfg)
    run.initialize()
    assert run.evaluations == 40
    codes, f, _ = prior_codes(compressor, 40, 0, run._evaluate_genomes)
    assert torch.equal(run.strategy.mean, codes[0]) and run.best_fitness == float(f[0])
    assert bool((f[1:] >= f[0]).all())
    cfg["init"] = {"kind": "prior"}
    plain = LatentEvolution(task, compressor, None, cfg)
    plain.initialize()
    assert plain.evaluations == 0
    assert torch.equal(plain.strategy.mean, prior_codes(compressor, 8, 0)[0][0])
    with pytest.raises(ConfigError, match="init.samples"):
        LatentEvolution(task, compressor, None, {**cfg, "init": {"kind": "prior", "samples": -1}})
