"""GA operators obey their definitions; every operator combination runs inside the GA."""

from __future__ import annotations

import math

import pytest
import torch

from latent_evo.strategies import get_strategy
from latent_evo.strategies import operators as ops

torch.set_num_threads(2)

N, D = 64, 12


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def parents() -> tuple[torch.Tensor, torch.Tensor]:
    g = gen(42)
    return torch.randn(N, D, generator=g), torch.randn(N, D, generator=g) + 5.0


# --------------------------------------------------------------------------- selection
FIT = torch.tensor([5.0, 1.0, float("inf"), 3.0, 0.5, 9.0, 2.0, 7.0])


@pytest.mark.parametrize("name", list(ops.SELECTIONS))
def test_selection_valid_and_prefers_better(name):
    idx = ops.SELECTIONS[name](FIT, 4000, gen(1))
    assert idx.shape == (4000,) and idx.dtype == torch.int64
    assert int(idx.min()) >= 0 and int(idx.max()) < len(FIT)
    counts = torch.bincount(idx, minlength=len(FIT)).float()
    assert counts[4] > counts[5]  # the best is picked more often than a bad one
    if name != "tournament":  # a tournament of the inf one with itself can pick it
        assert counts[2] == 0 or name == "rank"  # non-finite = worst: never for proportional


def test_truncation_and_steady_state_take_only_the_top():
    idx = ops.truncation_selection(FIT, 1000, gen(0), frac=0.25)
    assert set(idx.tolist()) == {4, 1}
    ss = ops.steady_state_selection(FIT, 6, gen(0), k=3)
    assert ss.tolist() == [4, 1, 6, 4, 1, 6]


def test_tournament_size_one_is_uniform_and_large_is_greedy():
    big = ops.tournament_selection(FIT, 200, gen(0), size=64)
    assert (big == 4).float().mean() > 0.99
    one = ops.tournament_selection(FIT, 8000, gen(0), size=1)
    assert torch.bincount(one, minlength=8).min() > 800


def test_rank_selection_is_linear_in_rank():
    idx = ops.rank_selection(FIT, 80000, gen(0), pressure=2.0)
    counts = torch.bincount(idx, minlength=8).float() / 80000
    order = torch.argsort(FIT)
    expected = (2.0 - 2.0 * torch.arange(8) / 7) / 8  # worst gets probability 0
    assert torch.allclose(counts[order], expected, atol=0.01)


def test_roulette_proportional_and_sus_exact_counts():
    f = torch.tensor([0.0, 1.0, 2.0, 3.0])  # weights max-f (+ tiny floor) ~ 3, 2, 1, 0
    r = torch.bincount(ops.roulette_selection(f, 60000, gen(0)), minlength=4).float() / 60000
    assert torch.allclose(r, torch.tensor([0.5, 1 / 3, 1 / 6, 0.0]), atol=0.01)
    s = torch.bincount(ops.sus_selection(f, 60, gen(3)), minlength=4)
    w = 3.0 - f + 1e-3 * 3
    exp = 60 * w / w.sum()
    assert ((s.float() - exp).abs() <= 1).all()  # floor or ceil of the expectation


# --------------------------------------------------------------------------- crossover
def test_uniform_crossover_takes_each_gene_from_a_parent(parents):
    a, b = parents
    c = ops.uniform_crossover(a, b, gen(0))
    assert c.shape == a.shape
    from_a, from_b = c == a, c == b
    assert (from_a | from_b).all()
    assert 0.4 < from_a.float().mean() < 0.6


def test_one_point_is_prefix_suffix(parents):
    a, b = parents
    c = ops.one_point_crossover(a, b, gen(0))
    from_a = c == a
    assert ((c == a) | (c == b)).all()
    for row in from_a:  # True...True False...False, at least one of each
        k = int(row.sum())
        assert 1 <= k <= D - 1 and row[:k].all() and not row[k:].any()


