"""Population-based training over strategy hyper-parameters (`latent_evo.evolution.pbt`)."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from latent_evo.cli.evolve import main as evolve_main
from latent_evo.evolution import PBT, ConfigError, evolve

# OpenAI-ES in direct space with σ and learning rate 25x / 30x too large: a bad run
BAD = {
    "task": {"name": "mnist1d-mlp-tiny"},
    "mode": "direct",
    "strategy": {"name": "openai_es", "popsize": 16, "hparams": {"sigma_init": 0.5, "lr": 0.3}},
    "generations": None,
    "evaluations": 3200,
    "eval_every": 0,
    "seed": 0,
}


def test_pbt_recovers_from_badly_set_hyperparameters():
    single = evolve("mnist1d-mlp-tiny", config=BAD)
    res = PBT("mnist1d-mlp-tiny", config=BAD, members=4, every=5, spread=10.0).run()
    assert res.evaluations == single.evaluations == 3200  # the same total budget
    assert res.best.best_fitness < 0.6 * single.best_fitness
    assert res.events and all(e["member"] != e["copied"] for e in res.events)
    # the tuned values moved away from the bad ones, towards smaller steps
    tuned = res.hparams[res.best_index]
    assert tuned["sigma_init"] < 0.5 and tuned["lr"] != 0.3


def test_exploit_copies_state_and_explores_hyperparameters():
    pbt = PBT("mnist1d-mlp-tiny", config=BAD, members=4, every=3, fraction=0.25)
    start = [pbt.member_hparams(i) for i in range(4)]
    assert start[0] == {"sigma_init": 0.5, "lr": 0.3}  # member 0 as configured
    assert len({v["lr"] for v in start}) == 4  # the others drawn around it
    pbt.step()
    (event,) = pbt.events  # one of four members copies
    loser, winner = pbt.runs[event["member"]], pbt.runs[event["copied"]]
    assert loser.best_fitness == winner.best_fitness
    assert torch.equal(loser.strategy.mean, winner.strategy.mean)
    assert loser.evaluations == winner.evaluations == 3 * 16  # its own budget count
    ratio = loser.strategy.hp["lr"] / winner.strategy.hp["lr"]
    assert ratio == pytest.approx(0.5) or ratio == pytest.approx(2.0)
    # the live σ moved with sigma_init; fresh random streams: the next draws differ
    s_ratio = float(loser.strategy.sigma / winner.strategy.sigma)
    assert s_ratio == pytest.approx(
        loser.strategy.hp["sigma_init"] / winner.strategy.hp["sigma_init"]
    )
    assert not torch.equal(
        loser.strategy.generator.get_state(), winner.strategy.generator.get_state()
    )


def test_pbt_resumes_bit_identically(tmp_path):
    cfg = {**BAD, "evaluations": 1280}
    full = PBT("mnist1d-mlp-tiny", config=cfg, members=2, every=4).run()
    first = PBT("mnist1d-mlp-tiny", config=cfg, members=2, every=4)
    first.step()
    first.step()
    first.save(tmp_path)
    resumed = PBT("mnist1d-mlp-tiny", config=cfg, members=2, every=4)
    resumed.load(tmp_path)
    assert resumed.round == 2 and resumed.member_hparams(1) == first.member_hparams(1)
    res = resumed.run()
    assert torch.equal(res.best.best_genome, full.best.best_genome)
    assert res.hparams == full.hparams and res.events == full.events


def test_pbt_bad_options_name_the_option():
    with pytest.raises(ConfigError, match="'mutation_sigma' is not a positive numeric"):
        PBT("mnist1d-mlp-tiny", config=BAD, hparams=["mutation_sigma"])
    with pytest.raises(ConfigError, match="pbt.members"):
        PBT("mnist1d-mlp-tiny", config=BAD, members=1)
    with pytest.raises(ConfigError, match="fewer than one generation"):
        PBT("mnist1d-mlp-tiny", config={**BAD, "evaluations": 40}, members=4)
    with pytest.raises(ConfigError, match="give `evaluations`"):
        PBT("mnist1d-mlp-tiny", config={**BAD, "evaluations": None, "generations": 5})
    with pytest.raises(ConfigError, match="unknown option"):
        PBT("mnist1d-mlp-tiny", config=BAD, member=3)
    with pytest.raises(ConfigError, match="evolve\\(\\) runs one search"):
        evolve("mnist1d-mlp-tiny", config={**BAD, "pbt": {"enabled": True}})


def test_cli_pbt_flag(tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({**BAD, "evaluations": 640}))
    run = tmp_path / "run"
    rc = evolve_main(["--config", str(cfg), "--run-dir", str(run), "--no-progress", "--pbt", "2",
                      "--pbt.every", "3"])  # fmt: skip
    assert rc == 0
    for f in ("config.yaml", "best.safetensors", "plot.png", "summary.md", "pbt.json"):
        assert (run / f).exists(), f
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["pbt"]["enabled"] and saved["pbt"]["members"] == 2
    info = json.loads((run / "pbt.json").read_text())
    assert info["evaluations"] == 640 and len(info["hparams"]) == 2
    assert "tuned lr" in capsys.readouterr().out
    bad = evolve_main(["--config", str(cfg), "--run-dir", str(tmp_path / "r2"), "--no-progress",
                       "--pbt", "2", "--pbt.hparams", "[nope]"])  # fmt: skip
    assert bad == 2 and not (tmp_path / "r2").exists()
