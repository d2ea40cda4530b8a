"""Registry-wide tests of the ask/tell strategies: optimisation progress, CMA-ES on Rosenbrock,
bit-identical checkpoint/resume, NaN handling, errors, re-centring, CUDA."""

from __future__ import annotations

import math
import re
import sys

import pytest
import torch

from latent_evo.strategies import STRATEGIES, Strategy, get_strategy, list_strategies
from latent_evo.strategies.deep_ga import seed_noise

torch.set_num_threads(2)

ALL = list_strategies()
EXPECTED = {
    "ga", "openai_es", "cma_es", "snes", "pgpe", "ns_es", "nsr_es", "nsra_es", "map_elites",
    "deep_ga", "eggroll",
}  # fmt: skip


# --------------------------------------------------------------------------- benchmarks
def _rotation(d: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1234)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return q.float()


def make_sphere(d: int):
    c = torch.full((d,), 1.0)
    return lambda x: ((x - c) ** 2).sum(1)


def make_rotated_ellipsoid(d: int, cond: float = 1e3):
    c = torch.full((d,), 1.0)
    r = _rotation(d)
    scale = cond ** (torch.arange(d, dtype=torch.float32) / max(d - 1, 1))
    return lambda x: (scale * ((x - c) @ r.T) ** 2).sum(1)


def rosenbrock(x: torch.Tensor) -> torch.Tensor:
    x = x.double()
    return (100 * (x[:, 1:] - x[:, :-1] ** 2) ** 2 + (1 - x[:, :-1]) ** 2).sum(1).float()


def run(strat: Strategy, f, gens: int) -> tuple[float, float]:
    """Returns (best fitness after the first generation, best after ``gens``)."""
    x = strat.ask()
    strat.tell(f(x))
    start = float(strat.best_fitness)
    for _ in range(gens - 1):
        x = strat.ask()
        strat.tell(f(x))
    return start, float(strat.best_fitness)


# per-strategy hyper-parameters for the budgeted benchmark runs (defaults otherwise)
BUDGET_HP = {"map_elites": {"iso_sigma": 0.2}}
# the fraction of the starting fitness the best must get below
RATIO = {"map_elites": 0.8}


def test_registry_has_every_key():
    assert set(ALL) == EXPECTED
    assert set(STRATEGIES) == EXPECTED
    for name, cls in STRATEGIES.items():
        assert cls.name == name
        assert cls.__module__.split(".")[-1] in {name, "novelty_es"}
        # every strategy file opens with a docstring naming its paper (authors and year)
        doc = sys.modules[cls.__module__].__doc__ or ""
        assert re.search(r"\b(19|20)\d\d\b", doc.split("\n\n")[0]), cls.__module__


def test_unknown_name_and_hparam_raise():
    with pytest.raises(ValueError, match="valid ones are: ga, openai_es"):
        get_strategy("nope", dim=3, popsize=4)
    with pytest.raises(ValueError, match=r"unknown hyper-parameter.*'lrr'.*valid ones are: .*lr"):
        get_strategy("openai_es", dim=3, popsize=4, lrr=0.1)
    with pytest.raises(ValueError, match="unknown crossover 'nope'"):
        get_strategy("ga", dim=3, popsize=4, crossover="nope")


@pytest.mark.parametrize("name", ALL)
def test_defaults_usable_without_init(name):
    s = get_strategy(name, dim=7, popsize=12)
    x = s.ask()
    assert x.shape == (s.popsize, 7) and x.dtype == torch.float32 and torch.isfinite(x).all()
    assert s.generation == 0 and s.best_x is None and math.isinf(float(s.best_fitness))
    f = (x**2).sum(1)
    s.tell(f)
    assert s.generation == 1
    assert float(s.best_fitness) == pytest.approx(float(f.min()))
    assert torch.equal(s.best_x, x[f.argmin()])
    assert s.mean.shape == (7,)


@pytest.mark.parametrize("name", ALL)
def test_tell_shape_errors(name):
    s = get_strategy(name, dim=5, popsize=8)
    with pytest.raises(RuntimeError, match="without a pending ask"):
        s.tell(torch.zeros(8))
    x = s.ask()
    with pytest.raises(
        ValueError, match=rf"expected fitness of shape \({x.shape[0]},\).*got \(3,\)"
    ):
        s.tell(torch.zeros(3))
    with pytest.raises(ValueError, match="expected descriptors"):
        s.tell(torch.zeros(x.shape[0]), descriptors=torch.zeros(x.shape[0] + 1, 2))
    s.tell(torch.zeros(x.shape[0]))  # the pending population survives a rejected tell


