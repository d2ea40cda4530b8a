"""Acrobot-v1 as one batched torch computation, with per-environment physical parameters.

Gymnasium's Acrobot integrates one 0.2 s step with a single classical Runge-Kutta-4 stage over
`_dsdt` (the "book" dynamics of Sutton & Barto); stepping B of them in numpy is a Python loop of
four derivative calls per environment. Here the same RK4 step runs on `(B,)` tensors, with each
environment's own link lengths, masses, centre-of-mass positions, moment of inertia and speed
limits. As in Gymnasium: torques {-1, 0, +1} for actions {0, 1, 2}, angles wrapped into
[-pi, pi], angular speeds clipped to ±MAX_VEL_1 / ±MAX_VEL_2, terminated when the tip rises above
the bar (-cos th1 - cos(th1 + th2) > 1), reward -1 per step (0 on the terminating one), truncated
at 500 steps. Reset: uniform(-0.1, 0.1) in float32 with Gymnasium's seeding
(`base.gymnasium_uniform`).

Parameter names are Gymnasium's attribute names, so the adapter takes the same ones. Not
parameters here: LINK_LENGTH_2 (Gymnasium uses it only to draw), gravity (a constant 9.8 inside
Gymnasium's `_dsdt`), torque noise (0 in v1).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from latent_evo.envs.base import TorchEnv, gymnasium_uniform

GRAVITY = 9.8


def wrap(x: Tensor, low: Tensor, high: Tensor, period: Tensor, zero: Tensor) -> Tensor:
    """Gymnasium's `wrap` (subtract / add the period until inside) without a loop: k periods at
    once; for the usual k = 1 this is the same floating-point operation as Gymnasium's."""
    above = torch.maximum(torch.ceil((x - high) / period), zero)
    x = x - above * period
    below = torch.maximum(torch.ceil((low - x) / period), zero)
    return x + below * period


