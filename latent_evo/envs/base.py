"""`BatchedEnv`: B environments stepped as one batch, torch tensors in and out.

An episodic task rolls out P policies x E episodes as one batch of B = P * E environments. Every
environment source meets it through this protocol: our torch implementations of Gymnasium's
classic-control dynamics (one tensor op per step, per-environment physical parameters) and the
adapter around any Gymnasium `VectorEnv` (numpy <-> torch at the boundary).

Semantics, the same for every implementation:
  * `reset(seeds)` starts one episode per environment; environment i's start state is a pure
    function of `seeds[i]` (common random numbers: equal seeds, equal episodes).
  * `step(actions)` returns `(obs, reward, terminated, truncated)`, each `(B, ...)`; there is no
    auto-reset. After an environment's episode ends its later outputs are meaningless; the
    rollout masks them. `truncated` is set at `max_episode_steps` (Gymnasium's TimeLimit).
  * Observations are float32 `(B, obs_dim)`; actions are int64 `(B,)` for a `Discrete` space and
    float32 `(B, act_dim)` for a `Box` space (clipped to its bounds by the environment).
  * `observation_space` / `action_space` are the spaces of ONE environment (Gymnasium objects).
  * `params` holds the physical parameters, `{name: (B,)}`: each environment may run its own
    variant (pole length, masses, gravity, ...). `param_defaults()` names them with their
    reference values.

Beyond the protocol, both our torch environments and the Gymnasium adapter offer
`set_params({name: float | (B,)})` (change some parameters between rollouts),
`param_defaults()` (names and reference values) and `close()`.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class BatchedEnv(Protocol):
    env_id: str
    num_envs: int
    device: torch.device
    max_episode_steps: int
    observation_space: Any  # gymnasium.spaces.Box of one environment
    action_space: Any  # gymnasium.spaces.Discrete or Box of one environment
    params: dict[str, Tensor]  # {name: (B,)} physical parameters per environment

    def reset(self, seeds: Tensor) -> Tensor:
        """`seeds (B,)` int64 -> observations `(B, obs_dim)` float32."""
        ...

    def step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """`actions (B,)` or `(B, act_dim)` -> obs `(B, obs_dim)`, reward `(B,)` float32,
        terminated `(B,)` bool, truncated `(B,)` bool."""
        ...


# ---------------------------------------------------------------------------------------------
# Shared machinery of our torch implementations (not part of the protocol).


def resolve_params(
    env_id: str,
    defaults: dict[str, float],
    params: dict[str, float | Tensor] | None,
    num_envs: int,
    device: torch.device,
    dtype: torch.dtype,
) -> dict[str, Tensor]:
    """Every parameter of `defaults` as a `(num_envs,)` tensor: a float applies to all
    environments, a tensor of `num_envs` values gives each its own. Unknown names and wrong shapes
    raise a `ValueError` naming the environment and the parameter."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ValueError(
            f"{env_id}: unknown environment parameter(s) {unknown}; valid names: {sorted(defaults)}"
        )
    out: dict[str, Tensor] = {}
    for name, default in defaults.items():
        value = params.get(name, default)
        if isinstance(value, Tensor):
            value = value.detach().to(device=device, dtype=dtype).reshape(-1)
            if value.numel() == 1:
                value = value.expand(num_envs).clone()
            elif value.numel() != num_envs:
                raise ValueError(
                    f"{env_id}: parameter {name!r} has {value.numel()} values, "
                    f"expected 1 or num_envs={num_envs}"
                )
        else:
            value = torch.full((num_envs,), float(value), device=device, dtype=dtype)
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"{env_id}: parameter {name!r} has non-finite values")
        out[name] = value
    return out


def check_seeds(env_id: str, seeds: Tensor | list[int], num_envs: int) -> list[int]:
    """Seeds as Python ints (Gymnasium's seeding takes non-negative ints), one per environment."""
    seeds = torch.as_tensor(seeds).reshape(-1)
    if seeds.numel() != num_envs:
        raise ValueError(f"{env_id}: reset got {seeds.numel()} seeds for {num_envs} environments")
    if seeds.dtype.is_floating_point or seeds.dtype == torch.bool:
        raise ValueError(f"{env_id}: seeds must be integers, got {seeds.dtype}")
    values = seeds.tolist()
    if min(values) < 0:
        raise ValueError(f"{env_id}: seeds must be >= 0 (Gymnasium's rule), got {min(values)}")
    return values


def gymnasium_uniform(seeds: list[int], low, high, size: int) -> Tensor:
    """Start states exactly as Gymnasium's classic-control `reset(seed=s)` draws them:
    `np_random(s).uniform(low, high, size)` per environment -> `(B, size)` float64.

    `gymnasium.utils.seeding.np_random(s)` is `Generator(PCG64(SeedSequence(s)))`; `seeding.py`
    computes those draws for all B seeds at once, bit for bit (about 0.5 ms for B = 1,024, where
    a Python loop building B generators takes 15-40 ms). Everything after reset is torch."""
    from latent_evo.envs.seeding import gymnasium_uniform_np

    return torch.from_numpy(gymnasium_uniform_np(seeds, low, high, size))  # (B, size) float64


