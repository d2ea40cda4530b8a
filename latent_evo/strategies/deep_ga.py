"""Deep GA: Petroski Such, Madhavan, Conti, Lehman, Stanley & Clune (2017), "Deep
Neuroevolution: Genetic Algorithms Are a Competitive Alternative for Training Deep Neural
Networks for Reinforcement Learning", arXiv:1712.06567.

Truncation selection (``truncation`` best become parents), Gaussian mutation only, one elite
carried over (and re-evaluated). Genomes use the paper's **compact encoding**: an individual is
its list of seeds ``[s0, s1, ..., sk]`` and decodes deterministically as

    x = x0 + init_scale · ε(s0) + σ · Σ_{i>=1} ε(s_i)

where ``x0`` is the start ``mean`` (zeros by default) and ``ε(s)`` a standard-normal vector
that is a pure function of ``s`` (a torch.Generator seeded with ``s``; decode on the device type
the run used, since CPU and CUDA generators differ). State is an int64 ``(P, generations + 1)`` seed
tensor, so a population of million-weight networks checkpoints as a few KB; ``decode(seeds)``
rebuilds any individual. A decoded copy of the current population is cached (rebuilt
after ``load_state_dict``, bit-identically because the additions happen in the same order) so a
generation costs O(P d) instead of O(P d · generations).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .base import Strategy


def seed_noise(seeds: Tensor, dim: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """``(n,)`` non-negative int64 seeds -> ``(n, dim)`` standard-normal rows, row ``i`` a pure
    function of ``seeds[i]`` (and of the device type: CPU and CUDA generators differ).

    One ``randn`` call per seed, each vectorised over ``dim``: a counter-based hash vectorised
    over seeds too was tried and was 25x slower on CPU at d = 1e6 (a dozen int64 passes over
    memory per value versus one fused Box-Muller pass)."""
    out = torch.empty((seeds.shape[0], dim), device=seeds.device, dtype=dtype)
    g = torch.Generator(device=seeds.device)
    for i, s in enumerate(seeds.tolist()):
        g.manual_seed(int(s))
        torch.randn((dim,), generator=g, out=out[i])
    return out


class DeepGA(Strategy):
    name = "deep_ga"
    state_names = ("x0", "seeds", "fitness", "_pending_seeds")
    default_hparams: dict[str, Any] = {
        "sigma": 0.1,
        "init_scale": 1.0,
        "truncation": 0.2,  # fraction (< 1) or number (>= 1) of parents
        "elitism": 1,
    }

    def _check_hparams(self) -> None:
        self._pop: Tensor | None = None  # decoded cache of `seeds`, derived state

    # ---------------------------------------------------------------- encoding
    def _new_seeds(self, n: int) -> Tensor:
        return torch.randint(
            0, 2**62, (n,), generator=self.generator, device=self.device, dtype=torch.int64
        )

    def decode(self, seeds: Tensor, chunk: int = 64) -> Tensor:
        """``(n, L)`` seed lists (``-1`` = padding) -> ``(n, d)`` genomes; ``(L,)`` -> ``(d,)``."""
        single = seeds.ndim == 1
        seeds = torch.as_tensor(seeds, device=self.device).reshape(-1, seeds.shape[-1])
        out = []
        for s in seeds.split(chunk):  # chunks bound the memory of the (chunk, d) noise
            x = self.x0.expand(s.shape[0], -1).clone()
            for j in range(s.shape[1]):
                col = s[:, j]
                scale = self.hp["init_scale"] if j == 0 else self.hp["sigma"]
                valid = col >= 0  # -1 pads the lists of elites
                x[valid] = x[valid] + scale * seed_noise(col[valid], self.dim, self.dtype)
            out.append(x)
        x = torch.cat(out).to(self.dtype)
        return x[0] if single else x

    # ---------------------------------------------------------------- state
    def _init_state(self, mean: Tensor | None, population: Tensor | None) -> None:
        if population is not None:
            raise ValueError("deep_ga: genomes are seed lists; init with mean=..., not population")
        self.x0 = (
            torch.zeros(self.dim, device=self.device, dtype=self.dtype) if mean is None else mean
        )
        self.seeds = self._new_seeds(self.popsize)[:, None]
        self.fitness = None
        self._pop = None

    def _after_load(self) -> None:
        self._pop = None if self.seeds is None else self.decode(self.seeds)

    def _population(self) -> Tensor:
        if self._pop is None:
            self._pop = self.decode(self.seeds)
        return self._pop

    def _get_mean(self) -> Tensor:
        pop = self._population()
        return pop.mean(0) if self.fitness is None else pop[torch.argmin(self.fitness)]

    def _set_mean(self, mean: Tensor) -> None:
        # re-centring moves x0, i.e. every decoded genome shifts by the same vector
        self.x0 = self.x0 + (mean - self._get_mean())
        self._pop = None

    # ---------------------------------------------------------------- ask / tell
    def _ask(self) -> Tensor:
        pop = self._population()
        if self.fitness is None:
            self._pending_seeds = self.seeds
            return pop
        t = self.hp["truncation"]
        n_par = int(t) if t >= 1 else max(1, int(round(t * self.popsize)))
        n_el = int(self.hp["elitism"])
        order = torch.argsort(self.fitness, stable=True)
        parents = order[:n_par]
        pick = parents[
            torch.randint(
                0, n_par, (self.popsize - n_el,), generator=self.generator, device=self.device
            )
        ]
        new = self._new_seeds(self.popsize - n_el)
        # children append one seed; elites append -1 (padding) so all lists stay equally long
        pad = torch.full((n_el, 1), -1, dtype=torch.int64, device=self.device)
        self._pending_seeds = torch.cat(
            [
                torch.cat([self.seeds[order[:n_el]], pad], 1),
                torch.cat([self.seeds[pick], new[:, None]], 1),
            ]
        )
        child = pop[pick] + self.hp["sigma"] * seed_noise(new, self.dim, self.dtype)
        return torch.cat([pop[order[:n_el]], child])

    def _tell(self, x: Tensor, fitness: Tensor, descriptors: Tensor | None) -> None:
        self.seeds = self._pending_seeds
        self.fitness = fitness
        self._pop = x
