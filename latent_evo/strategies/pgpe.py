"""PGPE: Sehnke, Osendorfer, Rückstieß, Graves, Peters & Schmidhuber (2010), "Parameter-exploring
policy gradients", Neural Networks 23(4).

Separable Gaussian ``N(μ, diag(σ²))`` with symmetric sampling: each pair is ``μ ± ε``,
``ε ~ N(0, diag(σ²))``. With fitness shaped by centred ranks and ``r`` the (to-be-maximised)
utility, the paper's gradients are

    ∇μ = Σ_pairs (r⁺ - r⁻) / 2 · ε
    ∇σ = Σ_pairs ((r⁺ + r⁻) / 2 - b) · (ε² - σ²) / σ      (b: mean utility = baseline)

μ follows Adam (as in evotorch / ClipUp-style practice); σ takes a plain gradient step whose
relative change is clipped to ``sigma_max_change`` (Toklu et al. 2020), so it never collapses
in one generation. O(P d): fit for direct weight space. Default start: ``μ = 0``.
An odd ``popsize`` gets one extra unpaired sample that only enters the baseline.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .gaussian import ADAM_HPARAMS, GaussianES
from .shaping import centered_ranks


class PGPE(GaussianES):
    name = "pgpe"
    default_hparams: dict[str, Any] = {
        "sigma_init": 0.1,
        **ADAM_HPARAMS,
        "lr_sigma": 0.1,
        "sigma_max_change": 0.2,
        "sigma_min": 1e-8,
    }

    def _ask(self) -> Tensor:
        # scaling the mirrored unit noise by σ afterwards gives the same bits as mirroring
        # σ-scaled noise: IEEE multiplication is symmetric in sign
        self._eps = self._sample_noise(antithetic=True).mul_(self.sigma)
        return self.mu + self._eps

    def _tell(self, x: Tensor, fitness: Tensor, descriptors: Tensor | None) -> None:
        half = self.popsize // 2
        r = -centered_ranks(fitness)  # utility to maximise
        eps = self._eps[:half]
        r_plus, r_minus = r[:half], r[half : 2 * half]
        grad_mu = ((r_plus - r_minus) / 2) @ eps / half
        base = r.mean()
        grad_sigma = (((r_plus + r_minus) / 2 - base) @ (eps * eps - self.sigma**2)) / (
            half * self.sigma
        )
        # ascent on utility == descent on -grad
        self.mu = self.mu - self._adam_step(-grad_mu)
        step = self.hp["lr_sigma"] * grad_sigma
        c = float(self.hp["sigma_max_change"])
        step = torch.clamp(step, -c * self.sigma, c * self.sigma)
        self.sigma = (self.sigma + step).clamp_min(self.hp["sigma_min"])
        self._eps = None