@pytest.mark.parametrize("d", [10, 100])
@pytest.mark.parametrize("problem", ["sphere", "rotated_ellipsoid"])
@pytest.mark.parametrize("name", ALL)
def test_improves(name, problem, d):
    f = make_sphere(d) if problem == "sphere" else make_rotated_ellipsoid(d)
    s = get_strategy(name, dim=d, popsize=16 if d == 10 else 32, seed=3, **BUDGET_HP.get(name, {}))
    start, best = run(s, f, gens=80)
    if name == "ns_es":
        # pure novelty search ignores fitness; it must explore: the centres leave the start
        # by far more than the per-generation noise scale and the archive fills up
        assert s.archive.shape[0] == 80
        assert float(s.centres.norm(dim=1).max()) > 5 * 0.1
        assert best <= start
    else:
        assert best < RATIO.get(name, 0.5) * start, (start, best)


def test_cma_es_solves_rosenbrock():
    s = get_strategy("cma_es", dim=10, popsize=10, seed=0, sigma_init=0.5)
    for _ in range(1200):
        s.tell(rosenbrock(s.ask()))
        if float(s.best_fitness) < 1e-7:
            break
    assert float(s.best_fitness) < 1e-6
    assert torch.allclose(s.best_x, torch.ones(10), atol=1e-2)


def test_ipop_cma_es_restarts_grow_population():
    s = get_strategy("cma_es", dim=4, popsize=6, seed=0, restarts=2, tolfun=1e-3)
    sphere = make_sphere(4)
    sizes = set()
    for _ in range(300):
        x = s.ask()
        sizes.add(x.shape[0])
        s.tell(sphere(x))
    assert sizes == {6, 12, 24} and int(s.restarts_done) == 2
    assert float(s.best_fitness) < 1e-3


RESUME_CASES = [(n, {}) for n in ALL] + [
    ("cma_es", {"restarts": 3, "tolfun": 1e-2}),
    ("ga", {"mutation": "self_adaptive", "replacement": "plus", "selection": "sus"}),
    ("ga", {"mutation": "one_fifth", "crossover": "sbx", "selection": "rank"}),
    ("ga", {"mutation": "adaptive", "crossover": "segment", "segments": [2, 3, 1]}),
    ("eggroll", {"shapes": [(2, 2), (2,)], "rank": 2}),
    ("nsra_es", {"patience": 2}),
]


@pytest.mark.parametrize(
    ("name", "hp"), RESUME_CASES, ids=[f"{n}-{len(h)}" for n, h in RESUME_CASES]
)
def test_state_dict_resume_bit_identical(name, hp):
    f = make_sphere(6)

    def step(s: Strategy) -> torch.Tensor:
        x = s.ask()
        s.tell(f(x), descriptors=x[:, :2] if name.startswith("ns") else None)
        return x

    a = get_strategy(name, dim=6, popsize=10, seed=7, **hp)
    for _ in range(12):
        step(a)
    sd = a.state_dict()
    assert all(isinstance(v, torch.Tensor) for v in sd.values())  # safetensors-compatible
    xs_a = [step(a) for _ in range(15)]
    b = get_strategy(name, dim=6, popsize=10, seed=999, **hp)  # different seed on purpose
    b.load_state_dict(sd)
    xs_b = [step(b) for _ in range(15)]
    for xa, xb in zip(xs_a, xs_b, strict=True):
        assert torch.equal(xa, xb)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("name", ["openai_es", "ga", "deep_ga"])
def test_state_dict_between_ask_and_tell(name):
    f = make_sphere(5)
    a = get_strategy(name, dim=5, popsize=8, seed=1)
    for _ in range(3):
        a.tell(f(a.ask()))
    x = a.ask()
    b = get_strategy(name, dim=5, popsize=8)
    b.load_state_dict(a.state_dict())
    a.tell(f(x))
    b.tell(f(x))
    assert torch.equal(a.ask(), b.ask())


