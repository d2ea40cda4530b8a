"""NS-ES, NSR-ES and NSRA-ES: Conti, Madhavan, Petroski Such, Lehman, Stanley & Clune (2018),
"Improving Exploration in Evolution Strategies for Deep Reinforcement Learning via a Population
of Novelty-Seeking Agents", NeurIPS (arXiv:1712.06560).

A meta-population of ``num_centres`` ES centres; each generation one centre is picked with
probability proportional to its novelty and takes an OpenAI-ES step (antithetic noise, centred
ranks, Adam) on the utility ``w · rank(-fitness) + (1 - w) · rank(novelty)``:

* NS-ES: ``w = 0`` (pure novelty), NSR-ES: ``w = 0.5``, NSRA-ES: ``w`` starts at
  ``fitness_weight`` (1.0) and moves by ``weight_delta``: up when the centre's fitness improves,
  down after ``patience`` generations without improvement.

Novelty of a behaviour descriptor = mean distance to its ``k`` nearest neighbours in an archive
of the descriptors of past centres (a ring buffer of ``archive_size`` rows). Descriptors come
from ``tell(fitness, descriptors=(P, b))``; without them the candidates themselves are used, so
the strategies run on plain benchmarks (for large ``d``, pass low-dimensional descriptors: the
archive then stores ``b``-sized rows instead of ``d``-sized ones).

So that the centre's own behaviour is measured exactly, row 0 of every ``ask`` is the chosen
centre itself (unperturbed); the other ``P - 1`` rows are its perturbations. Default start:
centre 0 at ``mean`` (zeros), the others at ``mean + sigma_init · N(0, I)``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .base import Strategy
from .gaussian import antithetic_noise
from .shaping import adam_update, centered_ranks


class NSES(Strategy):
    name = "ns_es"
    state_names = (
        "centres", "adam_m", "adam_v", "adam_t", "centre_novelty", "centre_fitness", "archive",
        "archive_count", "weight", "best_centre_fitness", "stall", "_eps", "_idx",
    )  # fmt: skip
    default_hparams: dict[str, Any] = {
        "sigma_init": 0.1,
        "lr": 0.05,
        "num_centres": 3,
        "k": 10,
        "archive_size": 1000,
        "fitness_weight": 0.0,
        "weight_delta": 0.05,
        "patience": 10,
        "beta1": 0.9,
        "beta2": 0.999,
    }
    min_popsize = 3
    adaptive = False

    def _init_state(self, mean: Tensor | None, population: Tensor | None) -> None:
        if population is not None:
            mean = population.mean(0)
        m = int(self.hp["num_centres"])
        if mean is None:
            mean = torch.zeros(self.dim, device=self.device, dtype=self.dtype)
        spread = self.hp["sigma_init"] * self.randn(m, self.dim)
        spread[0] = 0
        self.centres = mean + spread
        self.adam_m = torch.zeros_like(self.centres)
        self.adam_v = torch.zeros_like(self.centres)
        self.adam_t = torch.zeros(m, dtype=torch.int64)
        self.centre_novelty = torch.ones(m, device=self.device, dtype=self.dtype)
        self.centre_fitness = torch.full_like(self.centre_novelty, float("inf"))
        self.archive_count = torch.zeros((), dtype=torch.int64)
        self.weight = torch.tensor(float(self.hp["fitness_weight"]), dtype=torch.float64)
        self.best_centre_fitness = torch.tensor(float("inf"), dtype=torch.float64)
        self.stall = torch.zeros((), dtype=torch.int64)

    def _get_mean(self) -> Tensor:
        if bool(torch.isfinite(self.centre_fitness).any()):
            return self.centres[torch.argmin(self.centre_fitness)]
        return self.centres[0]

    def _set_mean(self, mean: Tensor) -> None:
        self.centres = self.centres + (mean - self._get_mean())

    # ---------------------------------------------------------------- novelty
    def novelty(self, descriptors: Tensor) -> Tensor:
        """Mean distance of each descriptor row to its k nearest archive entries (0 if the
        archive is empty)."""
        if self.archive is None or self.archive.shape[0] == 0:
            return torch.zeros(descriptors.shape[0], device=self.device, dtype=self.dtype)
        dist = torch.cdist(descriptors, self.archive)
        k = min(int(self.hp["k"]), self.archive.shape[0])
        return dist.topk(k, dim=1, largest=False).values.mean(1)

    def _add_to_archive(self, desc: Tensor) -> None:
        cap = int(self.hp["archive_size"])
        if self.archive is None:
            self.archive = desc[None].clone()
        elif self.archive.shape[0] < cap:
            self.archive = torch.cat([self.archive, desc[None]])
        else:  # ring buffer: overwrite the oldest entry
            self.archive[int(self.archive_count) % cap] = desc
        self.archive_count += 1

    def _check_descriptors(self, descriptors: Tensor | None) -> None:
        b = self.dim if descriptors is None else descriptors.shape[1]
        if self.archive is not None and self.archive.shape[1] != b:
            raise ValueError(
                f"{self.name}: descriptors have {b} dims, the archive holds {self.archive.shape[1]}"
            )

    # ---------------------------------------------------------------- ask / tell
    def _ask(self) -> Tensor:
        p = self.centre_novelty.clamp_min(0).double()
        p = p if float(p.sum()) > 0 else torch.ones_like(p)
        self._idx = torch.multinomial(p, 1, generator=self.generator).cpu()
        centre = self.centres[int(self._idx)]
        self._eps = antithetic_noise(self, self.popsize - 1)
        return torch.cat([centre[None], centre + self.hp["sigma_init"] * self._eps])

    def _tell(self, x: Tensor, fitness: Tensor, descriptors: Tensor | None) -> None:
        i = int(self._idx)
        desc = x if descriptors is None else descriptors
        # the centre's novelty w.r.t. the archive before its own behaviour is added
        self.centre_novelty[i] = self.novelty(desc[:1])[0] if self.archive is not None else 1.0
        self.centre_fitness[i] = fitness[0]
        self._add_to_archive(desc[0])
        nov = self.novelty(desc[1:])
        w = float(self.weight)
        u = w * -centered_ranks(fitness[1:]) + (1 - w) * centered_ranks(nov)
        grad = (u @ self._eps) / ((self.popsize - 1) * self.hp["sigma_init"])
        m, v, t = self.adam_m[i], self.adam_v[i], self.adam_t[i : i + 1]
        step = adam_update(-grad, m, v, t, self.hp["lr"], self.hp["beta1"], self.hp["beta2"])
        self.centres[i] -= step
        if self.adaptive:
            self._adapt_weight(float(fitness[0]))
        self._eps = self._idx = None

    def _adapt_weight(self, centre_fitness: float) -> None:
        delta = float(self.hp["weight_delta"])
        if centre_fitness < float(self.best_centre_fitness):
            self.best_centre_fitness.fill_(centre_fitness)
            self.weight.fill_(min(1.0, float(self.weight) + delta))
            self.stall.zero_()
        else:
            self.stall += 1
            if int(self.stall) >= int(self.hp["patience"]):
                self.weight.fill_(max(0.0, float(self.weight) - delta))
                self.stall.zero_()


class NSRES(NSES):
    name = "nsr_es"
    default_hparams = {**NSES.default_hparams, "fitness_weight": 0.5}


class NSRAES(NSES):
    name = "nsra_es"
    default_hparams = {**NSES.default_hparams, "fitness_weight": 1.0}
    adaptive = True