class TorchEnv:
    """Base of our batched torch environments: parameter handling, step counter, time limit.

    Subclasses set `env_id`, `PARAM_DEFAULTS`, `DEFAULT_MAX_STEPS` and implement `_reset_state`
    (seeds -> state), `_observe` (state -> obs float32) and `_step_state` (actions -> reward,
    terminated), plus `_spaces()` returning the Gymnasium spaces of one environment."""

    env_id: str = ""
    PARAM_DEFAULTS: dict[str, float] = {}
    DEFAULT_MAX_STEPS: int = 0

    def __init__(
        self,
        num_envs: int,
        device: torch.device | str | None = None,
        params: dict[str, float | Tensor] | None = None,
        max_episode_steps: int | None = None,
        dtype: torch.dtype = torch.float32,
        env_id: str | None = None,
    ):
        if env_id is not None:  # a registered alias (CartPole-v0: the same physics, 200 steps)
            self.env_id = env_id
        if num_envs < 1:
            raise ValueError(f"{self.env_id}: num_envs must be >= 1, got {num_envs}")
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"{self.env_id}: dtype must be float32 or float64, got {dtype}")
        self.num_envs = int(num_envs)
        self.device = torch.device(device if device is not None else "cpu")
        self.dtype = dtype
        self.max_episode_steps = int(max_episode_steps or self.DEFAULT_MAX_STEPS)
        self.params = resolve_params(
            self.env_id, self.PARAM_DEFAULTS, params, self.num_envs, self.device, dtype
        )
        self.state: Tensor | None = None
        self.elapsed_steps = 0
        self._spaces_cache: tuple[Any, Any] | None = None
        self._scalar_cache: dict[tuple, tuple[Tensor, ...]] = {}

    def scalars(self, *values: float, dtype: torch.dtype | None = None) -> tuple[Tensor, ...]:
        """Python constants as 0-d tensors (state dtype unless `dtype`) on the device, cached.
        On a CPU a tensor-tensor op skips the Python-scalar wrapping, about half the cost of a
        small op, and computes the same values (torch evaluates a Python scalar in the tensor's
        dtype too), so the step functions use these instead of literals."""
        key = (values, dtype or self.dtype, self.device)
        cached = self._scalar_cache.get(key)
        if cached is None:
            cached = tuple(torch.tensor(v, dtype=key[1], device=self.device) for v in values)
            self._scalar_cache[key] = cached
        return cached

    @classmethod
    def param_defaults(cls) -> dict[str, float]:
        return dict(cls.PARAM_DEFAULTS)

    def set_params(self, params: dict[str, float | Tensor]) -> None:
        """Replace some parameters (others keep their values); same rules as the constructor."""
        self._spaces_cache = None  # bounds may depend on the parameters (Pendulum's max_torque)
        current = {k: v for k, v in self.params.items() if k not in params}
        self.params = resolve_params(
            self.env_id, self.PARAM_DEFAULTS, {**current, **params},
            self.num_envs, self.device, self.dtype,
        )  # fmt: skip

    @property
    def observation_space(self) -> Any:
        if self._spaces_cache is None:
            self._spaces_cache = self._spaces()
        return self._spaces_cache[0]

    @property
    def action_space(self) -> Any:
        if self._spaces_cache is None:
            self._spaces_cache = self._spaces()
        return self._spaces_cache[1]

    def reset(self, seeds: Tensor) -> Tensor:
        self.state = self._reset_state(check_seeds(self.env_id, seeds, self.num_envs))
        self.elapsed_steps = 0
        return self._observe()

    def step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        if self.state is None:
            raise RuntimeError(f"{self.env_id}: call reset(seeds) before step(actions)")
        if actions.dim() == 0 or actions.shape[0] != self.num_envs:
            raise ValueError(
                f"{self.env_id}: step got actions of shape {tuple(actions.shape)}, expected "
                f"({self.num_envs},) or ({self.num_envs}, act_dim)"
            )
        reward, terminated = self._step_state(actions.to(self.device))
        self.elapsed_steps += 1
        truncated = torch.full(
            (self.num_envs,), self.elapsed_steps >= self.max_episode_steps, device=self.device
        )
        return self._observe(), reward.to(torch.float32), terminated, truncated

    def close(self) -> None:
        """Nothing to release (tensors only); present for parity with the Gymnasium adapter."""

    def _spaces(self) -> tuple[Any, Any]:
        raise NotImplementedError

    def _reset_state(self, seeds: list[int]) -> Tensor:
        raise NotImplementedError

    def _observe(self) -> Tensor:
        raise NotImplementedError

    def _step_state(self, actions: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.env_id}, num_envs={self.num_envs}, device={self.device})"
        )