def test_load_state_dict_rejects_foreign_state():
    a = get_strategy("cma_es", dim=3, popsize=6)
    a.tell(torch.zeros(6) + a.ask().sum(1))
    with pytest.raises(ValueError, match="unexpected state"):
        get_strategy("snes", dim=3, popsize=6).load_state_dict(a.state_dict())


@pytest.mark.parametrize("name", ALL)
def test_nan_fitness_is_worst(name):
    d = 6
    f = make_sphere(d)
    s = get_strategy(name, dim=d, popsize=12, seed=0)
    x = s.ask()
    fx = f(x)
    fx[::2] = float("nan")
    fx[1] = float("inf")
    fx[3] = -float("inf")
    s.tell(fx)
    finite = torch.isfinite(fx)
    assert float(s.best_fitness) == pytest.approx(float(fx[finite].min()))
    for _ in range(20):  # all-NaN generations must not crash or become "best"
        x = s.ask()
        s.tell(torch.full((x.shape[0],), float("nan")))
    assert math.isfinite(float(s.best_fitness))
    for _ in range(5):
        x = s.ask()
        assert torch.isfinite(x).all()
        s.tell(f(x))


def test_ga_nan_individual_never_selected_as_elite():
    s = get_strategy("ga", dim=4, popsize=10, seed=0, elitism=2)
    x = s.ask()
    fx = (x**2).sum(1)
    fx[0] = float("nan")
    s.tell(fx)
    assert not torch.isinf(s.fitness[s.fitness.argsort()[:2]]).any()
    x2 = s.ask()
    order = fx.nan_to_num(float("inf")).argsort()
    assert torch.equal(x2[:2], x[order[:2]])  # elites are the two best, the NaN one is not


@pytest.mark.parametrize("name", ALL)
def test_set_mean_recentres_keeping_state(name):
    f = make_sphere(5)
    s = get_strategy(name, dim=5, popsize=10, seed=0)
    for _ in range(5):
        s.tell(f(s.ask()))
    target = torch.full((5,), 3.0)
    s.set_mean(target)
    assert torch.allclose(s.mean, target, atol=1e-5)
    assert s.generation == 5 and math.isfinite(float(s.best_fitness))
    x = s.ask()
    assert x.shape[0] == s.popsize
    # candidates are now drawn around the new centre
    assert float((x.mean(0) - target).abs().max()) < 1.5
    s.tell(f(x))


def test_init_mid_run_keeps_optimizer_state():
    s = get_strategy("openai_es", dim=4, popsize=8)
    for _ in range(3):
        s.tell(make_sphere(4)(s.ask()))
    m = s.adam_m.clone()
    s.init(mean=torch.zeros(4))
    assert torch.equal(s.adam_m, m) and int(s.adam_t) == 3 and torch.equal(s.mean, torch.zeros(4))


def test_init_population_and_generator():
    pop = torch.randn(8, 3)
    ga = get_strategy("ga", dim=3, popsize=8).init(population=pop)
    assert torch.equal(ga.ask(), pop)  # the given population is evaluated first
    es = get_strategy("snes", dim=3, popsize=8).init(population=pop)
    assert torch.allclose(es.mean, pop.mean(0))
    a = get_strategy("snes", dim=3, popsize=8).init(generator=5).ask()
    b = (
        get_strategy("snes", dim=3, popsize=8)
        .init(generator=torch.Generator().manual_seed(5))
        .ask()
    )
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match=r"mean must have shape \(3,\)"):
        get_strategy("snes", dim=3, popsize=8).init(mean=torch.zeros(4))


def test_seeding_is_deterministic():
    for name in ALL:
        a = get_strategy(name, dim=4, popsize=8, seed=11)
        b = get_strategy(name, dim=4, popsize=8, seed=11)
        for _ in range(3):
            xa, xb = a.ask(), b.ask()
            assert torch.equal(xa, xb), name
            a.tell((xa**2).sum(1))
            b.tell((xb**2).sum(1))


