"""EpisodicTask: the protocol, common random numbers, observation statistics, resume, bad input,
equality with a plain Gymnasium rollout, and CartPole solved by direct ES in seconds."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

import latent_evo
from latent_evo import LatentEvolution
from latent_evo.evolution.plots import plot_history
from latent_evo.models.policy import Policy, population_forward_fn
from latent_evo.tasks import get_task
from latent_evo.tasks.episodic import TEST_SEED_BASE, EpisodicTask, NonFiniteEnvError
from latent_evo.tasks.obsnorm import CLIP, RunningObsNorm
from latent_evo.tasks.protocol import CountingTask, MinibatchTask, StatefulTask, Task

torch.set_num_threads(1)


def _genomes(task: EpisodicTask, p: int, seed: int = 0) -> torch.Tensor:
    return task.init_genomes(p, torch.Generator().manual_seed(seed))  # (P, n)


# ------------------------------------------------------------------ small Gymnasium envs
class _Walk(gym.Env):
    """A 1-d walk: obs (position, step/10); action 1 moves right; reward = position. With
    `nan_at`, the observation of that step is NaN; with `dict_obs`, the space is a Dict."""

    def __init__(self, nan_at: int | None = None, dict_obs: bool = False):
        box = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.observation_space = gym.spaces.Dict({"x": box}) if dict_obs else box
        self.action_space = gym.spaces.Discrete(2)
        self.nan_at, self.t, self.x = nan_at, 0, 0.0

    def _obs(self):
        o = np.array([self.x, self.t / 10], np.float32)
        if self.nan_at is not None and self.t == self.nan_at:
            o[0] = np.nan
        return o

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.x = 0, float(self.np_random.uniform(-1, 1))
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        self.x += 1.0 if int(action) == 1 else -1.0
        return self._obs(), self.x, False, self.t >= 20, {}


def _walk_factory(**kw):
    def factory(num_envs: int):
        return gym.vector.SyncVectorEnv([lambda: _Walk(**kw) for _ in range(num_envs)])

    return factory


# ------------------------------------------------------------------ protocol, shapes, counters
def test_protocol_and_policy_shapes():
    task = EpisodicTask("gym:CartPole-v1", hidden=(8,), test_episodes=5)
    for proto in (Task, MinibatchTask, StatefulTask, CountingTask):
        assert isinstance(task, proto)
    assert task.spec.numel == 4 * 8 + 8 + 8 * 2 + 2
    pend = get_task("gym:Pendulum-v1", hidden=[16], episodes=2, test_episodes=3)
    assert isinstance(pend, EpisodicTask) and pend.model.hidden == (16,)
    params = pend.spec.unflatten(_genomes(pend, 3) * 50)  # large weights: saturated tanh
    x = torch.randn(3, 5, 3) * 10  # (P, E, obs_dim)
    out = pend._forward(params, x)
    assert out.shape == (3, 5, 1) and bool((out.abs() <= 2.0).all())  # Pendulum's torque bounds


@pytest.mark.parametrize("bounds", [None, ([-2.0, 0.0], [2.0, 1.0])])
def test_population_forward_equals_vmapped_functional_call(bounds):
    policy = Policy(3, 2, (16, 8), *(bounds or (None, None)))
    P, E = 7, 5
    params = {k: torch.randn(P, *v.shape) for k, v in policy.state_dict().items()}
    x = torch.randn(P, E, 3)  # (P, E, obs_dim)
    fast = population_forward_fn(policy)(params, x)
    reference = torch.func.vmap(lambda p, o: torch.func.functional_call(policy, p, (o,)))(params, x)
    torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-6)
    assert fast.shape == (P, E, 2)


def test_counters_and_evaluate():
    task = EpisodicTask("CartPole-v1", hidden=(4,), episodes=3, test_episodes=7)
    g = _genomes(task, 5)
    f = task.fitness_genomes(g, task.batch(0))
    returns, lengths = task.rollout(g, task.batch(0))
    assert torch.equal(f, -returns.mean(1).float())
    c = task.counters()
    assert c["episodes"] == 15 and c["env_steps"] == int(lengths.sum()) > 0
    m = task.evaluate(g[0])
    assert set(m) == {"test_return", "test_return_std", "test_episode_length"}
    assert m["test_return"] == m["test_episode_length"]  # CartPole: reward 1 per step
    c2 = task.counters()
    assert (c2["episodes"], c2["test_episodes"]) == (15, 7) and c2["test_env_steps"] > 0


# ------------------------------------------------------------------ common random numbers
@pytest.mark.parametrize("action", ["argmax", "sample"])
def test_identical_genomes_get_identical_fitness(action):
    task = EpisodicTask("gym:CartPole-v1", hidden=(8,), episodes=6, action=action)
    g = _genomes(task, 2)
    pop = torch.cat([g[:1].expand(5, -1), g[1:].expand(3, -1)])  # (8, n): two distinct members
    f = task.fitness_genomes(pop, task.batch(3))
    assert torch.equal(f[:5], f[:1].expand(5)) and torch.equal(f[5:], f[5:6].expand(3))
    # the same genome alone on the same seeds: the same episodes (statistics of generation 3)
    assert torch.equal(task.fitness_genomes(g[:1], task.batch(3)), f[:1])


def test_batch_seeds_pure_and_disjoint_from_test():
    a = EpisodicTask("CartPole-v1", episodes=5, seed=1)
    b = EpisodicTask("CartPole-v1", episodes=5, seed=1)
    assert torch.equal(a.batch(7), b.batch(7)) and not torch.equal(a.batch(7), a.batch(8))
    assert not torch.equal(a.batch(7), EpisodicTask("CartPole-v1", episodes=5, seed=2).batch(7))
    train = torch.cat([a.batch(s) for s in range(200)] + [a.fixed_seeds])
    assert int(train.max()) < TEST_SEED_BASE <= int(a.test_seeds.min())
    gen = torch.Generator().manual_seed(3)
    assert a.batch(gen).shape == (5,)


def test_member_params_run_their_own_variant():
    task = EpisodicTask("CartPole-v1", hidden=(8,), episodes=4)
    g = _genomes(task, 3, seed=1)
    lengths = torch.tensor([0.3, 0.5, 1.2])
    task.set_member_params({"length": lengths})
    f = task.fitness_genomes(g, task.batch(0))
    tests = [task.evaluate(g[p], member=p)["test_return"] for p in range(3)]
    base = task.evaluate(g[2])["test_return"]  # the default variant, member parameters or not
    task.set_member_params(None)
    assert task.evaluate(g[2])["test_return"] == base
    for p in range(3):
        one = EpisodicTask(
            "CartPole-v1", hidden=(8,), episodes=4, env_params={"length": float(lengths[p])}
        )
        assert torch.equal(one.fitness_genomes(g[p : p + 1], one.batch(0)), f[p : p + 1])
        assert one.evaluate(g[p])["test_return"] == tests[p]
    with pytest.raises(ValueError, match="3 members, this rollout has 2"):
        task.set_member_params({"length": lengths})
        task.fitness_genomes(g[:2], task.batch(0))
    with pytest.raises(ValueError, match="unknown parameter"):
        task.set_member_params({"pole": lengths})


def test_validation_seeds_held_out_and_gate_runs():
    task = EpisodicTask("CartPole-v1", hidden=(4,), episodes=3, test_episodes=12, max_steps=50)
    with pytest.raises(ValueError, match="no validation set"):
        task.validation_losses(_genomes(task, 2), 4)
    task.hold_out(0.25, seed=1)
    train = torch.cat([task.batch(s) for s in range(300)] + [task.fixed_seeds])
    assert int(train.max()) < task.train_limit <= int(task.val_seeds.min())
    assert int(task.val_seeds.max()) < TEST_SEED_BASE and len(task.val_seeds) == 12
    g = _genomes(task, 2)
    losses = task.validation_losses(torch.cat([g, g[:1]]), 4)  # (3, 4): four parts of 3 seeds
    assert losses.shape == (3, 4) and torch.equal(losses[0], losses[2])
    returns, _ = task.rollout(g[:1], task.val_seeds)
    assert torch.allclose(-losses[0], returns.reshape(4, 3).mean(1).float())
    assert task.counters()["validation_episodes"] == 3 * 12  # a bare rollout() is not counted
    cfg = {"mode": "direct", "strategy": {"name": "snes", "popsize": 6}, "generations": 3,
           "fitness_batch": "step", "eval_every": 0,
           "validation": {"enabled": True, "chunks": 4}}  # fmt: skip
    run = LatentEvolution(
        EpisodicTask("CartPole-v1", hidden=(4,), test_episodes=12, max_steps=50), config=cfg
    )
    run.run()
    assert run.task.val_seeds is not None and run.history[-1]["validation_episodes"] > 0


# ------------------------------------------------------------------ observation statistics
def test_running_stats_equal_float64_statistics_of_all_observations():
    norm = RunningObsNorm(3)
    torch.manual_seed(0)
    seen = []
    for chunk in range(4):  # four generations of different scale and offset
        obs = torch.randn(50, 3) * (chunk + 1) + 1000.0 * chunk
        alive = torch.rand(50) > 0.3
        for half in (slice(0, 25), slice(25, 50)):  # two rollouts of one generation
            sums = norm.new_sums()
            norm.accumulate(sums, obs[half], alive[half])
            norm.add_pending(sums)
        seen.append(obs[alive].double())
        norm.commit()
    x = torch.cat(seen)
    assert float(norm.count) == len(x)
    torch.testing.assert_close(norm.mean, x.mean(0), rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(norm.var, x.var(0, unbiased=False), rtol=1e-10, atol=1e-9)
    z = norm.apply(torch.full((1, 3), 1e9), norm.frozen())
    assert bool((z == CLIP).all())


def test_statistics_frozen_within_a_generation_and_round_trip():
    task = EpisodicTask("CartPole-v1", hidden=(8,), episodes=4)
    g = _genomes(task, 6)
    f0 = task.fitness_genomes(g, task.batch(0))  # identity statistics, then pending
    assert float(task.obs_norm.count) == 0 and float(task.obs_norm.pending_count) > 0
    again = task.fitness_genomes(g, task.batch(0))  # same generation: same statistics
    assert torch.equal(f0, again)
    b1 = task.batch(1)  # a new generation commits what generation 0 saw
    assert float(task.obs_norm.count) > 0
    state, counters = {k: v.clone() for k, v in task.state_dict().items()}, task.counters()
    f1 = task.fitness_genomes(g, b1)
    other = EpisodicTask("CartPole-v1", hidden=(8,), episodes=4)
    other.load_state_dict(state)
    assert other.counters() == counters and counters["episodes"] == 48
    assert torch.equal(other.fitness_genomes(g, other.batch(1)), f1)
    assert torch.equal(other.obs_norm.mean, task.obs_norm.mean)
    before = task.obs_norm.state_dict()
    task.evaluate(g[0])  # frozen: evaluate adds nothing
    assert all(torch.equal(v, task.obs_norm.state_dict()[k]) for k, v in before.items())


def test_resume_from_checkpoint_is_bit_identical(tmp_path):
    cfg = {
        "mode": "direct",
        "strategy": {"name": "snes", "popsize": 8, "hparams": {"sigma_init": 0.5}},
        "generations": 6,
        "fitness_batch": "step",
        "eval_every": 0,
    }

    def task():
        return EpisodicTask("CartPole-v1", hidden=(4,), episodes=2, max_steps=100, test_episodes=3)

    full = LatentEvolution(task(), config=cfg, seed=3)
    for _ in range(6):
        full.step()
    part = LatentEvolution(task(), config=cfg, seed=3)
    for _ in range(3):
        part.step()
    part.save(tmp_path)
    del part
    resumed = LatentEvolution(task(), config=cfg, seed=3)
    resumed.load(tmp_path)
    for _ in range(3):
        resumed.step()
    assert resumed.history == full.history
    assert torch.equal(resumed.best_genome, full.best_genome)
    assert resumed.task.counters() == full.task.counters()
    for k, v in full.task.state_dict().items():
        assert torch.equal(resumed.task.state_dict()[k], v), k
    assert "episodes" in full.history[-1] and "env_steps" in full.history[-1]
    png = plot_history(full.history, tmp_path / "plot.png")  # + return vs episodes / env steps
    assert png.stat().st_size > 10_000


# ------------------------------------------------------------------ equality with Gymnasium
def _reference_returns(
    task: EpisodicTask, genome: torch.Tensor, seeds: torch.Tensor
) -> list[float]:
    """One plain `gymnasium.make` environment per seed, the same policy and statistics."""
    policy = latent_evo.tasks.function.genome_to_module(task, genome)
    frozen = task.obs_norm.frozen()
    out = []
    for s in seeds.tolist():
        env = gym.make(task.env_id)
        obs, _ = env.reset(seed=s)
        total, done = 0.0, False
        while not done:
            x = RunningObsNorm.apply(torch.as_tensor(obs, dtype=torch.float32)[None], frozen)
            with torch.no_grad():
                y = policy(x)[0]
            a = int(y.argmax()) if task.discrete else y.numpy()
            obs, r, term, trunc, _ = env.step(a)
            total += float(r)
            done = term or trunc
        out.append(total)
    return out


@pytest.mark.parametrize(
    ("env", "kwargs"),
    [
        ("CartPole-v1", {"env_kwargs": {"dtype": torch.float64}}),  # our torch CartPole
        ("CartPole-v1", {"backend": "gymnasium"}),
        ("Pendulum-v1", {"backend": "gymnasium"}),
    ],
)
def test_rollout_equals_plain_gymnasium(env, kwargs):
    task = EpisodicTask(env, hidden=(8,), episodes=3, **kwargs)
    g = _genomes(task, 2, seed=5) * 3  # larger weights: episodes of varied length
    task.fitness_genomes(g, task.batch(0))
    seeds = task.batch(1)  # commits generation 0's statistics: normalisation is not identity
    assert float(task.obs_norm.count) > 0
    returns, _ = task.rollout(g, seeds)  # (P, E)
    for p in range(2):
        ref = _reference_returns(task, g[p], seeds)
        np.testing.assert_allclose(returns[p].numpy(), ref, rtol=1e-5)


# ------------------------------------------------------------------ bad input
def test_bad_input_names_env_and_culprit():
    with pytest.raises(ValueError, match="NoSuchEnv-v0"):
        EpisodicTask("gym:NoSuchEnv-v0")
    with pytest.raises(ValueError, match=r"'factory'.*no time limit.*max_steps=N"):
        EpisodicTask(_walk_factory())
    with pytest.raises(ValueError, match="Dict"):
        EpisodicTask(_walk_factory(dict_obs=True), max_steps=20)
    with pytest.raises(
        ValueError,
        match=r"CartPole-v1: .*\(2, 3, 3\) .*does not fit the action space Discrete\(2\)",
    ):
        EpisodicTask("CartPole-v1", policy=nn.Linear(4, 3))
    with pytest.raises(ValueError, match="fails on observations"):
        EpisodicTask("CartPole-v1", policy=nn.Linear(5, 2))
    with pytest.raises(ValueError, match="sample.*Discrete"):
        EpisodicTask("Pendulum-v1", action="sample")
    with pytest.raises(ValueError, match=r"unknown override\(s\) \['episods'\]"):
        get_task("gym:CartPole-v1", episods=3)
    task = EpisodicTask(_walk_factory(nan_at=3), hidden=(4,), max_steps=20, obs_norm=False)
    with pytest.raises(NonFiniteEnvError, match=r"'factory'.*observation at step 3 .*seed"):
        task.fitness_genomes(_genomes(task, 2), task.batch(0))
    at_reset = EpisodicTask(_walk_factory(nan_at=0), hidden=(4,), max_steps=20)
    with pytest.raises(NonFiniteEnvError, match="observation at reset"):
        at_reset.fitness_genomes(_genomes(at_reset, 2), at_reset.batch(0))
    assert task.counters()["episodes"] == at_reset.counters()["episodes"] == 0  # none scored
    assert float(at_reset.obs_norm.pending_count) == 0


def test_user_factory_and_policy():
    policy = Policy(2, 2, hidden=())  # linear policy
    task = EpisodicTask(_walk_factory(), policy=policy, max_steps=20, episodes=2, obs_norm=False)
    right = torch.tensor([0.0, 0.0, 0.0, 1.0, 0.0, 1.0])  # logits (0, 1): always move right
    f = task.fitness_genomes(right[None], torch.tensor([0, 1]))
    x0 = [np.random.default_rng(s).uniform(-1, 1) for s in (0, 1)]
    expect = -np.mean([sum(x + k for k in range(1, 21)) for x in x0])
    assert math.isclose(float(f[0]), expect, rel_tol=1e-6)


# ------------------------------------------------------------------ learning
def test_direct_es_solves_cartpole_in_seconds():
    overrides = {"hidden": [8], "episodes": 4, "test_episodes": 100}  # 58 weights
    res = latent_evo.evolve(
        task="gym:CartPole-v1", mode="direct", strategy="snes", generations=10, popsize=16,
        strategy_hparams={"sigma_init": 0.5}, fitness_batch="step", eval_every=0, seed=0,
        config={"task": {"overrides": overrides}},
    )  # fmt: skip
    assert res.best_genome.numel() == 58  # the overrides reached the task
    assert res.test_metrics["test_return"] >= 475  # mean over 100 held-out episodes
    assert res.history[-1]["episodes"] <= 10 * (16 + 3) * 4  # members + re-score + confirmation


def test_shipped_config_runs_through_the_cli_and_resumes(tmp_path):
    from latent_evo.cli.evolve import main

    config = Path(__file__).parents[1] / "configs" / "evolve" / "cartpole-direct.yaml"
    run = tmp_path / "run"
    small = ["--set", "generations=2", "--set", "task.overrides.max_steps=60", "--no-progress"]
    assert main(["--config", str(config), "--run-dir", str(run), *small]) == 0
    assert main(["--resume", str(run), "--set", "generations=3", "--no-progress"]) == 0
    with open(run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["generation"]) for r in rows] == [1, 2, 3]
    assert 0 < int(rows[0]["episodes"]) < int(rows[-1]["episodes"])  # counters survive the resume
    assert "| test_return |" in (run / "summary.md").read_text() and (run / "plot.png").exists()


def test_torchrun_two_ranks_equal_single_process(tmp_path):
    import os
    import socket
    import subprocess
    import sys

    import yaml

    from latent_evo.cli.evolve import main

    cfg = yaml.safe_load(
        (Path(__file__).parents[1] / "configs/evolve/cartpole-direct.yaml").read_text()
    )
    cfg.update(generations=3, eval_every=0, checkpoint_every=0)
    cfg["task"]["overrides"]["max_steps"] = 80
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert (
        main(["--config", str(path), "--run-dir", str(tmp_path / "single"), "--no-progress"]) == 0
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-port", str(port), "-m", "latent_evo.cli", "evolve", "--config", str(path),
           "--run-dir", str(tmp_path / "multi"), "--no-progress"]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).parents[1]))
    out = subprocess.run(cmd, env=env, capture_output=True, timeout=300)
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    single, multi = ((tmp_path / d / "history.csv").read_text() for d in ("single", "multi"))
    assert multi == single  # the same returns, and episodes counted once, not once per rank
