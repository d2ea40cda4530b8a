"""`EnvFamily`: an environment id plus ranges of its physical parameters.

Policy zoos and generalisation studies train and test on variants of one task (longer poles,
heavier carts, other gravity). A family names the ranges once, is validated against the
environment's parameter names when it is built (a typo fails there, not mid-run), and samples
`(n,)` tensors per parameter that `make_env(..., params=...)` takes as one value per environment.
"""

from __future__ import annotations

import torch
from torch import Tensor


class EnvFamily:
    """`EnvFamily("CartPole-v1", {"length": (0.25, 1.0), "masscart": (0.5, 2.0)})`.

    Parameters not named keep their defaults. `backend` picks whose parameter names validate the
    ranges (ours for "auto" when a torch implementation exists, see `param_defaults`)."""

    def __init__(self, env_id: str, ranges: dict[str, tuple[float, float]], backend: str = "auto"):
        from latent_evo.envs import param_defaults

        valid = param_defaults(env_id, backend=backend)
        unknown = sorted(set(ranges) - set(valid))
        if unknown:
            raise ValueError(
                f"EnvFamily({env_id}): unknown parameter(s) {unknown}; valid names: {sorted(valid)}"
            )
        checked: dict[str, tuple[float, float]] = {}
        for name, bounds in ranges.items():
            try:
                low, high = (float(b) for b in bounds)
            except (TypeError, ValueError):
                raise ValueError(
                    f"EnvFamily({env_id}): range of {name!r} must be (low, high), got {bounds!r}"
                ) from None
            if not low <= high:
                raise ValueError(
                    f"EnvFamily({env_id}): range of {name!r} has low {low} > high {high}"
                )
            checked[name] = (low, high)
        self.env_id = env_id
        self.backend = backend
        self.ranges = checked
        self.defaults = {name: float(valid[name]) for name in checked}

    def sample(
        self, n: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
    ) -> dict[str, Tensor]:
        """`{name: (n,) float32}`, uniform in each range (in sorted name order, so a seeded
        generator gives the same variants whatever order the ranges were written in)."""
        out = {}
        for name in sorted(self.ranges):
            low, high = self.ranges[name]
            u = torch.rand(n, generator=generator, dtype=torch.float64)  # (n,) on the CPU
            out[name] = (low + (high - low) * u).to(device=device, dtype=torch.float32)
        return out

    def __repr__(self) -> str:
        return f"EnvFamily({self.env_id!r}, {self.ranges})"
