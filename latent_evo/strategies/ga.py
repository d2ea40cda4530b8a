"""Genetic algorithm with composable operators (Holland 1975; Goldberg 1989; cf. PyGAD).

One generation: select parents from the evaluated population, recombine pairs with a crossover
(applied with probability ``crossover_rate``, else the child copies its first parent), mutate,
clip to ``bounds``, keep the ``elitism`` best unchanged. Everything is batched over the
population. Operators are picked by name:

* ``selection``: tournament | truncation | rank | roulette | sus | steady_state
* ``crossover``: uniform | one_point | two_point | arithmetic | blend (BLX-α) | sbx | segment
  (whole tensors swapped; needs ``segments=[numel of each tensor]``, e.g. from a GenomeSpec)
* ``mutation``: gaussian (fixed σ) | self_adaptive (one log-normally mutated σ per individual,
  Schwefel 1981) | one_fifth (global σ adapted by Rechenberg's 1/5 success rule) | adaptive
  (PyGAD-style: children of better-than-average parents mutate with ``mutation_rate_good``,
  the others with ``mutation_rate_bad``) | reset (genes redrawn at random)
* ``replacement``: generational (offspring replace parents, elites re-evaluated) | plus
  ((μ+λ): the best ``P`` of parents ∪ offspring survive; elitist by construction).

The default start is ``N(0, I) * init_scale`` (around ``mean`` if ``init(mean=...)``); the first
``ask`` returns that population itself so that it gets evaluated.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from . import operators as ops
from .base import PopulationStrategy

MUTATIONS = ("gaussian", "self_adaptive", "one_fifth", "adaptive", "reset")
REPLACEMENTS = ("generational", "plus")


class GA(PopulationStrategy):
    name = "ga"
    state_names = ("population", "fitness", "sigmas", "sigma", "_parent_fitness", "_child_sigmas")
    default_hparams: dict[str, Any] = {
        "init_scale": 1.0,
        "selection": "tournament",
        "tournament_size": 3,
        "truncation_frac": 0.5,
        "rank_pressure": 1.5,
        "steady_state_parents": 0,
        "crossover": "uniform",
        "crossover_rate": 0.9,
        "blx_alpha": 0.5,
        "sbx_eta": 15.0,
        "segments": None,
        "mutation": "gaussian",
        "mutation_sigma": 0.1,
        "mutation_rate": 1.0,
        "mutation_rate_good": 0.1,
        "mutation_rate_bad": 0.5,
        "sigma_min": 1e-8,
        "sigma_max": 1e3,
        "elitism": 1,
        "replacement": "generational",
        "bounds": None,
        # components of the genome (sizes, in order) each mutated with its own probability per
        # child: [latent size, decoder part] with [1.0, 0.2] mutates a child's decoder part
        # one time in five (Risi & Stanley 2019's multi-component mutation)
        "groups": None,
        "group_mutation_prob": None,
    }

    def _check_hparams(self) -> None:
        hp = self.hp
        for key, valid in (
            ("selection", tuple(ops.SELECTIONS)),
            ("crossover", tuple(ops.CROSSOVERS)),
            ("mutation", MUTATIONS),
            ("replacement", REPLACEMENTS),
        ):
            if hp[key] not in valid:
                raise ValueError(
                    f"ga: unknown {key} {hp[key]!r}; valid ones are: {', '.join(valid)}"
                )
        if hp["crossover"] == "segment":
            if hp["segments"] is None:
                raise ValueError("ga: crossover='segment' needs segments=[numel of each tensor]")
            if sum(int(s) for s in hp["segments"]) != self.dim:
                raise ValueError(f"ga: segments sum to {sum(hp['segments'])}, dim is {self.dim}")
        if (hp["groups"] is None) != (hp["group_mutation_prob"] is None):
            raise ValueError("ga: groups and group_mutation_prob go together")
        if hp["groups"] is not None:
            if sum(int(s) for s in hp["groups"]) != self.dim:
                raise ValueError(f"ga: groups sum to {sum(hp['groups'])}, dim is {self.dim}")
            probs = hp["group_mutation_prob"]
            if len(probs) != len(hp["groups"]) or any(not 0 <= float(p) <= 1 for p in probs):
                raise ValueError(
                    f"ga: group_mutation_prob needs {len(hp['groups'])} values in [0, 1], "
                    f"got {probs}"
                )
        if not 0 <= int(hp["elitism"]) < self.popsize:
            raise ValueError(f"ga: elitism must be in [0, popsize), got {hp['elitism']}")

    # ---------------------------------------------------------------- state
    def _init_state(self, mean: Tensor | None, population: Tensor | None) -> None:
        if population is not None:
            if population.shape[0] != self.popsize:
                raise ValueError(
                    f"ga: initial population has {population.shape[0]} rows, popsize is {self.popsize}"
                )
            self.population = population
        else:
            centre = mean if mean is not None else torch.zeros(self.dim, device=self.device)
            pop = centre + self.hp["init_scale"] * self.randn(self.popsize, self.dim)
            if self.hp["bounds"] is not None:  # the random start respects the bounds too
                pop = pop.clamp(self.hp["bounds"][0], self.hp["bounds"][1])
            self.population = pop
        s = float(self.hp["mutation_sigma"])
        self.sigmas = torch.full((self.popsize,), s, device=self.device, dtype=self.dtype)
        self.sigma = torch.tensor(s, device=self.device, dtype=self.dtype)
        self.fitness = None

    def _get_mean(self) -> Tensor:
        if self.fitness is None:
            return self.population.mean(0)
        return self.population[torch.argmin(self.fitness)]

    def _set_mean(self, mean: Tensor) -> None:
        # translate the whole population: relative structure (diversity) is preserved
        self.population = self.population + (mean - self._get_mean())

    def _set_population(self, population: Tensor) -> None:
        if population.shape[0] != self.popsize:
            raise ValueError(
                f"ga: population has {population.shape[0]} rows, popsize is {self.popsize}"
            )
        # fitness is kept: a re-encoded population stands for the same phenotypes
        self.population = population

    # ---------------------------------------------------------------- operators
    def _select(self, n: int) -> Tensor:
        hp, f, g = self.hp, self.fitness, self.generator
        sel = hp["selection"]
        if sel == "tournament":
            return ops.tournament_selection(f, n, g, size=int(hp["tournament_size"]))
        if sel == "truncation":
            return ops.truncation_selection(f, n, g, frac=float(hp["truncation_frac"]))
        if sel == "rank":
            return ops.rank_selection(f, n, g, pressure=float(hp["rank_pressure"]))
        if sel == "steady_state":
            return ops.steady_state_selection(f, n, g, k=int(hp["steady_state_parents"]))
        return ops.SELECTIONS[sel](f, n, g)

    def _crossover(self, a: Tensor, b: Tensor) -> Tensor:
        hp, g = self.hp, self.generator
        cx = hp["crossover"]
        if cx == "blend":
            child = ops.blend_crossover(a, b, g, alpha=float(hp["blx_alpha"]))
        elif cx == "sbx":
            child = ops.sbx_crossover(a, b, g, eta=float(hp["sbx_eta"]), bounds=hp["bounds"])
        elif cx == "segment":
            child = ops.segment_crossover(a, b, g, hp["segments"])
        else:
            child = ops.CROSSOVERS[cx](a, b, g)
        skip = torch.rand(a.shape[0], generator=g, device=self.device) >= hp["crossover_rate"]
        child[skip] = a[skip]  # row-wise, in place: no extra (P, d) temporary
        return child

    def _mutate(self, x: Tensor, parents: Tensor) -> tuple[Tensor, Tensor]:
        """Returns the mutated children and their step sizes (for self-adaptation)."""
        hp, g, n = self.hp, self.generator, x.shape[0]
        kind = hp["mutation"]
        rate: Tensor | float = float(hp["mutation_rate"])
        sig = self.sigmas[parents]
        if kind == "reset":
            out = ops.reset_mutation(x, rate, g, scale=float(hp["init_scale"]), bounds=hp["bounds"])
            return out, sig
        if kind == "self_adaptive":
            tau = 1.0 / math.sqrt(self.dim)  # learning rate of a single σ (Schwefel)
            sig = (sig * torch.exp(tau * self.randn(n))).clamp(hp["sigma_min"], hp["sigma_max"])
            sigma: Tensor | float = sig[:, None]
        elif kind == "one_fifth":
            sigma = self.sigma
        else:
            sigma = float(hp["mutation_sigma"])
        if kind == "adaptive":
            pf = self.fitness[parents]
            finite = torch.isfinite(self.fitness)
            avg = self.fitness[finite].mean() if bool(finite.any()) else pf.new_tensor(math.inf)
            good = (pf <= avg)[:, None]
            rate = torch.where(good, hp["mutation_rate_good"], hp["mutation_rate_bad"]).to(x.dtype)
        return ops.gaussian_mutation(x, sigma, rate, g), sig

    def _gate_groups(self, child: Tensor, mutated: Tensor) -> Tensor:
        """Per child and genome component, keep the mutation with the component's probability."""
        if self.hp["groups"] is None:
            return mutated
        sizes = torch.tensor([int(s) for s in self.hp["groups"]], device=self.device)
        probs = torch.tensor(self.hp["group_mutation_prob"], device=self.device, dtype=self.dtype)
        keep = self.rand(child.shape[0], len(sizes)) < probs  # (n, groups)
        mask = keep.repeat_interleave(sizes, dim=1)  # (n, d)
        return torch.where(mask, mutated, child)

    # ---------------------------------------------------------------- ask / tell
    def _ask(self) -> Tensor:
        if self.fitness is None:  # the initial population is evaluated first
            return self.population
        hp = self.hp
        n_el = int(hp["elitism"]) if hp["replacement"] == "generational" else 0
        n_off = self.popsize - n_el
        pa, pb = self._select(n_off), self._select(n_off)
        child = self._crossover(self.population[pa], self.population[pb])
        mutated, child_sig = self._mutate(child, pa)
        child = self._gate_groups(child, mutated)
        if hp["bounds"] is not None:
            child = child.clamp(hp["bounds"][0], hp["bounds"][1])
        elite = torch.argsort(self.fitness, stable=True)[:n_el]
        self._parent_fitness = torch.cat([self.fitness[elite], self.fitness[pa]])
        self._child_sigmas = torch.cat([self.sigmas[elite], child_sig])
        return torch.cat([self.population[elite], child])

    def _tell(self, x: Tensor, fitness: Tensor, descriptors: Tensor | None) -> None:
        hp = self.hp
        if self.fitness is None:
            self.population, self.fitness = x, fitness
            return
        if hp["mutation"] == "one_fifth":
            n_el = int(hp["elitism"]) if hp["replacement"] == "generational" else 0
            ps = (fitness[n_el:] < self._parent_fitness[n_el:]).to(self.dtype).mean()
            # σ grows when more than 1/5 of the offspring beat their parent, shrinks otherwise
            self.sigma = (self.sigma * torch.exp(0.5 * (ps - 0.2) / 0.8)).clamp(
                hp["sigma_min"], hp["sigma_max"]
            )
        sig = self._child_sigmas
        if hp["replacement"] == "plus":
            allx = torch.cat([self.population, x])
            allf = torch.cat([self.fitness, fitness])
            alls = torch.cat([self.sigmas, sig])
            keep = torch.argsort(allf, stable=True)[: self.popsize]
            self.population, self.fitness, self.sigmas = allx[keep], allf[keep], alls[keep]
        else:
            self.population, self.fitness, self.sigmas = x, fitness, sig
        self._parent_fitness = self._child_sigmas = None
