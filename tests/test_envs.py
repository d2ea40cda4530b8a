"""Environments (`latent_evo.envs`) against Gymnasium's reference, step by step.

Our batched torch CartPole / Pendulum / Acrobot and the Gymnasium adapter must reproduce
`gymnasium.make(id)` episode for episode on fixed seeds and fixed (seeded random) action
sequences: observations, rewards, terminated / truncated flags, with per-environment physical
parameters equal to the reference's attributes set the same way. Bad input gets clear errors.
"""

import subprocess
import sys

import numpy as np
import pytest
import torch

gym = pytest.importorskip("gymnasium")

from latent_evo.envs import EnvFamily, make_env, param_defaults  # noqa: E402

SEEDS = [0, 1, 7, 123]
# Derived attributes Gymnasium computes in CartPoleEnv.__init__ from the ones we set.
CARTPOLE_DERIVED = {
    "total_mass": lambda a: a.masspole + a.masscart,
    "polemass_length": lambda a: a.masspole * a.length,
}


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny batches: one thread is faster and leaves the other core to the rest of the suite."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _actions(env_id: str, steps: int, n: int, seed: int = 0) -> np.ndarray:
    """(steps, n) seeded random actions: indices for Discrete, torques in [-3, 3] for Pendulum
    (beyond the bounds, so clipping is exercised)."""
    rng = np.random.default_rng(seed)
    if env_id == "Pendulum-v1":
        return rng.uniform(-3.0, 3.0, size=(steps, n, 1)).astype(np.float32)
    return rng.integers(0, 2 if env_id == "CartPole-v1" else 3, size=(steps, n))


def _reference(env_id, seeds, actions, attrs=None, max_episode_steps=None):
    """Gymnasium's single env per seed, stepped until its episode ends: per env, lists of
    (obs, reward, terminated, truncated) and the reset observation."""
    out = []
    for i, seed in enumerate(seeds):
        ref = gym.make(env_id, max_episode_steps=max_episode_steps)
        for name, values in (attrs or {}).items():
            setattr(ref.unwrapped, name, float(values[i]))
        if attrs and env_id == "CartPole-v1":
            for name, fn in CARTPOLE_DERIVED.items():
                setattr(ref.unwrapped, name, fn(ref.unwrapped))
        obs0, _ = ref.reset(seed=seed)
        steps = []
        for t in range(actions.shape[0]):
            a = actions[t, i]
            obs, r, term, trunc, _ = ref.step(a if a.ndim else int(a))
            steps.append((obs, r, term, trunc))
            if term or trunc:
                break
        out.append((obs0, steps))
        ref.close()
    return out


def _compare(env, env_id, seeds, actions, atol, attrs=None, max_episode_steps=None):
    """Step `env` (B = len(seeds)) with `actions` and check every environment against its
    reference until that environment's episode ends. Returns the episode lengths."""
    ref = _reference(env_id, seeds, actions, attrs, max_episode_steps)
    obs = env.reset(torch.tensor(seeds))
    assert obs.dtype == torch.float32 and obs.shape == (len(seeds), env.observation_space.shape[0])
    for i, (obs0, _) in enumerate(ref):
        np.testing.assert_allclose(obs[i].numpy(), obs0, atol=1e-7, rtol=0)
    longest = max(len(steps) for _, steps in ref)
    for t in range(longest):
        obs, reward, term, trunc = env.step(torch.from_numpy(actions[t]))
        assert reward.dtype == torch.float32 and term.dtype == trunc.dtype == torch.bool
        for i, (_, steps) in enumerate(ref):
            if t >= len(steps):
                continue  # episode i is over: its outputs are masked by the rollout
            r_obs, r_rew, r_term, r_trunc = steps[t]
            where = f"{env_id} env {i} (seed {seeds[i]}) step {t}"
            np.testing.assert_allclose(obs[i].numpy(), r_obs, atol=atol, rtol=0, err_msg=where)
            reward_tol = max(1e-5, 10 * atol) * max(1.0, abs(r_rew))  # reward is float32
            assert abs(float(reward[i]) - r_rew) <= reward_tol, where
            assert (bool(term[i]), bool(trunc[i])) == (r_term, r_trunc), where
    return [len(steps) for _, steps in ref]


