"""CartPole-v1 as one batched torch computation, with per-environment physical parameters.

Why our own: Gymnasium's `CartPoleVectorEnv` steps in numpy (a round trip per step, CPU only) and
holds one set of physical constants for the whole batch; an environment family needs each member
to run its own pole length / masses / gravity. This file reproduces Gymnasium's
`classic_control/cartpole.py` exactly: the same Euler integrator, the same order of operations
(so float64 mode matches Gymnasium's float64 state to rounding), the same termination thresholds
(|x| > 2.4, |theta| > 12 degrees), reward 1 on every step including the terminating one, and
Gymnasium's TimeLimit truncation (500 steps for v1). Reset draws the start state with Gymnasium's
own seeding (see `base.gymnasium_uniform`), so `reset(seeds)` gives Gymnasium's episodes.

Differences, by design: no auto-reset and no warning after termination (steps after the end are
meaningless and masked by the rollout; their reward is still 1, where Gymnasium's is 0).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from latent_evo.envs.base import TorchEnv, gymnasium_uniform

X_THRESHOLD = 2.4
THETA_THRESHOLD = 12 * 2 * math.pi / 360  # radians, as Gymnasium computes it


class CartPole(TorchEnv):
    """B cart-poles; `params` (each `(B,)`): gravity, masscart, masspole, length (HALF the pole's
    length, as in Gymnasium), force_mag, tau. State `(B, 4)` = x, x_dot, theta, theta_dot in
    `dtype` (float32 default; float64 tracks Gymnasium's float64 state to rounding)."""

    env_id = "CartPole-v1"
    PARAM_DEFAULTS = {
        "gravity": 9.8,
        "masscart": 1.0,
        "masspole": 0.1,
        "length": 0.5,
        "force_mag": 10.0,
        "tau": 0.02,
    }
    DEFAULT_MAX_STEPS = 500

    def _spaces(self) -> tuple[Any, Any]:
        import numpy as np
        from gymnasium import spaces

        high = np.array([X_THRESHOLD * 2, np.inf, THETA_THRESHOLD * 2, np.inf], dtype=np.float32)
        return spaces.Box(-high, high, dtype=np.float32), spaces.Discrete(2)

    def _reset_state(self, seeds: list[int]) -> Tensor:
        start = gymnasium_uniform(seeds, -0.05, 0.05, 4)  # (B, 4) float64
        return start.to(device=self.device, dtype=self.dtype)

    def _observe(self) -> Tensor:
        return self.state.to(torch.float32, copy=True)  # never an alias of the state

    def _step_state(self, actions: Tensor) -> tuple[Tensor, Tensor]:
        p = self.params
        four_thirds, x_threshold, theta_threshold = self.scalars(
            4.0 / 3.0, X_THRESHOLD, THETA_THRESHOLD
        )
        x, x_dot, theta, theta_dot = self.state.unbind(1)  # each (B,)
        force = torch.where(actions.reshape(-1) == 1, p["force_mag"], -p["force_mag"])
        total_mass = p["masspole"] + p["masscart"]
        polemass_length = p["masspole"] * p["length"]
        cos, sin = torch.cos(theta), torch.sin(theta)

        # x * x: what Gymnasium's np.square computes (and torch's pow(x, 2)), one op cheaper
        temp = (force + polemass_length * (theta_dot * theta_dot) * sin) / total_mass
        theta_acc = (p["gravity"] * sin - cos * temp) / (
            p["length"] * (four_thirds - p["masspole"] * (cos * cos) / total_mass)
        )
        x_acc = temp - polemass_length * theta_acc * cos / total_mass

        # Euler on all four coordinates at once: the same elementwise ops as Gymnasium's
        rates = torch.stack((x_dot, x_acc, theta_dot, theta_acc), dim=1)  # (B, 4)
        self.state = self.state + p["tau"].unsqueeze(1) * rates  # (B, 4)
        x, theta = self.state[:, 0], self.state[:, 2]

        terminated = (x.abs() > x_threshold) | (theta.abs() > theta_threshold)
        reward = torch.ones(self.num_envs, device=self.device)
        return reward, terminated
