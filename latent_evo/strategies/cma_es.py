"""CMA-ES: Hansen (2016), "The CMA Evolution Strategy: A Tutorial", arXiv:1604.00772, with
optional IPOP restarts: Auger & Hansen (2005), "A Restart CMA Evolution Strategy With
Increasing Population Size", CEC.

Full-covariance ``N(m, σ² C)`` with cumulative step-size adaptation, rank-one and rank-μ
covariance updates and the tutorial's default constants. The eigendecomposition of ``C`` is
refreshed lazily (every ``λ / ((c1 + cμ) d 10)`` generations), as in the tutorial, which keeps
d up to a few thousand practical. Internal state is float64 (a float32 covariance loses
positive-definiteness long before convergence); candidates are returned in ``dtype``.

With ``restarts > 0`` (IPOP), when a stopping criterion fires (σ·max(D) tiny, condition number
of C > 1e14, or the best fitness stagnates over ``10 + 30 d / λ`` generations) the run restarts
from ``N(x0, sigma_init² I)`` with a population ``ipop_factor`` times larger; ``ask`` then returns
more rows. Default start: ``m = 0``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .base import Strategy

F64 = torch.float64


class CMAES(Strategy):
    name = "cma_es"
    state_names = (
        "m", "sigma", "C", "B", "D", "pc", "ps", "x0", "lam", "g_run", "eigen_gen",
        "restarts_done", "hist", "_y",
    )  # fmt: skip
    default_hparams: dict[str, Any] = {
        "sigma_init": 0.1,
        "restarts": 0,
        "ipop_factor": 2,
        "tolx": 1e-12,
        "tolfun": 1e-12,
    }
    min_popsize = 4

    # ---------------------------------------------------------------- constants
    def _consts(self) -> dict[str, Any]:
        n, lam = self.dim, int(self.lam)
        mu = lam // 2
        w = math.log((lam + 1) / 2) - torch.log(torch.arange(1, mu + 1, dtype=F64))
        w = (w / w.sum()).to(self.device)
        mueff = float(1 / (w * w).sum())
        c1 = 2 / ((n + 1.3) ** 2 + mueff)
        cs = (mueff + 2) / (n + mueff + 5)
        return {
            "mu": mu,
            "w": w,
            "mueff": mueff,
            "cc": (4 + mueff / n) / (n + 4 + 2 * mueff / n),
            "cs": cs,
            "c1": c1,
            "cmu": min(1 - c1, 2 * (mueff - 2 + 1 / mueff) / ((n + 2) ** 2 + mueff)),
            "damps": 1 + 2 * max(0.0, math.sqrt((mueff - 1) / (n + 1)) - 1) + cs,
            "chin": math.sqrt(n) * (1 - 1 / (4 * n) + 1 / (21 * n * n)),
        }

    # ---------------------------------------------------------------- state
    def _init_state(self, mean: Tensor | None, population: Tensor | None) -> None:
        if population is not None:
            mean = population.mean(0)
        x0 = torch.zeros(self.dim, device=self.device, dtype=F64) if mean is None else mean.to(F64)
        self.x0 = x0.clone()
        self.lam = torch.tensor(self.popsize, dtype=torch.int64)
        self.restarts_done = torch.zeros((), dtype=torch.int64)
        self._reset_run(x0)

    def _reset_run(self, m: Tensor) -> None:
        n, dev = self.dim, self.device
        self.m = m
        self.sigma = torch.tensor(float(self.hp["sigma_init"]), device=dev, dtype=F64)
        self.C = torch.eye(n, device=dev, dtype=F64)
        self.B = torch.eye(n, device=dev, dtype=F64)
        self.D = torch.ones(n, device=dev, dtype=F64)
        self.pc = torch.zeros(n, device=dev, dtype=F64)
        self.ps = torch.zeros(n, device=dev, dtype=F64)
        self.g_run = torch.zeros((), dtype=torch.int64)
        self.eigen_gen = torch.zeros((), dtype=torch.int64)
        self.hist = torch.empty(0, device=dev, dtype=F64)

    def _after_load(self) -> None:
        if self.lam is not None:
            self.popsize = int(self.lam)

    def _get_mean(self) -> Tensor:
        return self.m.to(self.dtype)

    def _set_mean(self, mean: Tensor) -> None:
        self.m = mean.to(F64)
        self.x0 = self.m.clone()  # IPOP restarts follow the re-centred search

    # ---------------------------------------------------------------- ask / tell
    def _ask(self) -> Tensor:
        z = torch.randn(
            (int(self.lam), self.dim), generator=self.generator, device=self.device, dtype=F64
        )
        self._y = (z * self.D) @ self.B.T  # y ~ N(0, C)
        return (self.m + self.sigma * self._y).to(self.dtype)

    def _tell(self, x: Tensor, fitness: Tensor, descriptors: Tensor | None) -> None:
        k = self._consts()
        mu, w, mueff = k["mu"], k["w"], k["mueff"]
        cs, cc, c1, cmu = k["cs"], k["cc"], k["c1"], k["cmu"]
        order = torch.argsort(fitness, stable=True)
        y = self._y[order[:mu]]
        yw = w @ y
        self.m = self.m + self.sigma * yw
        # evolution paths; C^{-1/2} y = B D^{-1} B^T y
        c_inv_sqrt_yw = self.B @ ((self.B.T @ yw) / self.D)
        self.ps = (1 - cs) * self.ps + math.sqrt(cs * (2 - cs) * mueff) * c_inv_sqrt_yw
        self.g_run += 1
        g = int(self.g_run)
        ps_norm = float(self.ps.norm())
        hsig = ps_norm / math.sqrt(1 - (1 - cs) ** (2 * g)) / k["chin"] < 1.4 + 2 / (self.dim + 1)
        self.pc = (1 - cc) * self.pc + float(hsig) * math.sqrt(cc * (2 - cc) * mueff) * yw
        # rank-one + rank-mu update; the (1-hsig) term compensates the stalled pc
        rank_mu = (y * w[:, None]).T @ y
        delta = (1 - float(hsig)) * cc * (2 - cc)
        self.C = (1 - c1 - cmu + c1 * delta) * self.C + c1 * torch.outer(self.pc, self.pc)
        self.C = self.C + cmu * rank_mu
        self.sigma = self.sigma * math.exp((cs / k["damps"]) * (ps_norm / k["chin"] - 1))
        if g - int(self.eigen_gen) > int(self.lam) / ((c1 + cmu) * self.dim * 10):
            self._eigen()
        self._y = None
        if int(self.hp["restarts"]) > 0:
            best = fitness[order[0]].to(F64).reshape(1)
            hlen = 10 + math.ceil(30 * self.dim / int(self.lam))
            self.hist = torch.cat([self.hist, best])[-hlen:]
            if self._should_stop(fitness, hlen):
                self._restart()

    def _eigen(self) -> None:
        self.C = torch.triu(self.C) + torch.triu(self.C, 1).T  # enforce symmetry
        evals, self.B = torch.linalg.eigh(self.C)
        self.D = evals.clamp_min(1e-30).sqrt()
        self.eigen_gen = self.g_run.clone()

    def _should_stop(self, fitness: Tensor, hlen: int) -> bool:
        sigma = float(self.sigma)
        if sigma * float(self.D.max()) < self.hp["tolx"] * float(self.hp["sigma_init"]):
            return True
        if float(self.D.max() / self.D.min()) ** 2 > 1e14:
            return True
        finite = fitness[torch.isfinite(fitness)]
        if self.hist.numel() >= hlen and finite.numel() > 0:
            span = max(float(self.hist.max() - self.hist.min()), float(finite.max() - finite.min()))
            if span < self.hp["tolfun"]:
                return True
        return not math.isfinite(sigma)

    def _restart(self) -> None:
        if int(self.restarts_done) >= int(self.hp["restarts"]):
            return
        self.restarts_done += 1
        self.lam = self.lam * int(self.hp["ipop_factor"])
        self.popsize = int(self.lam)
        z = torch.randn(self.dim, generator=self.generator, device=self.device, dtype=F64)
        self._reset_run(self.x0 + float(self.hp["sigma_init"]) * z)
