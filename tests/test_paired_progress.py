"""On fresh minibatches (`fitness_batch: step`), the switch rule and the portfolio's credit
compare a generation's best member with the run's best re-scored on the *same* batch: best-so-far
values of different generations come from different batches, and comparing them rewards noise
(the winner's curse)."""

from __future__ import annotations

import torch

from latent_evo.evolution.config import PortfolioConfig, SwitchConfig
from latent_evo.evolution.factory import RunContext
from latent_evo.evolution.portfolio import Portfolio
from latent_evo.evolution.switch import Switcher
from latent_evo.tasks import get_task

SPEC = get_task("mnist1d-mlp-tiny").spec
CPU = torch.device("cpu")


def _switcher(paired: bool) -> Switcher:
    cfg = SwitchConfig(enabled=True, window=3, tol=0.01)
    return Switcher(cfg, "latent", None, RunContext(SPEC, CPU, 0, paired))


def test_paired_switch_rule_sees_a_stall_that_easier_batches_hide():
    # the best network re-scored on each batch: 2.0, 1.8, 1.6, 1.4 (easier and easier batches);
    # no member ever beats it on its own batch
    history, runs = [], {p: _switcher(p) for p in (False, True)}
    for gen, best_on_batch in enumerate([2.0, 1.8, 1.6, 1.4]):
        members = torch.full((8,), best_on_batch + 0.05)
        for sw in runs.values():
            sw.observe(best_on_batch, members, best_on_batch)
        history.append({"best_fitness": best_on_batch})
        stalled = {p: sw.stalled(gen + 1, history, best_on_batch) for p, sw in runs.items()}
    # unpaired, the falling values look like progress (0.4 in 3 generations); paired, none
    assert stalled == {False: False, True: True}


def test_paired_and_unpaired_rules_agree_on_a_fixed_batch():
    history, runs, best = [], {p: _switcher(p) for p in (False, True)}, 2.0
    for gen, new in enumerate([1.9, 1.895, 1.894, 1.8935, 1.7]):
        for sw in runs.values():
            sw.observe(best, torch.tensor([new, 3.0]), min(best, new))
        best = min(best, new)
        history.append({"best_fitness": best})
        a, b = (runs[p].stalled(gen + 1, history, best) for p in (False, True))
        assert a == b
    state, meta = runs[True].state_dict()
    again = _switcher(True)
    again.load_state_dict(state, meta)
    assert again.gains == runs[True].gains


def test_paired_portfolio_credit_is_measured_on_the_same_batch():
    paired = Portfolio(PortfolioConfig(enabled=True), RunContext(SPEC, CPU, 0, paired=True))
    plain = Portfolio(PortfolioConfig(enabled=True), RunContext(SPEC, CPU, 0))
    for pf in (paired, plain):
        pf.observe(2.0, torch.tensor([1.0, 3.0]), 1.0)  # an easy first batch: own best 1.0
        # a hard batch: the run's best scores 3.0 there, a member 2.5 -- real progress
        pf.observe(3.0, torch.tensor([2.5, 4.0]), 2.5)
    assert plain.gains[-1] == 0.0  # against its own best from the easy batch: nothing
    assert paired.gains[-1] == 0.25  # 0.5 gain over 2 evaluations
