"""Pendulum-v1 as one batched torch computation, with per-environment physical parameters.

No maintained library steps Pendulum in batch with a different g / m / l per environment on any
torch device, and the dynamics are three lines, so we write them (tested step by step against
Gymnasium's `classic_control/pendulum.py`). As in Gymnasium: the torque is clipped to
±max_torque, cost = angle_normalize(th)^2 + 0.1 thdot^2 + 0.001 u^2, reward = -cost, the angular
speed is clipped to ±max_speed, never terminated, truncated at 200 steps. Gymnasium evaluates the
torque terms in float32 (numpy promotes `python float * float32` to float32); we do the same, so
float64 mode follows Gymnasium's float64 state to rounding. Reset draws th, thdot uniform in
[-pi, pi] x [-1, 1] with Gymnasium's seeding (see `base.gymnasium_uniform`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from latent_evo.envs.base import TorchEnv, gymnasium_uniform


def angle_normalize(x: Tensor, pi: Tensor | float = math.pi, two_pi: Tensor | float = 2 * math.pi):
    """Into [-pi, pi), Python's/numpy's modulo (torch.remainder has the same sign rule)."""
    return torch.remainder(x + pi, two_pi) - pi


class Pendulum(TorchEnv):
    """B pendulums; `params` (each `(B,)`): g, m, l, max_torque, max_speed, dt. State `(B, 2)` =
    th, thdot; observation `(B, 3)` = cos th, sin th, thdot; action `(B, 1)` torque."""

    env_id = "Pendulum-v1"
    PARAM_DEFAULTS = {
        "g": 10.0,
        "m": 1.0,
        "l": 1.0,
        "max_torque": 2.0,
        "max_speed": 8.0,
        "dt": 0.05,
    }
    DEFAULT_MAX_STEPS = 200

    def _spaces(self) -> tuple[Any, Any]:
        """Bounds of one environment: the largest over the batch (each environment clips its own
        torque to its own max_torque)."""
        import numpy as np
        from gymnasium import spaces

        max_speed = float(self.params["max_speed"].max())
        max_torque = float(self.params["max_torque"].max())
        high = np.array([1.0, 1.0, max_speed], dtype=np.float32)
        obs = spaces.Box(low=-high, high=high, dtype=np.float32)
        act = spaces.Box(low=-max_torque, high=max_torque, shape=(1,), dtype=np.float32)
        return obs, act

    def _reset_state(self, seeds: list[int]) -> Tensor:
        start = gymnasium_uniform(seeds, [-math.pi, -1.0], [math.pi, 1.0], 2)  # (B, 2) float64
        return start.to(device=self.device, dtype=self.dtype)

    def _observe(self) -> Tensor:
        th, thdot = self.state.unbind(1)  # each (B,)
        return torch.stack((torch.cos(th), torch.sin(th), thdot), dim=1).to(torch.float32)

    def _step_state(self, actions: Tensor) -> tuple[Tensor, Tensor]:
        p = self.params
        pi, two_pi, c_speed, two, three = self.scalars(math.pi, 2 * math.pi, 0.1, 2.0, 3.0)
        (c_torque,) = self.scalars(0.001, dtype=torch.float32)
        th, thdot = self.state.unbind(1)  # each (B,)
        max_torque = p["max_torque"].float()
        u = actions.reshape(self.num_envs, -1)[:, 0].float()  # (B,) float32, as Gymnasium's Box
        u = torch.minimum(torch.maximum(u, -max_torque), max_torque)

        # x * x is what numpy's x**2 computes; the u terms in float32, as in Gymnasium
        u_cost = (c_torque * (u * u)).to(self.dtype)
        costs = angle_normalize(th, pi, two_pi).square() + c_speed * (thdot * thdot) + u_cost
        torque = ((three / (p["m"] * (p["l"] * p["l"]))).float() * u).to(self.dtype)
        gravity = three * p["g"] / (two * p["l"]) * torch.sin(th)
        new_thdot = thdot + (gravity + torque) * p["dt"]
        new_thdot = torch.minimum(torch.maximum(new_thdot, -p["max_speed"]), p["max_speed"])
        new_th = th + new_thdot * p["dt"]
        self.state = torch.stack((new_th, new_thdot), dim=1)  # (B, 2)

        terminated = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        return -costs, terminated
