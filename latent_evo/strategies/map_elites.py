"""MAP-Elites: Mouret & Clune (2015), "Illuminating search spaces by mapping elites",
arXiv:1504.04909; variation operator: Vassiliades & Mouret (2018), "Discovering the Elite
Hypervolume by Leveraging Interspecies Correlation" (Iso+LineDD), GECCO.

Quality-diversity: a grid over behaviour descriptors (``grid_shape`` cells spanning
``descriptor_bounds``; out-of-bounds descriptors fall into the edge cells) keeps the best
candidate (elite) found in each cell. Each ``ask`` picks parents uniformly among the filled
cells and varies them with ``x_i + σ_iso N(0, I) + σ_line N(0, 1) (x_j - x_i)``; ``tell`` inserts
every candidate that beats its cell's elite (the best of several candidates landing in the same
cell wins, deterministically). Descriptors come from ``tell(fitness, descriptors=(P, b))``;
without them the first ``b = len(grid_shape)`` coordinates of the candidates are used.
Default start: the first population is ``mean + init_scale · N(0, I)`` (mean = 0).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .base import Strategy


class MAPElites(Strategy):
    name = "map_elites"
    state_names = ("elites", "elite_fitness", "centre", "_init_pop")
    default_hparams: dict[str, Any] = {
        "grid_shape": (32, 32),
        "descriptor_bounds": (-3.0, 3.0),
        "init_scale": 1.0,
        "iso_sigma": 0.1,
        "line_sigma": 0.2,
    }

    def _check_hparams(self) -> None:
        shape = tuple(int(s) for s in self.hp["grid_shape"])
        if self.dim < len(shape) and "grid_shape" not in self._user_hparams:
            shape = shape[: self.dim]  # default 2-D grid on a 1-D space: use a 1-D grid
        if not shape or min(shape) < 1:
            raise ValueError(f"map_elites: grid_shape must be positive ints, got {shape}")
        self.grid_shape = shape
        lo, hi = self.hp["descriptor_bounds"]
        b = len(shape)
        self.lo = torch.as_tensor(lo, device=self.device, dtype=self.dtype).expand(b).clone()
        self.hi = torch.as_tensor(hi, device=self.device, dtype=self.dtype).expand(b).clone()
        if bool((self.hi <= self.lo).any()):
            raise ValueError(f"map_elites: descriptor_bounds need lo < hi, got {(lo, hi)}")
        self.n_cells = math.prod(shape)

    def _init_state(self, mean: Tensor | None, population: Tensor | None) -> None:
        self.centre = torch.zeros(self.dim, device=self.device, dtype=self.dtype)
        if mean is not None:
            self.centre = mean
        self.elites = torch.zeros(self.n_cells, self.dim, device=self.device, dtype=self.dtype)
        self.elite_fitness = torch.full(
            (self.n_cells,), math.inf, device=self.device, dtype=self.dtype
        )
        self._init_pop = population

    @property
    def filled(self) -> Tensor:
        """Boolean mask of the grid cells that hold an elite."""
        return torch.isfinite(self.elite_fitness)

    def _get_mean(self) -> Tensor:
        if bool(self.filled.any()):
            return self.elites[torch.argmin(self.elite_fitness)]
        return self.centre

    def _set_mean(self, mean: Tensor) -> None:
        shift = mean - self._get_mean()
        self.centre = self.centre + shift
        self.elites = self.elites + shift  # descriptors are re-measured when re-evaluated

    def cell_index(self, descriptors: Tensor) -> Tensor:
        """Flat grid-cell index of each descriptor row (clamped into the grid)."""
        shape = torch.tensor(self.grid_shape, device=self.device)
        frac = (descriptors - self.lo) / (self.hi - self.lo)
        ij = (frac * shape).floor().long().clamp(min=torch.zeros_like(shape), max=shape - 1)
        strides = torch.tensor(
            [math.prod(self.grid_shape[i + 1 :]) for i in range(len(self.grid_shape))],
            device=self.device,
        )
        return (ij * strides).sum(1)

    def _ask(self) -> Tensor:
        filled = torch.nonzero(self.filled).squeeze(1)
        if filled.numel() == 0:
            pop = getattr(self, "_init_pop", None)
            if pop is not None and pop.shape[0] == self.popsize:
                return pop
            return self.centre + self.hp["init_scale"] * self.randn(self.popsize, self.dim)
        n = filled.numel()
        pick = torch.randint(0, n, (2, self.popsize), generator=self.generator, device=self.device)
        xi, xj = self.elites[filled[pick[0]]], self.elites[filled[pick[1]]]
        iso = self.hp["iso_sigma"] * self.randn(self.popsize, self.dim)
        line = self.hp["line_sigma"] * self.randn(self.popsize, 1) * (xj - xi)
        return xi + iso + line

    def _check_descriptors(self, descriptors: Tensor | None) -> None:
        b = len(self.grid_shape)
        if descriptors is not None and descriptors.shape[1] != b:
            raise ValueError(
                f"map_elites: descriptors must have {b} columns (len(grid_shape)), "
                f"got {descriptors.shape[1]}"
            )

    def _tell(self, x: Tensor, fitness: Tensor, descriptors: Tensor | None) -> None:
        b = len(self.grid_shape)
        desc = x[:, :b] if descriptors is None else descriptors
        cells = self.cell_index(desc)
        # best candidate per cell, deterministically: sort by fitness, keep the first per cell
        order = torch.argsort(fitness, stable=True)
        c_sorted = cells[order]
        first = torch.full((self.n_cells,), x.shape[0], device=self.device, dtype=torch.long)
        pos = torch.arange(x.shape[0], device=self.device)
        first = first.scatter_reduce(0, c_sorted, pos, reduce="amin")
        has = first < x.shape[0]
        cand_cells = torch.nonzero(has).squeeze(1)
        winners = order[first[cand_cells]]
        better = fitness[winners] < self.elite_fitness[cand_cells]
        cand_cells, winners = cand_cells[better], winners[better]
        self.elites[cand_cells] = x[winners]
        self.elite_fitness[cand_cells] = fitness[winners]
        self._init_pop = None
