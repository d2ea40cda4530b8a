"""The search benchmark's non-evolution baselines, on the same counted budget as the evolution
runs: SGD (the gradient reference) and the memorisation baselines (best zoo checkpoint, the same
plus tuned Gaussian noise, the average of the top zoo checkpoints, the best of N prior samples).
`Tracker` counts evaluations and logs test accuracy for them and for the external libraries."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch


class Tracker:
    """Best-so-far (by training fitness) over a stream of evaluated genomes -> a curve of
    (evaluations, test accuracy of the current best), for the non-`evolve` baselines."""

    def __init__(self, task, log_every: int):
        self.task, self.log_every = task, log_every
        self.evaluations, self.best_f, self.best_g = 0, math.inf, None
        self.history: list[dict[str, float]] = []
        self._next = log_every

    def add(self, genomes: torch.Tensor, force_log: bool = False) -> float:
        """Evaluate (counted), update the best; returns the batch's best training loss."""
        return float(self.fitness(genomes, force_log).min())

    def fitness(self, genomes: torch.Tensor, force_log: bool = False) -> torch.Tensor:
        """`(P, n)` genomes -> `(P,)` training losses, counted and tracked (NaN counts as worst)."""
        out = []
        for s in range(0, len(genomes), 256):
            g = genomes[s : s + 256]
            with torch.no_grad():
                f = torch.nan_to_num(self.task.fitness_genomes(g), nan=math.inf)
            out.append(f)
            self.evaluations += len(g)
            i = int(torch.argmin(f))
            if float(f[i]) < self.best_f:
                self.best_f, self.best_g = float(f[i]), g[i].clone()
            if self.evaluations >= self._next or force_log:
                self.log()
                while self._next <= self.evaluations:
                    self._next += self.log_every
        return torch.cat(out)

    def log(self) -> None:
        m = self.task.evaluate(self.best_g)
        self.history.append({"evaluations": self.evaluations, "best_fitness": self.best_f, **m})

    def result(self, wall: float, **extra: Any) -> dict[str, Any]:
        if not self.history or self.history[-1]["evaluations"] != self.evaluations:
            self.log()
        return {
            "history": self.history,
            "evaluations": self.evaluations,
            "best_fitness": self.best_f,
            "test": self.task.evaluate(self.best_g),
            "wall_s": wall,
            **extra,
        }


def zoo_genomes(zoo: Path, spec) -> tuple[torch.Tensor, str]:
    """The zoo's last checkpoint of every trained network (networks stop at different epochs)."""
    from latent_evo.zoo.dataset import ZooDataset

    ds = ZooDataset(zoo, split="all")
    idx = ds.final_checkpoints()
    g = ds.genomes(idx).to(spec.dtype)
    return (
        g,
        f"the last checkpoint of each of the {len(idx)} networks of {zoo.name} ({len(ds)} checkpoints in all)",
    )


def run_baseline(
    name: str, task, comp, zoo: Path, budget: int, seed: int, log_every: int, sgd_steps: int
) -> dict[str, Any]:
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    if name == "sgd":
        from latent_evo.tasks.sgd import run_sgd

        torch.manual_seed(seed)
        r = run_sgd(task, sgd_steps, lr=1e-3, seed=seed)
        return {
            "history": [], "evaluations": None, "test": r["test"], "wall_s": r["wall_s"],
            "note": f"{sgd_steps} Adam steps (lr 1e-3) on minibatches of 128; gradient "
                    "evaluations, not counted in the budget",
            "sgd_history": r["history"],
        }  # fmt: skip
    tr = Tracker(task, log_every)
    if name == "prior-best-of-n":
        for s in range(0, budget, 256):
            n = min(256, budget - s)
            with torch.no_grad():
                z = comp.sample(n, gen)
                tr.add(comp.decode_genomes(z))
        return tr.result(time.perf_counter() - t0, note=f"N = {budget} samples z ~ prior")
    zg, desc = zoo_genomes(zoo, task.spec)
    with torch.no_grad():
        fz = torch.cat([task.fitness_genomes(zg[s : s + 256]) for s in range(0, len(zg), 256)])
    order = torch.argsort(fz)
    if name == "zoo-best":
        tr.add(zg, force_log=True)  # every checkpoint's training fitness is a true evaluation
        return tr.result(time.perf_counter() - t0, note=f"argmin training loss over {desc}")
    if name == "zoo-avg-top":
        tr.add(zg, force_log=True)
        ks = [k for k in (2, 4, 8, 16, 32) if k <= len(zg)]
        tr.add(torch.stack([zg[order[:k]].mean(0) for k in ks]), force_log=True)
        return tr.result(
            time.perf_counter() - t0,
            note=f"mean weights of the top k by training loss, k in {ks}; best kept ({desc})",
        )
    if name == "zoo-best-noise":
        tr.add(zg, force_log=True)
        best = zg[order[0]]
        sigmas = (0.001, 0.003, 0.01, 0.03, 0.1)
        per = max((budget - len(zg)) // len(sigmas), 1)
        per_sigma = {}
        for sigma in sigmas:  # σ tuned by spending the remaining budget on a grid
            g = best + sigma * torch.randn(per, best.numel(), generator=gen)
            per_sigma[sigma] = tr.add(g)
        best_sigma = min(per_sigma, key=per_sigma.get)
        return tr.result(
            time.perf_counter() - t0,
            note=f"{per} noisy copies per σ in {sigmas}; best σ {best_sigma} ({desc})",
            best_sigma=best_sigma,
        )
    raise ValueError(f"unknown baseline {name!r}")
