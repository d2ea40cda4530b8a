"""Policy networks for episodic tasks, built from an environment's spaces and vmap-friendly.

An episodic task evaluates P policies at once with ONE `vmap(functional_call)` per environment
step, so a policy is a plain MLP whose genome is exactly its Linear weights and biases (the
action bounds are non-persistent buffers: part of the function, never of the genome).

    obs (N, obs_dim) -> tanh MLP -> logits (N, n)                 Discrete(n): argmax / sample
                                 -> low + (tanh(y) + 1) / 2 * (high - low)   Box(act_dim,)

Default hidden sizes (32, 32), tanh: enough capacity for the classic-control tasks and
LunarLander (evolution-strategy papers use 2 x 16 to 2 x 64 tanh layers), small enough that
direct ES on the flat genome (1-2 k parameters) learns in tens of generations. Tanh keeps
every hidden unit bounded, so a large perturbation of a genome changes behaviour without
saturating into NaN. The last layer starts at a tenth of PyTorch's default scale: a fresh
policy then acts close to uniformly (logits near 0, actions near the middle of the bounds),
which is where ES makes its fastest early progress.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from latent_evo.models.mlp import get_activation

OUTPUT_INIT_SCALE = 0.1


class Policy(nn.Module):
    """`obs_dim -> hidden... -> out_dim`; with `low`/`high` the output is tanh-squashed into
    the box `[low, high]` (continuous actions), without them it is raw logits (discrete)."""

    def __init__(
        self,
        obs_dim: int,
        out_dim: int,
        hidden: Sequence[int] = (32, 32),
        low: Sequence[float] | Tensor | None = None,
        high: Sequence[float] | Tensor | None = None,
        activation: str = "tanh",
    ):
        super().__init__()
        if obs_dim < 1 or out_dim < 1:
            raise ValueError(
                f"Policy needs obs_dim >= 1 and out_dim >= 1, got {obs_dim}, {out_dim}"
            )
        self.obs_dim, self.out_dim = int(obs_dim), int(out_dim)
        self.hidden = tuple(int(h) for h in hidden)
        self.activation = activation
        self.act = get_activation(activation)
        sizes = (self.obs_dim, *self.hidden, self.out_dim)
        self.layers = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )
        self.bounded = low is not None
        if (low is None) != (high is None):
            raise ValueError("Policy: give both low and high (a Box action space) or neither")
        if self.bounded:
            lo = torch.as_tensor(low, dtype=torch.float32).reshape(self.out_dim)
            hi = torch.as_tensor(high, dtype=torch.float32).reshape(self.out_dim)
            if not (torch.isfinite(lo).all() and torch.isfinite(hi).all() and (hi > lo).all()):
                raise ValueError(
                    f"Policy: action bounds must be finite with high > low, got low={lo.tolist()}, "
                    f"high={hi.tolist()}"
                )
            # non-persistent: moved by .to(), absent from the state dict and so from the genome
            self.register_buffer("center", (hi + lo) / 2, persistent=False)
            self.register_buffer("half_range", (hi - lo) / 2, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for layer in self.layers:
            layer.reset_parameters()
        with torch.no_grad():
            self.layers[-1].weight.mul_(OUTPUT_INIT_SCALE)
            self.layers[-1].bias.mul_(OUTPUT_INIT_SCALE)

    def forward(self, obs: Tensor) -> Tensor:
        """`(N, obs_dim)` -> `(N, out_dim)` logits or bounded actions."""
        x = obs
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self.act(x)
        if self.bounded:
            x = self.center + self.half_range * torch.tanh(x)
        return x


def population_forward(policy: Policy, params: dict[str, Tensor], obs: Tensor) -> Tensor:
    """P policies at once: `params {name: (P, *shape)}`, `obs (P, E, obs_dim)` -> `(P, E,
    out_dim)`, what `vmap(functional_call(policy, ...))` computes, as one `baddbmm` per layer.

    Why a second path: at the sizes of a rollout step (P = 256 members x E = 4 observations x
    32 units) vmap and functional_call cost more than the arithmetic -- about twice the time
    of these three calls on one CPU thread -- and the forward runs once per environment step.
    Results equal the vmapped forward up to float rounding (tests/test_episodic.py)."""
    x = obs
    last = len(policy.layers) - 1
    for i in range(last + 1):
        w, b = params[f"layers.{i}.weight"], params[f"layers.{i}.bias"]  # (P, out, in), (P, out)
        x = torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))  # (P, E, out)
        if i < last:
            x = policy.act(x)
    if policy.bounded:
        x = policy.center + policy.half_range * torch.tanh(x)
    return x


def population_forward_fn(model: nn.Module) -> Callable[[dict[str, Tensor], Tensor], Tensor]:
    """`(params {name: (P, *shape)}, obs (P, E, obs_dim)) -> (P, E, out_dim)` for any policy
    module: one vmapped `functional_call`; our own `Policy` takes `population_forward` (the same
    function at half the cost of a rollout step's forward)."""
    if type(model) is Policy:
        return functools.partial(population_forward, model)
    return vmap(lambda p, x: functional_call(model, p, (x,)))


def check_policy(
    forward: Callable[[dict[str, Tensor], Tensor], Tensor],
    params: dict[str, Tensor],
    obs_dim: int,
    out_dim: int,
    action_space: Any,
    name: str,
) -> None:
    """One dummy forward of 2 members x 3 observations (`params {name: (1, *shape)}`, repeated):
    the output must fit the action space -- `out_dim` logits or actions per observation --
    before any budget is spent. Errors name the task `name` and the space."""
    params = {k: v.expand(2, *v.shape[1:]) for k, v in params.items()}
    x = torch.zeros(2, 3, obs_dim, device=next(iter(params.values())).device)  # (P, E, obs_dim)
    try:
        with torch.no_grad():
            out = forward(params, x)
    except Exception as e:
        raise ValueError(
            f"{name}: the policy fails on observations of shape (N, {obs_dim}) under "
            f"vmap(functional_call): {e}"
        ) from e
    if not torch.is_tensor(out) or tuple(out.shape) != (2, 3, out_dim):
        got = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
        what = "logits" if type(action_space).__name__ == "Discrete" else "actions"
        raise ValueError(
            f"{name}: the policy's output {got} per (members, episodes) does not fit the action "
            f"space {action_space!r}: expected {out_dim} {what} per observation"
        )


def policy_for_spaces(
    observation_space, action_space, hidden: Sequence[int] = (32, 32), activation: str = "tanh"
) -> Policy:
    """The default policy of an environment: a flat `Box` observation; a `Discrete` action
    space (logits) or a bounded `Box` one (tanh-scaled). Other spaces raise naming the space."""
    obs_shape = tuple(getattr(observation_space, "shape", None) or ())
    if type(observation_space).__name__ != "Box" or len(obs_shape) != 1:
        raise ValueError(
            f"the default policy takes a flat Box observation, got {observation_space!r}; pass "
            "policy=<nn.Module mapping (N, *obs_shape) to the action head> for other observations"
        )
    kind = type(action_space).__name__
    if kind == "Discrete":
        return Policy(obs_shape[0], int(action_space.n), hidden, activation=activation)
    if kind == "Box" and len(action_space.shape) == 1:
        low = torch.as_tensor(action_space.low, dtype=torch.float32)
        high = torch.as_tensor(action_space.high, dtype=torch.float32)
        if not (torch.isfinite(low).all() and torch.isfinite(high).all()):
            raise ValueError(
                f"the default policy tanh-scales actions into the bounds of {action_space!r}, "
                "which are not finite; pass policy=<nn.Module> emitting actions yourself"
            )
        return Policy(obs_shape[0], action_space.shape[0], hidden, low, high, activation)
    raise ValueError(
        f"unsupported action space {action_space!r}: a policy acts in Discrete(n) or a flat Box"
    )