def test_deep_ga_decode_reproduces_population():
    s = get_strategy("deep_ga", dim=50, popsize=8, seed=0, elitism=2)
    f = make_sphere(50)
    for _ in range(6):
        x = s.ask()
        s.tell(f(x))
    assert s.seeds.dtype == torch.int64 and s.seeds.shape == (8, 6)
    assert torch.equal(s.decode(s.seeds), x)
    assert torch.equal(s.decode(s.seeds[3]), x[3])
    # noise is a pure function of the seed, standard normal in distribution
    n = seed_noise(torch.tensor([1, 2, 1]), 20000)
    assert torch.equal(n[0], n[2]) and not torch.equal(n[0], n[1])
    assert abs(float(n.mean())) < 0.03 and abs(float(n.std()) - 1) < 0.03


def test_eggroll_low_rank_matrix_perturbations():
    shapes = [(6, 5), (5,), (3, 4)]
    s = get_strategy("eggroll", dim=30 + 5 + 12, popsize=10, shapes=shapes, rank=1)
    x = s.ask()
    eps = x - s.mean
    m1 = eps[:, :30].reshape(10, 6, 5)
    m2 = eps[:, 35:].reshape(10, 3, 4)
    assert (torch.linalg.matrix_rank(m1) == 1).all() and (torch.linalg.matrix_rank(m2) == 1).all()
    assert torch.allclose(eps[:5], -eps[5:])  # antithetic pairs
    with pytest.raises(ValueError, match="shapes cover 47 values but dim is 46"):
        get_strategy("eggroll", dim=46, popsize=4, shapes=shapes)


def test_map_elites_grid_keeps_best_per_cell():
    s = get_strategy("map_elites", dim=3, popsize=6, grid_shape=(4, 4), descriptor_bounds=(0, 1))
    s.ask()
    x = torch.tensor(
        [[0.1, 0.1, 5.0], [0.1, 0.1, 1.0], [0.9, 0.9, 0.0], [0.1, 0.1, 2.0], [5.0, -5.0, 0.0],
         [0.6, 0.1, 0.0]]
    )  # fmt: skip
    s._pending = x
    s.tell(x[:, 2])
    assert int(s.filled.sum()) == 4
    cell = int(s.cell_index(x[:1, :2]))
    assert float(s.elite_fitness[cell]) == 1.0 and torch.equal(s.elites[cell], x[1])
    corner = int(s.cell_index(torch.tensor([[1.0, 0.0]])))  # out of bounds -> edge cell
    assert bool(s.filled[corner])
    desc = torch.tensor([[0.9, 0.1]] * 6)
    s.ask()
    s._pending = x
    s.tell(x[:, 2] - 10, descriptors=desc)
    assert float(s.elite_fitness[int(s.cell_index(desc[:1]))]) == -10.0
    s.ask()
    with pytest.raises(ValueError, match="descriptors must have 2 columns"):
        s.tell(torch.zeros(6), descriptors=torch.zeros(6, 3))
    assert float(s.best_fitness) == -10.0


def test_novelty_uses_caller_descriptors():
    s = get_strategy("nsr_es", dim=8, popsize=9, seed=0)
    for _ in range(5):
        x = s.ask()
        s.tell((x**2).sum(1), descriptors=x[:, :2])
    assert s.archive.shape == (5, 2)
    x = s.ask()
    with pytest.raises(ValueError, match="descriptors have 3 dims, the archive holds 2"):
        s.tell((x**2).sum(1), descriptors=x[:, :3])
    assert s.generation == 5  # the rejected tell changed nothing; a correct one still works
    s.tell((x**2).sum(1), descriptors=x[:, :2])
    nov = s.novelty(torch.tensor([[100.0, 100.0], [0.0, 0.0]]))
    assert nov[0] > nov[1] >= 0


@pytest.mark.gpu
@pytest.mark.parametrize("name", ALL)
def test_runs_on_cuda(name):
    d = 64
    c = torch.ones(d, device="cuda")
    s = get_strategy(name, dim=d, popsize=16, device="cuda", seed=0)
    for _ in range(30):
        x = s.ask()
        assert x.device.type == "cuda" and x.dtype == torch.float32
        s.tell(((x - c) ** 2).sum(1))
    assert s.best_x.device.type == "cuda" and float(s.best_fitness) < d
    sd = s.state_dict()
    t = get_strategy(name, dim=d, popsize=16, device="cuda", seed=1)
    t.load_state_dict(sd)
    assert torch.equal(s.ask(), t.ask())
