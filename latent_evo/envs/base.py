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