# Float64 state follows Gymnasium's float64 state to rounding (observations are float32 in both).
# Float32 state drifts from it like any float32 integration of chaotic dynamics, so it is held to
# a looser bound over the same whole episodes.
CASES = [
    ("CartPole-v1", torch.float64, 1e-6),
    ("CartPole-v1", torch.float32, 1e-5),
    ("Pendulum-v1", torch.float64, 1e-6),
    ("Pendulum-v1", torch.float32, 2e-3),
    ("Acrobot-v1", torch.float64, 1e-6),
    ("Acrobot-v1", torch.float32, 1e-2),
]


@pytest.mark.parametrize("env_id,dtype,atol", CASES)
def test_torch_env_equals_gymnasium_step_by_step(env_id, dtype, atol):
    env = make_env(env_id, len(SEEDS), dtype=dtype)
    assert type(env).__module__.startswith("latent_evo.envs.")  # ours, not the adapter
    actions = _actions(env_id, env.max_episode_steps, len(SEEDS))
    lengths = _compare(env, env_id, SEEDS, actions, atol)
    assert max(lengths) <= env.max_episode_steps
    reference = gym.make(env_id)
    assert env.observation_space == reference.observation_space
    assert env.action_space == reference.action_space


def test_cartpole_long_episodes_and_truncation_float64():
    # a balancing policy keeps the pole up, so the TimeLimit (set to 300 here) ends the episodes
    seeds, steps = SEEDS, 300
    env = make_env("gym:CartPole-v1", len(seeds), max_episode_steps=steps, dtype=torch.float64)
    ref = _reference_policy_cartpole(seeds, steps)
    obs = env.reset(torch.tensor(seeds))
    for t in range(steps):
        actions = ((obs[:, 2] + 0.5 * obs[:, 3]) > 0).long()  # (B,) push towards the fall
        obs, reward, term, trunc = env.step(actions)
        for i, r_steps in enumerate(ref):
            if t < len(r_steps):
                np.testing.assert_allclose(obs[i].numpy(), r_steps[t][0], atol=1e-6, rtol=0)
                assert (bool(term[i]), bool(trunc[i])) == r_steps[t][1:]
    assert trunc.all() and [len(r) for r in ref] == [steps] * len(seeds)


def _reference_policy_cartpole(seeds, steps):
    out = []
    for seed in seeds:
        ref = gym.make("CartPole-v1", max_episode_steps=steps)
        obs, _ = ref.reset(seed=seed)
        episode = []
        while True:
            obs, _, term, trunc, _ = ref.step(int((obs[2] + 0.5 * obs[3]) > 0))
            episode.append((obs, term, trunc))
            if term or trunc:
                break
        out.append(episode)
    return out


PARAMS = {
    "CartPole-v1": {"length": [0.5, 1.0, 0.25, 0.7], "masspole": [0.1, 0.3, 0.05, 0.2]},
    "Pendulum-v1": {
        "g": [10.0, 9.81, 3.7, 12.0],
        "l": [1.0, 0.5, 1.5, 0.8],
        "max_torque": [2.0] * 4,
    },
    "Acrobot-v1": {"LINK_LENGTH_1": [1.0, 1.3, 0.8, 1.1], "LINK_MASS_2": [1.0, 0.5, 2.0, 1.2]},
}


