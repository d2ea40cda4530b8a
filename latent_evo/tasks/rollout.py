"""The batched rollout: P policies x E episodes as ONE batch of B = P * E environments.

Per step: normalise the observations with the population's frozen statistics, ONE vmapped
policy forward over the P members (observations viewed `(P, E, obs_dim)`), one batched
environment step, masks for the episodes that already ended. The loop stops when every episode
has ended (terminated, truncated, or the task's step cap) -- torch only, no per-member Python.

Non-finite observations or rewards of a live episode raise at once, naming the environment, the
step and the seed: a NaN would otherwise become a silently terrible fitness, or poison the
observation statistics every later generation shares.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from latent_evo.tasks.obsnorm import RunningObsNorm


class NonFiniteEnvError(RuntimeError):
    """An environment returned a NaN / inf observation or reward."""


def batched_rollout(
    env: Any,
    forward: Callable[[dict[str, Tensor], Tensor], Tensor],
    params: dict[str, Tensor],
    seeds: Tensor,
    horizon: int,
    discrete: bool,
    norm: RunningObsNorm | None = None,
    sums: Tensor | None = None,
    sample: bool = False,
    env_id: str = "",
) -> tuple[Tensor, Tensor]:
    """Returns and lengths `(P, E)` of P members (`params {name: (P, *shape)}`) each playing
    the E episodes `seeds (E,)` in `env` (a `BatchedEnv` of B = P * E environments).

    `forward(params, obs (P, E, obs_dim)) -> (P, E, out_dim)` is the vmapped policy: logits for
    a `discrete` action space (argmax, or Gumbel-max with `sample`), else the actions. `norm`:
    frozen statistics to normalise with; `sums`: its accumulator for the observations seen."""
    P, E = next(iter(params.values())).shape[0], seeds.numel()
    B = P * E
    seeds_b = seeds.reshape(1, E).expand(P, E).reshape(B)  # member-major: b = p * E + e
    frozen = norm.frozen() if norm is not None else None
    obs = env.reset(seeds_b)  # (B, obs_dim)
    dev = obs.device
    noise = gumbel_generator(seeds, dev) if sample else None
    alive = torch.ones(B, dtype=torch.bool, device=dev)
    returns = torch.zeros(B, dtype=torch.float64, device=dev)
    lengths = torch.zeros(B, dtype=torch.int64, device=dev)
    if not bool(torch.isfinite(obs).all()):  # NaN would poison the shared statistics
        raise_nonfinite(env_id, obs, returns, alive, 0, seeds_b)
    for t in range(horizon):
        if norm is not None:
            if sums is not None:
                norm.accumulate(sums, obs, alive)
            obs = norm.apply(obs, frozen)
        out = forward(params, obs.reshape(P, E, -1))  # (P, E, out_dim)
        if discrete:
            actions = to_discrete(out, noise).reshape(B)  # (B,) int64
        else:
            actions = out.reshape(B, -1)  # (B, act_dim)
        obs, reward, terminated, truncated = env.step(actions)
        if bool((alive & ~(torch.isfinite(reward) & torch.isfinite(obs).all(-1))).any()):
            raise_nonfinite(env_id, obs, reward, alive, t + 1, seeds_b)
        returns += torch.where(alive, reward.double(), 0.0)
        lengths += alive
        alive &= ~(terminated | truncated)
        if not bool(alive.any()):
            break
    return returns.reshape(P, E), lengths.reshape(P, E)  # (P, E) each


def gumbel_generator(seeds: Tensor, device: torch.device) -> torch.Generator:
    """The noise of sampled actions: a pure function of the episode seeds, shared by all
    members (common random numbers for the action noise too)."""
    mix = int((seeds.to(torch.int64) * (torch.arange(seeds.numel()) * 2 + 1_000_003)).sum())
    return torch.Generator(device=device).manual_seed(mix % 2**62)


def to_discrete(logits: Tensor, noise: torch.Generator | None) -> Tensor:
    """`(P, E, n)` logits -> actions `(P, E)`: argmax, or Gumbel-max with noise `(E, n)` drawn
    once per step and shared by the P members. Indices 0..n-1: the environment adds a
    space's `start`."""
    if noise is not None:
        u = torch.rand(logits.shape[1:], generator=noise, device=logits.device)  # (E, n)
        logits = logits - torch.log(-torch.log(u.clamp_min(1e-20)))
    return logits.argmax(-1)


def raise_nonfinite(
    env_id: str, obs: Tensor, reward: Tensor, alive: Tensor, t: int, seeds: Tensor
) -> None:
    """Raise naming the environment, the step (0: the reset), the quantity and the seed."""
    bad_obs = alive & ~torch.isfinite(obs).all(-1)
    bad = bad_obs | (alive & ~torch.isfinite(reward))
    i = int(bad.nonzero()[0, 0])
    what = "observation" if bool(bad_obs[i]) else "reward"
    when = "at reset" if t == 0 else f"at step {t}"
    raise NonFiniteEnvError(
        f"environment {env_id!r} returned a non-finite {what} {when} of the episode with seed "
        f"{int(seeds[i])} (environment {i} of {len(seeds)}); nothing was scored"
    )


def distributed() -> bool:
    """Launched by torchrun with more than one rank."""
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def reduce_over_ranks(
    genomes: Tensor, work: Tensor, sums: Tensor | None, device: torch.device
) -> tuple[Tensor, Tensor | None]:
    """`work (2,)` (episodes, environment steps) and the observation `sums` of this fitness call
    over all ranks, in one `all_gather` on the task's device (NCCL moves CUDA tensors only).

    A sharded call (each rank its slice of the population) adds the ranks' parts; a replicated
    call (every rank scoring the same genomes: the re-scored incumbent, a challenger's second
    batch) counts once, so counters and statistics equal a single process's. Which one it was
    is read off a fingerprint of the genomes (count, sum, sum of squares)."""
    g = genomes.detach().double()
    fingerprint = torch.stack([torch.tensor(float(len(g))), g.sum().cpu(), g.square().sum().cpu()])
    parts = [fingerprint, work] + ([sums.cpu()] if sums is not None else [])
    flat = torch.cat(parts).to(device)  # (3 + 2 [+ 1 + 2 * obs_dim],)
    rows = [torch.empty_like(flat) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(rows, flat)
    table = torch.stack(rows).cpu()  # (ranks, 5 [+ 1 + 2 * obs_dim])
    replicated = bool((table[:, :3] == table[:1, :3]).all())
    total = table[0] if replicated else table.sum(0)
    out_sums = None if sums is None else total[5:].to(sums.device)
    return total[3:5], out_sums
