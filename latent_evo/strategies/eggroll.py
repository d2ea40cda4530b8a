"""EGGROLL: Sarkar et al. (2025), "Evolution Strategies at the Hyperscale" (Evolution Guided
General Optimization via Low-rank Learning), arXiv:2511.16652.

An OpenAI-ES-style Gaussian ES whose perturbations of weight *matrices* are low rank: for a
segment of shape ``(m, n)`` each candidate perturbs it by ``E = A Bᵀ / √r`` with
``A ~ N(0, I_{m×r})``, ``B ~ N(0, I_{n×r})``; vector segments (biases, norms) get full Gaussian
noise. Sampling and the update cost O((m + n) r) per candidate instead of O(m n), and the
aggregated update ``Σ_i u_i A_i B_iᵀ`` is one ``(m, P r) @ (P r, n)`` matmul, i.e. of rank at most
``P r`` (the paper's point: low-rank per member, high-rank in aggregate).

``shapes`` lists the segments in genome order: ``(rows, cols)`` for a matrix, ``(n,)`` or ``n``
for a vector; their sizes must sum to ``dim``. **Default (no shapes): the whole vector is one
full-noise segment**, i.e. plain antithetic OpenAI-ES (a latent code has no matrix structure).
Antithetic pairs, centred ranks and Adam as in OpenAI-ES. Default start: mean 0.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .gaussian import ADAM_HPARAMS, GaussianES
from .shaping import centered_ranks


class EGGROLL(GaussianES):
    name = "eggroll"
    mean_name = "theta"
    sigma_shape = None  # σ stays sigma_init
    noise_name = "_factors"  # (P, K) low-rank factors, not the (P, d) perturbations
    default_hparams: dict[str, Any] = {
        "sigma_init": 0.1,
        **ADAM_HPARAMS,
        "rank": 1,
        "shapes": None,
        "weight_decay": 0.0,
    }

    def _check_hparams(self) -> None:
        shapes = self.hp["shapes"] or [(self.dim,)]
        segs: list[tuple[int, ...]] = []
        for s in shapes:
            s = (int(s),) if isinstance(s, int) else tuple(int(v) for v in s)
            if len(s) not in (1, 2) or min(s) < 1:
                raise ValueError(f"eggroll: each shape must be (n,) or (rows, cols), got {s}")
            segs.append(s)
        total = sum(math.prod(s) for s in segs)
        if total != self.dim:
            raise ValueError(f"eggroll: shapes cover {total} values but dim is {self.dim}")
        r = int(self.hp["rank"])
        if r < 1:
            raise ValueError(f"eggroll: rank must be >= 1, got {r}")
        self.segments = segs
        # per segment: number of noise values per candidate (factors or full noise)
        self._nfac = [(s[0] + s[1]) * r if len(s) == 2 else s[0] for s in segs]

    def _perturbations(self, factors: Tensor) -> Tensor:
        """``(P, K)`` stored factors -> ``(P, d)`` unit-scale perturbations."""
        r, p = int(self.hp["rank"]), factors.shape[0]
        out = []
        for s, f in zip(self.segments, factors.split(self._nfac, dim=1), strict=True):
            if len(s) == 1:
                out.append(f)
            else:
                a = f[:, : s[0] * r].reshape(p, s[0], r)  # (P, m, r)
                b = f[:, s[0] * r :].reshape(p, s[1], r)  # (P, n, r)
                # (P, m, n) -> (P, m n), flattened row-major
                out.append((a @ b.transpose(1, 2)).reshape(p, -1) / math.sqrt(r))
        return torch.cat(out, 1)

    def _ask(self) -> Tensor:
        k = sum(self._nfac)
        half = self.randn(self.popsize // 2, k)
        # negating a matrix segment's A (and a vector's noise) negates its perturbation
        neg = torch.cat(
            [
                -f if len(s) == 1 else torch.cat([-f[:, : s[0] * int(self.hp["rank"])],
                                                   f[:, s[0] * int(self.hp["rank"]) :]], 1)
                for s, f in zip(self.segments, half.split(self._nfac, dim=1), strict=True)
            ],
            1,
        )  # fmt: skip
        parts = [half, neg] + ([self.randn(1, k)] if self.popsize % 2 else [])
        self._factors = torch.cat(parts)
        eps = self._perturbations(self._factors)
        return eps.mul_(self.hp["sigma_init"]).add_(self.theta)

    def _tell(self, x: Tensor, fitness: Tensor, descriptors: Tensor | None) -> None:
        u = centered_ranks(fitness)
        p, r = self.popsize, int(self.hp["rank"])
        grads = []
        for s, f in zip(self.segments, self._factors.split(self._nfac, dim=1), strict=True):
            if len(s) == 1:
                grads.append(u @ f)
            else:
                # (P, m, r) weighted by u -> (m, P, r)
                a = (f[:, : s[0] * r].reshape(p, s[0], r) * u[:, None, None]).permute(1, 0, 2)
                b = f[:, s[0] * r :].reshape(p, s[1], r).permute(1, 0, 2)  # (n, P, r)
                # Σ_i u_i A_i B_iᵀ as a single (m, P r) @ (P r, n) matmul
                g = a.reshape(s[0], p * r) @ b.reshape(s[1], p * r).T
                grads.append(g.reshape(-1) / math.sqrt(r))  # (m, n) -> (m n,)
        grad = torch.cat(grads) / (p * self.hp["sigma_init"])
        grad = grad + self.hp["weight_decay"] * self.theta
        self.theta = self.theta - self._adam_step(grad)
        self._factors = None
