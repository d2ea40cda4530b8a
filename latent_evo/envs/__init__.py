"""Environments for episodic tasks: `make_env` builds a `BatchedEnv` of B environments.

Two sources behind one protocol (`base.BatchedEnv`): our batched torch implementations of
Gymnasium's classic-control tasks (a few dozen batched tensor ops per step, per-environment
physical parameters, any device), and `GymnasiumEnv`, an adapter around any Gymnasium `VectorEnv`
(a registered id or a user's factory). `backend="auto"` takes ours where one exists. Gymnasium
itself is imported only inside functions, so `import latent_evo` (and this package) stays light.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from latent_evo.envs.base import BatchedEnv

__all__ = ["BatchedEnv", "make_env", "param_defaults", "torch_env_ids", "EnvFamily"]

# Gymnasium id -> (module, class, max_episode_steps) of our torch implementation.
_TORCH_ENVS: dict[str, tuple[str, str, int]] = {
    "CartPole-v1": ("latent_evo.envs.cartpole", "CartPole", 500),
    "CartPole-v0": ("latent_evo.envs.cartpole", "CartPole", 200),
    "Pendulum-v1": ("latent_evo.envs.pendulum", "Pendulum", 200),
    "Acrobot-v1": ("latent_evo.envs.acrobot", "Acrobot", 500),
}

_BACKENDS = ("auto", "torch", "gymnasium")


def torch_env_ids() -> list[str]:
    """The Gymnasium ids that have a batched torch implementation here."""
    return sorted(_TORCH_ENVS)


def _strip(env_id: str) -> str:
    return env_id[len("gym:") :] if env_id.startswith("gym:") else env_id


def _torch_class(env_id: str) -> tuple[type, int] | None:
    entry = _TORCH_ENVS.get(env_id)
    if entry is None:
        return None
    module, name, max_steps = entry
    return getattr(importlib.import_module(module), name), max_steps


def _check_backend(backend: str) -> None:
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {list(_BACKENDS)}, got {backend!r}")


def make_env(
    env_id: str | Callable[[int], Any],
    num_envs: int,
    device: torch.device | str | None = None,
    params: dict[str, float | Tensor] | None = None,
    max_episode_steps: int | None = None,
    backend: str = "auto",
    *,
    dtype: torch.dtype = torch.float32,
    vectorization_mode: str = "sync",
) -> BatchedEnv:
    """B = `num_envs` environments as one `BatchedEnv`.

    `env_id`: a Gymnasium id (`"CartPole-v1"`, `"gym:LunarLander-v3"`), or a callable
    `num_envs -> gymnasium.vector.VectorEnv` (a user's own environment; always the adapter).
    `params`: physical parameters, a float for all environments or a `(B,)` tensor for one value
    each; `param_defaults(env_id)` lists the names. `backend`: "auto" (ours where one exists, else
    Gymnasium's), "torch" (ours, an error if none), "gymnasium" (the adapter). `dtype` is the
    state dtype of our torch environments (float64 tracks Gymnasium's float64 state to
    rounding); `vectorization_mode` ("sync" or "async") is how the adapter vectorises
    (see `benchmarks/results/envs.md`: "sync" is faster for the classic-control tasks).
    """
    _check_backend(backend)
    if callable(env_id):
        if backend == "torch":
            raise ValueError("backend='torch' needs a Gymnasium id, not an environment factory")
        from latent_evo.envs.gym import GymnasiumEnv

        vec_env = env_id(num_envs)
        built = getattr(vec_env, "num_envs", None)
        if built != num_envs:
            name = getattr(env_id, "__name__", type(env_id).__name__)
            raise ValueError(
                f"environment factory {name} built {built} environments, not {num_envs}"
            )
        return GymnasiumEnv(
            vec_env, device=device, params=params, max_episode_steps=max_episode_steps
        )
    if not isinstance(env_id, str):
        raise TypeError(f"env_id must be a Gymnasium id or a factory, got {type(env_id).__name__}")
    env_id = _strip(env_id)
    found = _torch_class(env_id)
    if backend == "torch" and found is None:
        raise ValueError(
            f"no torch implementation of {env_id!r}; those with one: {torch_env_ids()} "
            "(use backend='gymnasium' or 'auto' for the Gymnasium adapter)"
        )
    if found is not None and backend != "gymnasium":
        cls, default_steps = found
        return cls(
            num_envs,
            env_id=env_id,
            device=device,
            params=params,
            max_episode_steps=max_episode_steps or default_steps,
            dtype=dtype,
        )
    from latent_evo.envs.gym import make_gymnasium_env

    return make_gymnasium_env(
        env_id,
        num_envs,
        device=device,
        params=params,
        max_episode_steps=max_episode_steps,
        vectorization_mode=vectorization_mode,
    )


def param_defaults(env_id: str, backend: str = "auto") -> dict[str, float]:
    """Physical parameter names of `env_id` with their reference values. For our torch
    environments, the parameters they take; for the Gymnasium adapter, the numeric attributes of
    the unwrapped environment that `make_env(params=...)` can set per environment."""
    _check_backend(backend)
    env_id = _strip(env_id)
    found = _torch_class(env_id)
    if backend == "torch" and found is None:
        raise ValueError(
            f"no torch implementation of {env_id!r}; those with one: {torch_env_ids()}"
        )
    if found is not None and backend != "gymnasium":
        return found[0].param_defaults()
    from latent_evo.envs.gym import gymnasium_param_defaults

    return gymnasium_param_defaults(env_id)


def __getattr__(name: str) -> Any:  # EnvFamily loads on first use
    if name == "EnvFamily":
        from latent_evo.envs.family import EnvFamily

        return EnvFamily
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