class Acrobot(TorchEnv):
    """B acrobots; `params` (each `(B,)`): LINK_LENGTH_1, LINK_MASS_1, LINK_MASS_2,
    LINK_COM_POS_1, LINK_COM_POS_2, LINK_MOI, MAX_VEL_1, MAX_VEL_2, dt. State `(B, 4)` = th1, th2,
    dth1, dth2; observation `(B, 6)` = cos th1, sin th1, cos th2, sin th2, dth1, dth2."""

    env_id = "Acrobot-v1"
    PARAM_DEFAULTS = {
        "LINK_LENGTH_1": 1.0,
        "LINK_MASS_1": 1.0,
        "LINK_MASS_2": 1.0,
        "LINK_COM_POS_1": 0.5,
        "LINK_COM_POS_2": 0.5,
        "LINK_MOI": 1.0,
        "MAX_VEL_1": 4 * math.pi,
        "MAX_VEL_2": 9 * math.pi,
        "dt": 0.2,
    }
    DEFAULT_MAX_STEPS = 500

    def _spaces(self) -> tuple[Any, Any]:
        import numpy as np
        from gymnasium import spaces

        v1 = float(self.params["MAX_VEL_1"].max())
        v2 = float(self.params["MAX_VEL_2"].max())
        high = np.array([1.0, 1.0, 1.0, 1.0, v1, v2], dtype=np.float32)
        return spaces.Box(low=-high, high=high, dtype=np.float32), spaces.Discrete(3)

    def _reset_state(self, seeds: list[int]) -> Tensor:
        start = gymnasium_uniform(seeds, -0.1, 0.1, 4).float()  # (B, 4), float32 as Gymnasium's
        return start.to(device=self.device, dtype=self.dtype)

    def _observe(self) -> Tensor:
        th1, th2, dth1, dth2 = self.state.unbind(1)  # each (B,)
        obs = (torch.cos(th1), torch.sin(th1), torch.cos(th2), torch.sin(th2), dth1, dth2)
        return torch.stack(obs, dim=1).to(torch.float32)  # (B, 6)

    def _constants(self) -> dict[str, Tensor]:
        """The parameter-only sub-expressions of `_dsdt`, each `(B,)`, computed once per step
        instead of once per RK4 stage; grouped exactly as Gymnasium's left-to-right evaluation
        groups them, so the rounding is the same."""
        p = self.params
        m1, m2 = p["LINK_MASS_1"], p["LINK_MASS_2"]
        l1, lc1, lc2 = p["LINK_LENGTH_1"], p["LINK_COM_POS_1"], p["LINK_COM_POS_2"]
        g = GRAVITY
        return {
            "inertia": p["LINK_MOI"],  # I1 = I2
            "m2": m2,
            "m1_lc1sq": m1 * lc1**2,
            "l1sq_lc2sq": l1**2 + lc2**2,
            "two_l1_lc2": 2 * l1 * lc2,
            "lc2sq": lc2**2,
            "l1_lc2": l1 * lc2,
            "m2_lc2_g": m2 * lc2 * g,
            "neg_m2_l1_lc2": -m2 * l1 * lc2,
            "two_m2_l1_lc2": 2 * m2 * l1 * lc2,
            "m2_l1_lc2": m2 * l1 * lc2,
            "lever_g": (m1 * lc1 + m2 * l1) * g,
            "m2_lc2sq_i2": m2 * lc2**2 + p["LINK_MOI"],
            "half_pi": self.scalars(math.pi / 2.0)[0],
        }

    @staticmethod
    def _dsdt(c: dict[str, Tensor], s: Tensor, torque: Tensor) -> Tensor:
        """Time derivative of the state `(B, 4)` under `torque (B,)`: Gymnasium's "book"
        dynamics with its order of operations (`c` from `_constants`; x * x is what numpy's
        x**2 computes)."""
        th1, th2, dth1, dth2 = s.unbind(1)  # each (B,)
        cos2, sin2 = torch.cos(th2), torch.sin(th2)
        inertia = c["inertia"]
        d1 = (
            c["m1_lc1sq"] + c["m2"] * (c["l1sq_lc2sq"] + c["two_l1_lc2"] * cos2) + inertia + inertia
        )
        d2 = c["m2"] * (c["lc2sq"] + c["l1_lc2"] * cos2) + inertia
        phi2 = c["m2_lc2_g"] * torch.cos(th1 + th2 - c["half_pi"])
        phi1 = (
            c["neg_m2_l1_lc2"] * (dth2 * dth2) * sin2
            - c["two_m2_l1_lc2"] * dth2 * dth1 * sin2
            + c["lever_g"] * torch.cos(th1 - c["half_pi"])
            + phi2
        )
        ddth2 = (torque + d2 / d1 * phi1 - c["m2_l1_lc2"] * (dth1 * dth1) * sin2 - phi2) / (
            c["m2_lc2sq_i2"] - (d2 * d2) / d1
        )
        ddth1 = -(d2 * ddth2 + phi1) / d1
        return torch.stack((dth1, dth2, ddth1, ddth2), dim=1)  # (B, 4)

    def _step_state(self, actions: Tensor) -> tuple[Tensor, Tensor]:
        p = self.params
        one, two, six, zero, pi, period = self.scalars(1.0, 2.0, 6.0, 0.0, math.pi, 2 * math.pi)
        torque = actions.reshape(-1).to(self.dtype) - one  # actions 0, 1, 2 -> -1, 0, +1
        s, dt = self.state, p["dt"].unsqueeze(1)  # (B, 4), (B, 1)
        half, c = dt / two, self._constants()
        k1 = self._dsdt(c, s, torque)
        k2 = self._dsdt(c, s + half * k1, torque)
        k3 = self._dsdt(c, s + half * k2, torque)
        k4 = self._dsdt(c, s + dt * k3, torque)
        ns = s + dt / six * (k1 + two * k2 + two * k3 + k4)  # (B, 4)

        angles = wrap(ns[:, :2], -pi, pi, period, zero)  # (B, 2)
        max_vel = torch.stack((p["MAX_VEL_1"], p["MAX_VEL_2"]), dim=1)  # (B, 2)
        speeds = torch.minimum(torch.maximum(ns[:, 2:], -max_vel), max_vel)  # (B, 2)
        self.state = torch.cat((angles, speeds), dim=1)  # (B, 4)

        th1, th2 = angles.unbind(1)  # each (B,)
        terminated = -torch.cos(th1) - torch.cos(th2 + th1) > one
        reward = torch.where(terminated, zero, -one)
        return reward, terminated