@pytest.mark.parametrize("env_id", sorted(PARAMS))
@pytest.mark.parametrize("backend", ["torch", "gymnasium"])
def test_per_env_params_equal_reference_attributes(env_id, backend):
    attrs = PARAMS[env_id]
    params = {k: torch.tensor(v, dtype=torch.float64) for k, v in attrs.items()}
    kw = {"dtype": torch.float64} if backend == "torch" else {}
    env = make_env(env_id, len(SEEDS), params=params, backend=backend, max_episode_steps=60, **kw)
    assert set(attrs) <= set(env.params) and env.params[next(iter(attrs))].shape == (len(SEEDS),)
    actions = _actions(env_id, 60, len(SEEDS), seed=3)
    _compare(env, env_id, SEEDS, actions, atol=1e-6, attrs=attrs, max_episode_steps=60)
    # and the parameters matter: default physics gives other observations
    plain = make_env(env_id, len(SEEDS), backend=backend, **kw)
    a = [e.reset(torch.tensor(SEEDS)) for e in (env, plain)]
    for t in range(5):
        a = [e.step(torch.from_numpy(actions[t]))[0] for e in (env, plain)]
    assert not torch.allclose(a[0][1:], a[1][1:])


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1", "Acrobot-v1"])
def test_adapter_equals_gymnasium(env_id):
    env = make_env(env_id, len(SEEDS), backend="gymnasium")
    assert type(env).__name__ == "GymnasiumEnv"
    actions = _actions(env_id, env.max_episode_steps, len(SEEDS), seed=5)
    _compare(env, env_id, SEEDS, actions, atol=0.0)
    # after auto-resets inside Gymnasium's vector env, reset(seeds) gives the same episodes again
    _compare(env, env_id, SEEDS, actions[:20], atol=0.0)
    env.close()


def test_adapter_async_equals_gymnasium():
    env = make_env("CartPole-v1", 2, backend="gymnasium", vectorization_mode="async",
                   params={"length": torch.tensor([0.5, 0.8], dtype=torch.float64)})  # fmt: skip
    assert type(env.vec_env).__name__ == "AsyncVectorEnv"
    actions = _actions("CartPole-v1", 100, 2, seed=2)
    _compare(env, "CartPole-v1", [3, 4], actions, 0.0, attrs={"length": [0.5, 0.8]})
    env.close()


def test_adapter_lunar_lander_if_box2d():
    pytest.importorskip("Box2D")
    seeds = [0, 1]
    env = make_env(
        "gym:LunarLander-v3",
        2,
        params={"gravity": torch.tensor([-10.0, -5.0])},
        max_episode_steps=40,
    )
    actions = _actions("Acrobot-v1", 40, 2, seed=1) + 1  # 1..3 of LunarLander's 0..3
    _compare(
        env,
        "LunarLander-v3",
        seeds,
        actions,
        0.0,
        attrs={"gravity": [-10.0, -5.0]},
        max_episode_steps=40,
    )
    env.close()


def test_factory_and_time_limit():
    env = make_env(lambda n: gym.make_vec("CartPole-v1", n, vectorization_mode="sync"), 3)
    assert env.num_envs == 3 and env.max_episode_steps == 500
    obs = env.reset(torch.tensor([4, 5, 6]))
    ours = make_env("CartPole-v1", 3, max_episode_steps=2)
    assert torch.equal(ours.reset(torch.tensor([4, 5, 6])), obs)
    flags = [ours.step(torch.zeros(3, dtype=torch.long))[3] for _ in range(2)]
    assert not flags[0].any() and flags[1].all()


def test_vectorised_seeding_equals_numpy():
    from latent_evo.envs.seeding import gymnasium_uniform_np

    rng = np.random.default_rng(0)
    edges = [0, 1, 2**31 - 1, 2**32 - 1, 2**32, 2**32 + 1, 2**62, 2**63 - 1]
    seeds = edges + list(range(2, 300)) + rng.integers(0, 2**63 - 1, 300).tolist()
    for low, high, size in [(-0.05, 0.05, 4), ([-np.pi, -1.0], [np.pi, 1.0], 2)]:
        want = np.stack([np.random.default_rng(s).uniform(low, high, size) for s in seeds])
        assert np.array_equal(gymnasium_uniform_np(seeds, low, high, size), want)


def test_reset_is_a_function_of_the_seed():
    env = make_env("Acrobot-v1", 3)
    a = env.reset(torch.tensor([9, 9, 10]))
    assert torch.equal(a[0], a[1]) and not torch.equal(a[0], a[2])
    assert torch.equal(env.reset(torch.tensor([9, 9, 10])), a)


