"""`GymnasiumEnv`: any Gymnasium `VectorEnv` behind the `BatchedEnv` protocol.

This is how a user's own environment (or any registered id without a torch implementation here,
e.g. LunarLander-v3) reaches an episodic task: numpy <-> torch at the boundary, per-environment
seeds at reset so `reset(seeds)` reproduces `gymnasium.make(id).reset(seed=s)` episode for
episode, and per-environment physical parameters set as attributes of each sub-environment.

Semantics kept from the protocol:
  * No auto-reset as the caller sees it. Gymnasium 1.x vector envs auto-reset on the step after an
    episode ends ("next-step" mode); those outputs belong to an episode the rollout has already
    masked, and `reset(seeds)` re-seeds every sub-environment, so they never leak into a result.
  * `truncated` also fires at the adapter's own `max_episode_steps` (Gymnasium's TimeLimit inside
    the sub-environments is set to the same value by `make_gymnasium_env`).
  * Parameters are attributes of each unwrapped sub-environment (`param_defaults()` lists the
    numeric ones), set through `VectorEnv.set_attr`, so they work for sync and async vector envs.
    Some take effect at the next `reset(seeds)` (Box2D worlds are rebuilt there), e.g.
    LunarLander-v3: `params={"gravity": (B,), "enable_wind": 1.0, "wind_power": (B,)}` equals
    `gymnasium.make("LunarLander-v3", gravity=..., enable_wind=True, wind_power=...)`.
  * Observations must be a flat Box, actions a Discrete or a flat Box; anything else (Dict, Tuple,
    images, MultiDiscrete, ...) is a `ValueError` naming the environment and the space.
  * Discrete actions are indices 0..n-1 (a space's `start` is added here); Box actions go to
    the environment as given (Gymnasium's continuous-control envs clip them
    themselves); NaN observations or rewards are the episodic task's to check, not ours.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from latent_evo.envs.base import check_seeds

# Attributes Gymnasium computes from others in __init__: after setting the inputs we recompute
# them, else a changed pole length would leave CartPole's `polemass_length` at its old value.
# {derived attribute: (its inputs, how Gymnasium computes it)}.
_DERIVED = {
    "total_mass": (("masspole", "masscart"), lambda masspole, masscart: masspole + masscart),
    "polemass_length": (("masspole", "length"), lambda masspole, length: masspole * length),
}
# Numeric attributes that are not physics (rendering, bookkeeping).
_NOT_PARAMS = {
    "screen_width",
    "screen_height",
    "screen_dim",
    "SCREEN_DIM",
    "actions_num",
    "np_random_seed",
    "render_fps",
}


def _import_gymnasium():
    try:
        import gymnasium
    except ImportError as e:  # pragma: no cover - gymnasium is a core dependency
        raise ImportError("Gymnasium environments need `pip install gymnasium`") from e
    return gymnasium


def _check_id(env_id: str):
    """The `EnvSpec` of `env_id`, or a ValueError naming it (Gymnasium's own error says why)."""
    gym = _import_gymnasium()
    try:
        return gym.spec(env_id)
    except gym.error.Error as e:
        raise ValueError(f"unknown environment id {env_id!r}: {e}") from None


def _numeric_attrs(env: Any) -> dict[str, float]:
    out = {}
    for name in dir(env):
        if name.startswith("_") or name in _NOT_PARAMS:
            continue
        try:
            value = getattr(env, name)
        except Exception:  # properties that need a reset first
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
            continue
        out[name] = float(value)
    for derived, (inputs, _) in _DERIVED.items():
        if all(n in out for n in inputs):
            out.pop(derived, None)
    return out


def gymnasium_param_defaults(env_id: str) -> dict[str, float]:
    """Numeric attributes of `gymnasium.make(env_id).unwrapped`: what the adapter can set."""
    gym = _import_gymnasium()
    _check_id(env_id)
    env = gym.make(env_id)
    try:
        return _numeric_attrs(env.unwrapped)
    finally:
        env.close()


def make_gymnasium_env(
    env_id: str,
    num_envs: int,
    device: torch.device | str | None = None,
    params: dict[str, float | Tensor] | None = None,
    max_episode_steps: int | None = None,
    vectorization_mode: str = "sync",
) -> GymnasiumEnv:
    """`gymnasium.make_vec(env_id, num_envs, vectorization_mode)` wrapped as a `GymnasiumEnv`."""
    gym = _import_gymnasium()
    spec = _check_id(env_id)
    if vectorization_mode not in ("sync", "async"):
        raise ValueError(
            f"{env_id}: vectorization_mode must be 'sync' or 'async' (per-environment seeds and "
            f"parameters need separate sub-environments), got {vectorization_mode!r}"
        )
    steps = max_episode_steps or spec.max_episode_steps
    if steps is None:
        raise ValueError(f"{env_id} has no time limit in its spec: pass max_episode_steps")
    vec = gym.make_vec(
        env_id, num_envs, vectorization_mode=vectorization_mode, max_episode_steps=steps
    )
    return GymnasiumEnv(vec, env_id=env_id, device=device, params=params, max_episode_steps=steps)


def _space_error(env_id: str, what: str, space: Any, allowed: str) -> ValueError:
    return ValueError(
        f"{env_id}: unsupported {what} space {space} (supported: {allowed}); wrap the environment "
        "(e.g. gymnasium.wrappers.FlattenObservation) or use a policy that takes it"
    )


class GymnasiumEnv:
    """B sub-environments of a Gymnasium `VectorEnv` (sync or async) as a `BatchedEnv`."""

    def __init__(
        self,
        vec_env: Any,
        env_id: str | None = None,
        device: torch.device | str | None = None,
        params: dict[str, float | Tensor] | None = None,
        max_episode_steps: int | None = None,
    ):
        gym = _import_gymnasium()
        spaces = gym.spaces
        if not isinstance(vec_env, gym.vector.VectorEnv):
            raise TypeError(
                f"expected a gymnasium.vector.VectorEnv, got {type(vec_env).__name__} "
                "(a factory must return gymnasium.make_vec(...) or a VectorEnv)"
            )
        spec = getattr(vec_env, "spec", None)
        self.env_id = env_id or (spec.id if spec is not None else type(vec_env).__name__)
        self.vec_env = vec_env
        self.num_envs = int(vec_env.num_envs)
        self.device = torch.device(device if device is not None else "cpu")
        obs_space = vec_env.single_observation_space
        act_space = vec_env.single_action_space
        if not (isinstance(obs_space, spaces.Box) and len(obs_space.shape) == 1):
            raise _space_error(self.env_id, "observation", obs_space, "a 1-d Box")
        if isinstance(act_space, spaces.Discrete):
            self._discrete = True
            self._act_start = int(act_space.start)
        elif isinstance(act_space, spaces.Box) and len(act_space.shape) == 1:
            self._discrete = False
        else:
            raise _space_error(self.env_id, "action", act_space, "Discrete or a 1-d Box")
        self.observation_space = obs_space
        self.action_space = act_space
        steps = max_episode_steps or (spec.max_episode_steps if spec is not None else None)
        if steps is None:
            raise ValueError(
                f"{self.env_id}: the vector env has no time limit: pass max_episode_steps"
            )
        self.max_episode_steps = int(steps)
        self.elapsed_steps = 0
        self.params: dict[str, Tensor] = {}
        self._defaults: dict[str, float] | None = None
        if hasattr(vec_env, "envs"):  # SyncVectorEnv: the values before any parameter is set
            self._defaults = _numeric_attrs(vec_env.envs[0].unwrapped)
        if params:
            self.set_params(params)

    # -- parameters ------------------------------------------------------------------------------

    def _get_attr(self, name: str) -> list[Any] | None:
        try:
            return list(self.vec_env.get_attr(name))
        except (AttributeError, NotImplementedError):
            return None
        except Exception as e:  # AsyncVectorEnv re-raises the worker's error as-is or wrapped
            if "AttributeError" in type(e).__name__ or "has no attribute" in str(e):
                return None
            raise

    def set_params(self, params: dict[str, float | Tensor]) -> None:
        """Set attributes of each sub-environment: a float for all, a `(B,)` tensor one each."""
        values: dict[str, list[float]] = {}
        for name, value in params.items():
            if self._get_attr(name) is None:
                raise ValueError(
                    f"{self.env_id}: unknown environment parameter {name!r} (the sub-environments "
                    "have no such attribute); settable numeric attributes: "
                    f"{sorted(self._settable())}"
                )
            value = torch.as_tensor(value, dtype=torch.float64).reshape(-1)
            if value.numel() == 1:
                value = value.expand(self.num_envs)
            if value.numel() != self.num_envs:
                raise ValueError(
                    f"{self.env_id}: parameter {name!r} has {value.numel()} values, "
                    f"expected 1 or num_envs={self.num_envs}"
                )
            values[name] = value.tolist()
        for name, vals in values.items():
            self.vec_env.set_attr(name, vals)
            self.params[name] = torch.tensor(vals, dtype=torch.float32, device=self.device)
        for derived, (inputs, fn) in _DERIVED.items():
            if not set(inputs) & set(values):
                continue
            columns = [self._get_attr(n) for n in (derived, *inputs)]
            if any(c is None for c in columns):
                continue
            rows = zip(*columns[1:], strict=True)  # per sub-environment: the inputs' values
            self.vec_env.set_attr(derived, [fn(*row) for row in rows])

    def param_defaults(self) -> dict[str, float]:
        """The settable numeric attributes with their values before `params` were applied (for
        an AsyncVectorEnv: those of the registered id's reference environment, if any)."""
        if self._defaults is None:
            try:
                self._defaults = gymnasium_param_defaults(self.env_id)
            except ValueError:
                self._defaults = {}
        return dict(self._defaults)

    def _settable(self) -> dict[str, float]:
        return self.param_defaults()

    # -- stepping --------------------------------------------------------------------------------

    def reset(self, seeds: Tensor) -> Tensor:
        obs, _ = self.vec_env.reset(seed=check_seeds(self.env_id, seeds, self.num_envs))
        self.elapsed_steps = 0
        return torch.from_numpy(np.asarray(obs, dtype=np.float32)).to(self.device)

    def step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        actions = actions.detach().cpu()
        if self._discrete:  # indices 0..n-1 -> the space's values start..start+n-1
            act = actions.reshape(self.num_envs).to(torch.int64).numpy() + self._act_start
        else:
            act = actions.reshape(self.num_envs, -1).to(torch.float32).numpy()
        obs, reward, terminated, truncated, _ = self.vec_env.step(act)
        self.elapsed_steps += 1
        d = self.device
        obs = torch.from_numpy(np.asarray(obs, dtype=np.float32)).to(d)
        reward = torch.from_numpy(np.asarray(reward, dtype=np.float32)).to(d)
        terminated = torch.from_numpy(np.asarray(terminated, dtype=bool)).to(d)
        truncated = torch.from_numpy(np.asarray(truncated, dtype=bool)).to(d)
        if self.elapsed_steps >= self.max_episode_steps:
            truncated = torch.ones_like(truncated)
        return obs, reward, terminated, truncated

    def close(self) -> None:
        self.vec_env.close()

    def __repr__(self) -> str:
        return (
            f"GymnasiumEnv({self.env_id}, num_envs={self.num_envs}, {type(self.vec_env).__name__})"
        )
