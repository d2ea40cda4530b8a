"""The peer libraries of the RL benchmark (`benchmarks/rl.py`): EvoTorch's `VecGymNE` with its
PGPE / SNES, and PPO from Stable-Baselines3. Imported only by the benchmark (the `bench`
extra: `pip install -e .[bench]`); the library never imports evotorch or SB3.

Every peer runs in this process with one torch thread and no ray actor (`num_actors=None`).
Peer policies are scored on the same held-out episodes as ours: Gymnasium's reference
environments reset with the test seeds `TEST_SEED_BASE + i` (our torch environments follow
Gymnasium's seeding, so both libraries meet the same initial states).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from latent_evo.tasks.episodic import TEST_SEED_BASE

# EvoTorch's own recommendation for CartPole-v1 (docs, Functional_API/problem.ipynb: PGPE with
# ClipUp, max_speed 0.15, centre step 0.75 x max_speed, radius 15 x max_speed, stdev step 0.1,
# stdev change capped at 20 %, centred ranks, symmetric sampling, centre initialised at 0).
# Its SNES has no RL example: its defaults (NES ranks, paper learning rates) with the same
# initial radius.
EVOTORCH_MAX_SPEED = 0.15
EVOTORCH_PGPE = {
    "center_learning_rate": 0.75 * EVOTORCH_MAX_SPEED,
    "stdev_learning_rate": 0.1,
    "stdev_max_change": 0.2,
    "radius_init": 15 * EVOTORCH_MAX_SPEED,
    "optimizer": "clipup",
    "optimizer_config": {"max_speed": EVOTORCH_MAX_SPEED},
    "ranking_method": "centered",
    "symmetric": True,
}
EVOTORCH_SNES = {"radius_init": 15 * EVOTORCH_MAX_SPEED}

# rl-zoo's tuned PPO for the classic-control tasks (rl-baselines3-zoo hyperparams/ppo.yml)
PPO_ZOO: dict[str, dict[str, Any]] = {
    "CartPole-v1": {
        "n_envs": 8, "n_steps": 32, "batch_size": 256, "gae_lambda": 0.8, "gamma": 0.98,
        "n_epochs": 20, "ent_coef": 0.0, "learning_rate": ("lin", 0.001), "clip_range": ("lin", 0.2),
    },
    "Pendulum-v1": {
        "n_envs": 4, "n_steps": 1024, "gae_lambda": 0.95, "gamma": 0.9, "n_epochs": 10,
        "ent_coef": 0.0, "learning_rate": 1e-3, "clip_range": 0.2, "use_sde": True,
        "sde_sample_freq": 4,
    },
}  # fmt: skip


def evotorch_net(hidden: tuple[int, ...]) -> str:
    """EvoTorch's network string for our default policy: obs -> h tanh -> ... -> act."""
    sizes = ["obs_length", *map(str, hidden), "act_length"]
    layers = [f"Linear({a}, {b})" for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    return " >> Tanh() >> ".join(layers)


def gym_numpy_vector_env(env_id: str) -> Callable[..., Any] | None:
    """A factory of Gymnasium's own numpy-vectorised environment (`CartPoleVectorEnv`: one
    array op per step for all environments), for VecGymNE's callable `env`; None where
    Gymnasium has none (Pendulum, Acrobot)."""
    import gymnasium as gym

    if gym.spec(env_id).vector_entry_point is None:
        return None

    def make(num_envs: int, **_: Any) -> Any:
        return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point")

    make.__name__ = f"{env_id} (Gymnasium numpy vector env)"
    return make


def vecgymne(
    env_id: str, hidden: tuple[int, ...], episodes: int, obs_norm: bool, numpy_vec: bool = False
) -> Any:
    """EvoTorch's VecGymNE of our policy; `numpy_vec`: on Gymnasium's numpy-vectorised env
    instead of EvoTorch's default (its SyncVectorEnv over single Gymnasium envs)."""
    from evotorch.neuroevolution import VecGymNE

    env = gym_numpy_vector_env(env_id) if numpy_vec else env_id
    return VecGymNE(
        env, evotorch_net(hidden), num_episodes=episodes,
        observation_normalization=obs_norm, num_actors=None,
    )  # fmt: skip


def evotorch_rollout(problem: Any, genomes: torch.Tensor) -> tuple[float, int, float]:
    """Evaluate `(P, n)` genomes once: (seconds, alive env steps, mean return)."""
    batch = problem.generate_batch(genomes.shape[0])
    batch.set_values(genomes.to(torch.float32).clone())
    s0, e0 = problem.interaction_count, problem.episode_count
    t = time.perf_counter()
    problem.evaluate(batch)
    dt = time.perf_counter() - t
    assert problem.episode_count - e0 == batch.values.shape[0] * problem._num_episodes
    return dt, problem.interaction_count - s0, float(batch.evals.mean())


# ------------------------------------------------------------------ held-out test episodes
def gym_test_return(
    env_id: str, act: Callable[[torch.Tensor], np.ndarray], episodes: int = 100
) -> dict[str, float]:
    """Mean return of `act` (float32 observations `(N, obs)` -> actions `(N, ...)`) over the
    held-out seeds `TEST_SEED_BASE + i`, in Gymnasium's reference environments."""
    import gymnasium as gym

    env = gym.make_vec(env_id, num_envs=episodes, vectorization_mode="sync")
    try:
        obs, _ = env.reset(seed=[TEST_SEED_BASE + i for i in range(episodes)])
        alive = np.ones(episodes, dtype=bool)
        returns = np.zeros(episodes)
        lengths = np.zeros(episodes, dtype=np.int64)
        while alive.any():
            with torch.no_grad():
                a = act(torch.as_tensor(obs, dtype=torch.float32))
            obs, r, term, trunc, _ = env.step(a)
            returns += np.where(alive, r, 0.0)
            lengths += alive
            alive &= ~(term | trunc)
    finally:
        env.close()
    return {"test_return": float(returns.mean()), "test_episode_length": float(lengths.mean())}


def evotorch_actor(problem: Any, solution: torch.Tensor, discrete: bool) -> Callable:
    """EvoTorch's own policy of a solution (with its observation normaliser and action
    clipping, `to_policy`) as a batched actor; argmax for Discrete, as VecGymNE does."""
    policy = problem.to_policy(solution)

    def act(obs: torch.Tensor) -> np.ndarray:
        out = policy(obs)
        return (out.argmax(-1) if discrete else out).cpu().numpy()

    return act


# ------------------------------------------------------------------ EvoTorch searches
def run_evotorch(
    algo: str, env_id: str, hidden: tuple[int, ...], popsize: int, episodes: int, seed: int,
    threshold: float, max_generations: int, time_cap: float, discrete: bool,
    test_episodes: int = 100, progress: Callable[[dict], None] | None = None,
    check_every: int = 1,
) -> dict[str, Any]:  # fmt: skip
    """EvoTorch `algo` ("pgpe" / "snes") through VecGymNE until the centre of its search
    distribution scores `threshold` on the held-out episodes (checked every generation, with
    the best solution seen)."""
    from evotorch.algorithms import PGPE, SNES

    torch.manual_seed(seed)
    np.random.seed(seed)
    problem = vecgymne(env_id, hidden, episodes, obs_norm=True)
    problem.manual_seed(seed)
    if algo == "pgpe":
        searcher = PGPE(problem, popsize=popsize, **EVOTORCH_PGPE)
    elif algo == "snes":
        searcher = SNES(problem, popsize=popsize, **EVOTORCH_SNES)
    else:
        raise ValueError(f"unknown EvoTorch algorithm {algo!r}")
    curve = []
    t0 = time.perf_counter()
    for gen in range(1, max_generations + 1):
        searcher.step()
        if gen % check_every:
            if time.perf_counter() - t0 > time_cap:
                break
            continue
        rec = {
            "generation": gen,
            "episodes": int(problem.episode_count),
            "env_steps": int(problem.interaction_count),
            "seconds": time.perf_counter() - t0,
        }
        for name, key in (("centre", "center"), ("best", "best")):
            sol = searcher.status[key]
            values = torch.as_tensor(sol.values if hasattr(sol, "evals") else sol).clone()
            act = evotorch_actor(problem, values, discrete)
            rec[f"test_{name}"] = gym_test_return(env_id, act, test_episodes)["test_return"]
        curve.append(rec)
        if progress is not None:
            progress(rec)
        if rec["test_centre"] >= threshold or rec["seconds"] > time_cap:
            break
    return {"curve": curve, "seconds": time.perf_counter() - t0}


# ------------------------------------------------------------------ PPO (Stable-Baselines3)
def _schedule(v: Any) -> Any:
    if isinstance(v, tuple) and v[0] == "lin":
        start = float(v[1])
        return lambda progress_remaining: progress_remaining * start
    return v


def run_ppo(env_id: str, total_steps: int, seed: int, test_episodes: int = 100) -> dict[str, Any]:
    """SB3 PPO (MlpPolicy, rl-zoo hyper-parameters) for `total_steps` environment steps, then
    its deterministic policy on the held-out episodes."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    hp = dict(PPO_ZOO[env_id])
    n_envs = hp.pop("n_envs")
    hp = {k: _schedule(v) for k, v in hp.items()}
    env = make_vec_env(env_id, n_envs=n_envs, seed=seed)
    model = PPO("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **hp)
    t0 = time.perf_counter()
    model.learn(total_timesteps=int(total_steps))
    seconds = time.perf_counter() - t0

    def act(obs: torch.Tensor) -> np.ndarray:
        return model.predict(obs.numpy(), deterministic=True)[0]

    out = gym_test_return(env_id, act, test_episodes)
    env.close()
    return {**out, "env_steps": int(model.num_timesteps), "seconds": seconds,
            "hparams": {k: str(v) for k, v in PPO_ZOO[env_id].items()}}  # fmt: skip