def test_two_point_keeps_outer_from_a_inner_from_b(parents):
    a, b = parents
    c = ops.two_point_crossover(a, b, gen(1))
    assert ((c == a) | (c == b)).all()
    for row in c == b:
        pos = torch.nonzero(row).squeeze(1)
        if pos.numel():  # the genes from b form one contiguous block
            assert int(pos[-1] - pos[0]) + 1 == pos.numel()


def test_arithmetic_is_convex_combination_with_one_lambda(parents):
    a, b = parents
    c = ops.arithmetic_crossover(a, b, gen(0))
    lam = (c - b) / (a - b)
    assert torch.allclose(lam, lam[:, :1].expand_as(lam), atol=1e-4)
    assert (lam >= -1e-5).all() and (lam <= 1 + 1e-5).all()


@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_blend_stays_in_extended_box(parents, alpha):
    a, b = parents
    c = ops.blend_crossover(a, b, gen(0), alpha=alpha)
    lo, hi = torch.minimum(a, b), torch.maximum(a, b)
    span = hi - lo
    assert (c >= lo - alpha * span - 1e-5).all() and (c <= hi + alpha * span + 1e-5).all()
    if alpha > 0:  # BLX-0.5 does explore outside the parents' box
        assert ((c < lo) | (c > hi)).any()


def test_sbx_spread_and_bounds(parents):
    a, b = parents
    c = ops.sbx_crossover(a, b, gen(0), eta=2.0)
    lo, hi = torch.minimum(a, b), torch.maximum(a, b)
    inside = ((c >= lo - 1e-5) & (c <= hi + 1e-5)).float().mean()
    assert abs(float(inside) - 0.5) < 0.08  # P(β <= 1) = 1/2: contracting half the time
    # larger eta concentrates children near the parents
    far = lambda ch: torch.minimum((ch - a).abs(), (ch - b).abs()).mean()  # noqa: E731
    assert far(ops.sbx_crossover(a, b, gen(0), eta=50.0)) < far(c)
    cb = ops.sbx_crossover(a, b, gen(0), eta=0.5, bounds=(0.0, 3.0))
    assert (cb >= 0).all() and (cb <= 3).all()


def test_segment_crossover_swaps_whole_segments(parents):
    a, b = parents
    segs = [3, 5, 1, 3]
    c = ops.segment_crossover(a, b, gen(0), segs)
    from_a = c == a
    assert ((c == a) | (c == b)).all()
    for piece in from_a.split(segs, dim=1):
        assert (piece.all(1) | (~piece).all(1)).all()  # never sliced inside a segment
    with pytest.raises(ValueError, match="segments sum to 11"):
        ops.segment_crossover(a, b, gen(0), [3, 8])


# --------------------------------------------------------------------------- mutation
def test_gaussian_mutation_rate_and_sigma():
    x = torch.zeros(2000, 50)
    assert torch.equal(ops.gaussian_mutation(x, 1.0, 0.0, gen(0)), x)
    m = ops.gaussian_mutation(x, 0.5, 0.2, gen(0))
    assert m.shape == x.shape
    assert abs(float((m != 0).float().mean()) - 0.2) < 0.01
    assert abs(float(m[m != 0].std()) - 0.5) < 0.02
    sig = torch.tensor([[0.1], [10.0]]).repeat_interleave(1000, 0)
    m = ops.gaussian_mutation(x, sig, 1.0, gen(0))
    assert float(m[:1000].std()) < 0.2 < 5.0 < float(m[1000:].std())


def test_reset_mutation_draws_fresh_values_in_bounds():
    x = torch.full((1000, 20), 100.0)
    m = ops.reset_mutation(x, 0.3, gen(0), bounds=(-1.0, 1.0))
    changed = m != 100.0
    assert abs(float(changed.float().mean()) - 0.3) < 0.02
    assert (m[changed] >= -1).all() and (m[changed] <= 1).all()
    m = ops.reset_mutation(x, 1.0, gen(0), scale=2.0)
    assert abs(float(m.std()) - 2.0) < 0.05


# --------------------------------------------------------------------------- inside the GA
def sphere(x):
    return ((x - 1.0) ** 2).sum(1)