class _DictObsEnv(gym.Env):
    observation_space = gym.spaces.Dict({"x": gym.spaces.Box(-1, 1, (2,))})
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


def test_bad_inputs_get_clear_errors():
    with pytest.raises(ValueError, match="unknown environment id 'NoSuchEnv-v0'"):
        make_env("gym:NoSuchEnv-v0", 2)
    with pytest.raises(ValueError, match=r"CartPole-v1: unknown environment parameter.*'lenght'"):
        make_env("CartPole-v1", 2, params={"lenght": 1.0})
    with pytest.raises(ValueError, match=r"CartPole-v1: unknown environment parameter 'lenght'"):
        make_env("CartPole-v1", 2, params={"lenght": 1.0}, backend="gymnasium")
    with pytest.raises(ValueError, match="has 3 values, expected 1 or num_envs=2"):
        make_env("Pendulum-v1", 2, params={"g": torch.ones(3)})
    with pytest.raises(ValueError, match="no torch implementation of 'MountainCar-v0'"):
        make_env("MountainCar-v0", 2, backend="torch")
    with pytest.raises(ValueError, match="backend must be one of"):
        make_env("CartPole-v1", 2, backend="jax")
    factory = lambda n: gym.vector.SyncVectorEnv([_DictObsEnv] * n)  # noqa: E731
    with pytest.raises(ValueError, match=r"unsupported observation space Dict"):
        make_env(factory, 2, max_episode_steps=10)
    with pytest.raises(ValueError, match="parameter 'length' has non-finite values"):
        make_env("CartPole-v1", 2, params={"length": torch.tensor([0.5, float("nan")])})
    env = make_env("CartPole-v1", 2)
    env.reset(torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"actions of shape \(3,\), expected \(2,\)"):
        env.step(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="got 3 seeds for 2 environments"):
        env.reset(torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="seeds must be >= 0"):
        env.reset(torch.tensor([1, -2]))
    with pytest.raises(RuntimeError, match="call reset"):
        make_env("CartPole-v1", 2).step(torch.zeros(2, dtype=torch.long))


def test_param_defaults_and_family():
    assert param_defaults("CartPole-v1")["length"] == 0.5
    assert param_defaults("gym:Pendulum-v1", backend="gymnasium")["g"] == 10.0
    family = EnvFamily("CartPole-v1", {"length": (0.25, 1.0), "masscart": (0.5, 2.0)})
    a = family.sample(64, torch.Generator().manual_seed(0))
    b = family.sample(64, torch.Generator().manual_seed(0))
    assert all(torch.equal(a[k], b[k]) for k in a) and a["length"].shape == (64,)
    assert 0.25 <= a["length"].min() and a["length"].max() <= 1.0
    env = make_env("CartPole-v1", 64, params=a)
    assert torch.equal(env.params["length"], a["length"])
    adapter = make_env("CartPole-v1", 2, backend="gymnasium", params={"length": 1.0})
    assert adapter.param_defaults()["length"] == 0.5  # the values before params were applied
    adapter.set_params({"length": torch.tensor([0.3, 0.4]), "masspole": 0.2})
    sub = [e.unwrapped for e in adapter.vec_env.envs]
    assert [e.length for e in sub] == pytest.approx([0.3, 0.4])
    assert [e.polemass_length for e in sub] == pytest.approx([0.06, 0.08])  # derived, recomputed
    assert [e.total_mass for e in sub] == pytest.approx([1.2, 1.2])
    ours = make_env("CartPole-v1", 2, params={"length": 1.0})
    ours.set_params({"gravity": torch.tensor([9.8, 1.6])})
    assert ours.params["length"].tolist() == [1.0, 1.0] and ours.params["gravity"][1] == 1.6
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['len'\]"):
        EnvFamily("CartPole-v1", {"len": (0.1, 1.0)})
    with pytest.raises(ValueError, match="low 2.0 > high 1.0"):
        EnvFamily("Acrobot-v1", {"LINK_MASS_1": (2.0, 1.0)})


def test_import_latent_evo_does_not_import_gymnasium():
    code = "import sys, latent_evo, latent_evo.envs; assert 'gymnasium' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
