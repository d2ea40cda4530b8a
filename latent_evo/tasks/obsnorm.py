"""Running observation statistics shared by a whole population (Salimans et al. 2017).

Policies see `clip((obs - mean) / sqrt(var + eps), -CLIP, CLIP)`. The statistics are the
population's, not a member's: every member of a generation is scored under the SAME frozen
statistics (else a member's fitness would depend on when in the generation it ran), and the
observations a generation visits are merged in only when the next generation starts
(`commit`). Everything lives in float64: a run sees millions of observations, and float32
sums lose the variance of a slowly moving coordinate.

Accumulation during a rollout is shifted sums around the committed mean
(`sum(x - m)`, `sum((x - m)^2)`): a few adds per step, no cancellation when |mean| >> std;
a finished rollout's sums join the pending ones (`add_pending`), and `commit` turns those into
a batch mean and M2 and merges them with Chan et al.'s parallel formula. The clip at 5
standard deviations follows OpenAI's ES and most PPO code: a state far outside anything seen
(a falling pole, a crashed lander) stays a strong but bounded input.
"""

from __future__ import annotations

import torch
from torch import Tensor

CLIP = 5.0
EPS = 1e-8


class RunningObsNorm:
    """Committed statistics (`count`, `mean`, `m2`) plus pending shifted sums of the rollouts
    since the last `commit`; all `(obs_dim,)` float64 except the counts."""

    def __init__(self, obs_dim: int, device: torch.device | str = "cpu"):
        self.obs_dim = int(obs_dim)
        z = torch.zeros(self.obs_dim, dtype=torch.float64, device=device)
        self.count = torch.zeros((), dtype=torch.float64, device=device)
        self.mean, self.m2 = z.clone(), z.clone()
        self.pending_count = self.count.clone()
        self.pending_sum, self.pending_sq = z.clone(), z.clone()
        self._frozen: tuple[Tensor, Tensor] | None = None

    def to(self, device: torch.device | str) -> RunningObsNorm:
        for k in ("count", "mean", "m2", "pending_count", "pending_sum", "pending_sq"):
            setattr(self, k, getattr(self, k).to(device))
        self._frozen = None
        return self

    # ---------------------------------------------------------------- applying
    def frozen(self) -> tuple[Tensor, Tensor]:
        """`(mean, 1/std)` float32 of the committed statistics (identity before any data)."""
        if self._frozen is None:
            if float(self.count) < 2:
                mean, inv = torch.zeros_like(self.mean), torch.ones_like(self.mean)
            else:
                mean, inv = self.mean, (self.m2 / self.count + EPS).rsqrt()
            self._frozen = (mean.float(), inv.float())
        return self._frozen

    @staticmethod
    def apply(obs: Tensor, frozen: tuple[Tensor, Tensor]) -> Tensor:
        mean, inv = frozen
        return ((obs - mean) * inv).clamp_(-CLIP, CLIP)

    # ---------------------------------------------------------------- accumulating
    def new_sums(self) -> Tensor:
        """A rollout's accumulator `(1 + 2 * obs_dim,)` float64: count, shifted sum, shifted
        sum of squares; one flat tensor, so ranks of a sharded run reduce it in one call."""
        return torch.zeros(1 + 2 * self.obs_dim, dtype=torch.float64, device=self.mean.device)

    def accumulate(self, sums: Tensor, obs: Tensor, alive: Tensor) -> None:
        """Add the observations `obs (B, obs_dim)` of the environments still `alive (B,)`."""
        d = self.obs_dim
        x = torch.where(alive[:, None], obs.double() - self.mean, 0.0)  # (B, obs_dim)
        sums[0] += alive.sum()
        sums[1 : 1 + d] += x.sum(0)
        sums[1 + d :] += x.square().sum(0)

    def add_pending(self, sums: Tensor) -> None:
        """A finished rollout's accumulator joins the observations of this generation."""
        d = self.obs_dim
        self.pending_count += sums[0]
        self.pending_sum += sums[1 : 1 + d]
        self.pending_sq += sums[1 + d :]

    def commit(self) -> None:
        """Merge the pending observations into the statistics (Chan et al. parallel update)."""
        n_b = self.pending_count
        if float(n_b) == 0:
            return
        d_b = self.pending_sum / n_b  # batch mean minus the old mean
        m2_b = self.pending_sq - n_b * d_b.square()  # batch M2 around the batch mean
        n = self.count + n_b
        self.mean = self.mean + d_b * (n_b / n)
        self.m2 = self.m2 + m2_b.clamp_min(0) + d_b.square() * (self.count * n_b / n)
        self.count = n
        self.pending_count = torch.zeros_like(self.pending_count)
        self.pending_sum = torch.zeros_like(self.pending_sum)
        self.pending_sq = torch.zeros_like(self.pending_sq)
        self._frozen = None

    @property
    def var(self) -> Tensor:
        return self.m2 / self.count.clamp_min(1)

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Tensor]:
        return {
            "count": self.count.clone(),
            "mean": self.mean.clone(),
            "m2": self.m2.clone(),
            "pending_count": self.pending_count.clone(),
            "pending_sum": self.pending_sum.clone(),
            "pending_sq": self.pending_sq.clone(),
        }

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        dev = self.mean.device
        for k in ("count", "mean", "m2", "pending_count", "pending_sum", "pending_sq"):
            if k not in state:
                raise KeyError(f"observation statistics: the state has no {k!r}")
            v = state[k].to(dev, torch.float64)
            if v.shape != getattr(self, k).shape:
                raise ValueError(
                    f"observation statistics {k!r}: shape {tuple(v.shape)} does not fit this "
                    f"task's {tuple(getattr(self, k).shape)} (another environment?)"
                )
            setattr(self, k, v.clone())
        self._frozen = None