COMBOS = [
    {"selection": s, "crossover": c, "mutation": m}
    for s, c, m in [
        ("tournament", "uniform", "gaussian"),
        ("truncation", "one_point", "self_adaptive"),
        ("rank", "two_point", "one_fifth"),
        ("roulette", "arithmetic", "adaptive"),
        ("sus", "blend", "gaussian"),
        ("steady_state", "sbx", "gaussian"),
        ("tournament", "segment", "adaptive"),
    ]
] + [
    {"mutation": "reset", "mutation_rate": 0.1, "replacement": "plus"},
    {"bounds": (-2.0, 2.0), "crossover": "sbx", "elitism": 3},
]


@pytest.mark.parametrize("hp", COMBOS, ids=lambda h: "-".join(str(v) for v in h.values()))
def test_ga_operator_combinations_improve(hp):
    extra = {"segments": [4, 4, 2]} if hp.get("crossover") == "segment" else {}
    s = get_strategy("ga", dim=10, popsize=24, seed=0, **hp, **extra)
    x = s.ask()
    s.tell(sphere(x))
    start = float(s.best_fitness)
    for _ in range(40):
        x = s.ask()
        assert x.shape == (24, 10)
        if "bounds" in hp:
            assert (x >= -2).all() and (x <= 2).all()
        s.tell(sphere(x))
    assert float(s.best_fitness) < 0.5 * start
    # elitism: the population's best never gets worse in generational mode
    assert float(s.fitness.min()) == pytest.approx(float(s.best_fitness))


def test_elites_are_copied_unchanged():
    s = get_strategy("ga", dim=5, popsize=10, seed=0, elitism=3)
    x = s.ask()
    f = sphere(x)
    s.tell(f)
    assert torch.equal(s.ask()[:3], x[torch.argsort(f)[:3]])


def test_one_fifth_rule_shrinks_sigma_when_success_is_rare():
    s = get_strategy("ga", dim=10, popsize=20, seed=0, mutation="one_fifth", mutation_sigma=1.0)
    for _ in range(60):
        s.tell(sphere(s.ask()))
    assert float(s.sigma) < 0.6  # near the optimum big steps fail, so σ shrinks
    # tiny steps on a slope succeed about half the time, so σ grows
    s = get_strategy(
        "ga",
        dim=10,
        popsize=20,
        seed=0,
        mutation="one_fifth",
        mutation_sigma=1e-3,
        crossover_rate=0,
    )
    s.init(mean=torch.full((10,), 50.0))
    for _ in range(20):
        s.tell(sphere(s.ask()))
    assert float(s.sigma) > 2e-3


def test_self_adaptive_sigmas_are_per_individual_and_evolve():
    s = get_strategy("ga", dim=10, popsize=20, seed=0, mutation="self_adaptive")
    for _ in range(30):
        s.tell(sphere(s.ask()))
    assert s.sigmas.shape == (20,) and s.sigmas.unique().numel() > 1


def test_adaptive_mutation_rates_depend_on_parent_quality():
    s = get_strategy(
        "ga", dim=400, popsize=40, seed=0, mutation="adaptive", crossover_rate=0.0, elitism=0,
        mutation_rate_good=0.05, mutation_rate_bad=0.6, selection="roulette",
    )  # fmt: skip
    x = s.ask()
    s.tell(sphere(x))
    g = torch.Generator().manual_seed(5)
    s.generator = g
    children = s.ask()
    # crossover is off, so each child differs from exactly one parent in the mutated genes
    frac = ((children[:, None, :] != x[None]).float().mean(2)).min(1).values
    assert float(frac.min()) < 0.15 and float(frac.max()) > 0.45
    assert math.isclose(float(frac.mean()), 0.3, abs_tol=0.25)


def test_ga_option_errors():
    with pytest.raises(ValueError, match="needs segments"):
        get_strategy("ga", dim=4, popsize=8, crossover="segment")
    with pytest.raises(ValueError, match="unknown mutation 'x'; valid ones are: gaussian"):
        get_strategy("ga", dim=4, popsize=8, mutation="x")
    with pytest.raises(ValueError, match="elitism"):
        get_strategy("ga", dim=4, popsize=8, elitism=8)
