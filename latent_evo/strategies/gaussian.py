"""Shared base of the distribution-based Gaussian ES: OpenAI-ES, PGPE, SNES and EGGROLL.

They all search with a Gaussian centred on a mean vector and differ only in how they sample
around it and how they update it. ``GaussianES`` holds, once, what they share: the mean (zeros,
the given ``mean`` or the given population's mean), σ (isotropic scalar, per-coordinate vector,
or none when σ is the fixed ``sigma_init``), the Adam state of the mean update, the ``(P, d)``
noise of the pending ``ask`` and the state names built from all of these.

Each algorithm keeps its historical attribute names (``theta`` or ``mu``, ``_eps``, ``_s``...)
because they are the ``state.<name>`` keys of its checkpoints.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from .base import Strategy
from .shaping import adam_update

__all__ = ["GaussianES", "ADAM_HPARAMS", "ADAM_STATE", "antithetic_noise"]

#: hyper-parameters of the Adam step on the mean, with the defaults every algorithm here uses
ADAM_HPARAMS: dict[str, Any] = {"lr": 0.05, "beta1": 0.9, "beta2": 0.999}
#: Adam's first and second moments and its step counter
ADAM_STATE = ("adam_m", "adam_v", "adam_t")


def antithetic_noise(strat: Strategy, n: int) -> Tensor:
    """``n`` standard-normal rows as mirrored pairs ``[ε; -ε]`` (mirrored sampling halves the
    variance of ES gradient estimates); an odd ``n`` gets one extra unmirrored row at the end.
    Written into the strategy's reusable noise buffer (see ``Strategy.noise_buffer``)."""
    out = strat.noise_buffer(n)
    half = n // 2
    torch.randn((half, strat.dim), generator=strat.generator, out=out[:half])
    torch.neg(out[:half], out=out[half : 2 * half])
    if n % 2:
        torch.randn((1, strat.dim), generator=strat.generator, out=out[2 * half :])
    return out


class GaussianES(Strategy):
    """Base class of the Gaussian ES. Subclasses set the class attributes below, write
    ``_ask``/``_tell`` (and ``_check_hparams`` if they have options to validate) and read and
    write their state under their own names; ``state_names`` is derived from the attributes.
    """

    #: attribute holding the mean, and so its checkpoint key ``state.<mean_name>``
    mean_name: ClassVar[str] = "mu"
    #: σ as a 0-d tensor, a ``(d,)`` tensor, or absent (the algorithm reads ``sigma_init``)
    sigma_shape: ClassVar[Literal["scalar", "diagonal"] | None] = "diagonal"
    #: whether the mean follows Adam (state ``adam_m``, ``adam_v``, ``adam_t``)
    uses_adam: ClassVar[bool] = True
    #: attribute holding the noise of the pending ``ask`` (``None`` between generations)
    noise_name: ClassVar[str] = "_eps"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # one source of truth: what _init_state creates is exactly what state_dict saves
        cls.state_names = (
            cls.mean_name,
            *(("sigma",) if cls.sigma_shape is not None else ()),
            *(ADAM_STATE if cls.uses_adam else ()),
            cls.noise_name,
        )

    def _init_state(self, mean: Tensor | None, population: Tensor | None) -> None:
        if population is not None:
            mean = population.mean(0)
        z = torch.zeros(self.dim, device=self.device, dtype=self.dtype)
        setattr(self, self.mean_name, z.clone() if mean is None else mean)
        if self.sigma_shape == "scalar":
            self.sigma = torch.tensor(
                float(self.hp["sigma_init"]), device=self.device, dtype=self.dtype
            )
        elif self.sigma_shape == "diagonal":
            self.sigma = torch.full_like(z, float(self.hp["sigma_init"]))
        if self.uses_adam:
            self.adam_m, self.adam_v = z.clone(), z.clone()
            self.adam_t = torch.zeros((), dtype=torch.int64)

    def _get_mean(self) -> Tensor:
        return getattr(self, self.mean_name)

    def _set_mean(self, mean: Tensor) -> None:
        setattr(self, self.mean_name, mean)

    def _sample_noise(self, antithetic: bool) -> Tensor:
        """``(P, d)`` standard-normal noise in the reusable buffer, as mirrored pairs if
        ``antithetic``."""
        if antithetic:
            return antithetic_noise(self, self.popsize)
        return self.randn_buffer(self.popsize)

    def _adam_step(self, grad: Tensor) -> Tensor:
        """The Adam step to *subtract* from the mean, given ``grad`` (the direction of
        increasing fitness); advances the Adam state."""
        return adam_update(
            grad, self.adam_m, self.adam_v, self.adam_t, self.hp["lr"],
            self.hp["beta1"], self.hp["beta2"],
        )  # fmt: skip
