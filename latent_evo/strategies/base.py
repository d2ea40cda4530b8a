"""Shared ask/tell bookkeeping for every strategy (in the spirit of evosax's ``Strategy``).

A strategy searches a ``d``-dimensional space with populations of ``P`` candidates:

    strat = get_strategy("snes", dim=128, popsize=64)
    for _ in range(100):
        x = strat.ask()          # (P, d) on strat.device
        strat.tell(f(x))         # (P,) fitness, **minimised**

The base class does everything that is not the algorithm itself, once: seeding, lazy default
initialisation, shape checks with clear errors, replacing NaN/inf fitness by "worst",
best-so-far tracking, the generation counter, re-centring, and a ``state_dict`` made only of
tensors (safetensors-compatible) that resumes a run bit-identically, RNG state included.
Subclasses write ``_init_state``, ``_ask`` and ``_tell`` (plus ``_get_mean``/``_set_mean``)
and list their tensors in ``state_names``; the Gaussian ES do so through ``GaussianES``
(``gaussian.py``). Fitness shaping and the Adam step live in ``shaping.py``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from .shaping import sanitize_fitness

__all__ = ["PopulationStrategy", "Strategy"]


# hyper-parameters that are a step size a strategy may also hold as live state `sigma`
STEP_SIZE_HPARAMS = frozenset({"sigma_init", "mutation_sigma"})
# step sizes and scales of every strategy: zero or negative values make no sense
POSITIVE_HPARAMS = frozenset(
    {"sigma_init", "sigma", "mutation_sigma", "iso_sigma", "line_sigma", "lr", "lr_mean",
     "lr_sigma", "init_scale"}
)  # fmt: skip


class Strategy:
    """Base class of all ask/tell strategies. Fitness is **minimised**.

    Args:
        dim: dimension ``d`` of the search space.
        popsize: number ``P`` of candidates per ``ask()``.
        device: where the population and all state live (``"cpu"``, ``"cuda"``...).
        dtype: dtype of the candidates (float32 by default).
        seed: seed of the strategy's own ``torch.Generator`` (or pass a generator to ``init``).
        **hparams: algorithm hyper-parameters; the valid names and defaults are the keys of
            the class attribute ``default_hparams``. Unknown names raise ``ValueError``.
    """

    name: ClassVar[str] = "base"
    #: tensors owned by the subclass; all go into ``state_dict`` (``None`` entries are skipped)
    state_names: ClassVar[tuple[str, ...]] = ()
    default_hparams: ClassVar[dict[str, Any]] = {}
    #: smallest population the algorithm can work with
    min_popsize: ClassVar[int] = 2

    def __init__(
        self,
        dim: int,
        popsize: int,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        seed: int = 0,
        **hparams: Any,
    ) -> None:
        if int(dim) < 1:
            raise ValueError(f"{self.name}: dim must be >= 1, got {dim}")
        if int(popsize) < self.min_popsize:
            raise ValueError(f"{self.name}: popsize must be >= {self.min_popsize}, got {popsize}")
        self.check_hparams(hparams)
        self.dim = int(dim)
        self.popsize = int(popsize)
        self.device = torch.device(device)
        self.dtype = dtype
        self.hp: dict[str, Any] = {**self.default_hparams, **hparams}
        self._user_hparams = frozenset(hparams)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(seed))
        self._generation = torch.zeros((), dtype=torch.int64)
        self.best_x: Tensor | None = None
        self.best_fitness = torch.tensor(math.inf, device=self.device, dtype=self.dtype)
        self._pending: Tensor | None = None
        self._initialized = False
        for k in self.state_names:
            setattr(self, k, None)
        self._check_hparams()

    # ---------------------------------------------------------------- hyper-parameters
    @classmethod
    def check_hparams(cls, hparams: dict[str, Any]) -> None:
        """The checks that need no dimension, done where hyper-parameters enter (here, and by
        `EvolveConfig` when a config is built): known names, numbers where the default is a
        number, positive step sizes. A wrong value would otherwise surface as a torch error deep
        inside the first `ask`, or silently run. Raises `ValueError` naming the option."""
        unknown = sorted(set(hparams) - set(cls.default_hparams))
        if unknown:
            valid = ", ".join(sorted(cls.default_hparams)) or "(none)"
            raise ValueError(
                f"{cls.name}: unknown hyper-parameter(s) {unknown}; valid ones are: {valid}"
            )
        for key, value in hparams.items():
            default = cls.default_hparams[key]
            numeric = isinstance(default, int | float) and not isinstance(default, bool)
            if numeric and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise ValueError(f"{cls.name}: {key} must be a number, got {value!r}")
            if key in POSITIVE_HPARAMS and value is not None and not value > 0:
                raise ValueError(f"{cls.name}: {key} must be > 0, got {value!r}")

    @classmethod
    def tunable_hparams(cls) -> list[str]:
        """Hyper-parameters that may change during a run (`set_hparam`, `scale_hparam`): the
        positive float ones (step sizes, learning rates, rates)."""
        return sorted(
            k for k, v in cls.default_hparams.items()
            if isinstance(v, float) and not isinstance(v, bool) and v > 0
        )  # fmt: skip

    def set_hparam(self, name: str, value: float) -> None:
        """Change hyper-parameter `name` during a run; the next `ask` / `tell` uses it. Checked
        as at construction. Live state derived from it (a σ) is left as it is: see
        `scale_hparam` to move both."""
        self.check_hparams({name: value})
        self.hp[name] = value

    def scale_hparam(self, name: str, factor: float) -> None:
        """Multiply hyper-parameter `name` by `factor` during a run. A step size that the
        strategy also holds as live state (`sigma_init`, `mutation_sigma` -> `sigma`) moves
        that state by the same factor, so the change acts now, not only at a restart."""
        self.set_hparam(name, float(self.hp[name]) * factor)
        live = getattr(self, "sigma", None)
        if name in STEP_SIZE_HPARAMS and isinstance(live, Tensor):
            self.sigma = live * factor

    # ---------------------------------------------------------------- hooks for subclasses
    def _check_hparams(self) -> None:
        """Validate ``self.hp`` (raise ``ValueError`` naming the option at fault)."""

    def _init_state(self, mean: Tensor | None, population: Tensor | None) -> None:
        raise NotImplementedError

    def _ask(self) -> Tensor:
        raise NotImplementedError

    def _tell(self, x: Tensor, fitness: Tensor, descriptors: Tensor | None) -> None:
        raise NotImplementedError

    def _get_mean(self) -> Tensor:
        raise NotImplementedError

    def _check_descriptors(self, descriptors: Tensor | None) -> None:
        """Raise ``ValueError`` if ``descriptors`` do not fit (strategies that use them)."""

    def _set_mean(self, mean: Tensor) -> None:
        raise NotImplementedError

    def _set_population(self, population: Tensor) -> None:
        """Mid-run re-initialisation from a population; ES default: re-centre on its mean."""
        self._set_mean(population.mean(0))

    # ---------------------------------------------------------------- helpers
    def randn(self, *shape: int) -> Tensor:
        return torch.randn(shape, generator=self.generator, device=self.device, dtype=self.dtype)

    def noise_buffer(self, n: int) -> Tensor:
        """An uninitialised ``(n, d)`` buffer reused across generations: at d = 1e6 allocating
        (and page-faulting) a fresh 1 GB noise matrix every generation costs seconds. Only
        valid until the next ``ask``; it is derived scratch space, not checkpointed state."""
        buf = getattr(self, "_noise_buf", None)
        if buf is None or buf.shape != (n, self.dim):
            buf = torch.empty((n, self.dim), device=self.device, dtype=self.dtype)
            self._noise_buf = buf
        return buf

    def randn_buffer(self, n: int) -> Tensor:
        """``(n, d)`` standard normal, written into ``noise_buffer``."""
        out = self.noise_buffer(n)
        return torch.randn((n, self.dim), generator=self.generator, out=out)

    def rand(self, *shape: int) -> Tensor:
        return torch.rand(shape, generator=self.generator, device=self.device, dtype=self.dtype)

    def _as_vector(self, x: Tensor | float, what: str) -> Tensor:
        x = torch.as_tensor(x, device=self.device, dtype=self.dtype)
        if x.ndim == 0:
            x = x.expand(self.dim)
        if x.shape != (self.dim,):
            raise ValueError(
                f"{self.name}: {what} must have shape ({self.dim},), got {tuple(x.shape)}"
            )
        return x.clone()

    def _as_population(self, pop: Tensor) -> Tensor:
        pop = torch.as_tensor(pop, device=self.device, dtype=self.dtype)
        if pop.ndim != 2 or pop.shape[1] != self.dim:
            raise ValueError(
                f"{self.name}: population must have shape (P, {self.dim}), got {tuple(pop.shape)}"
            )
        return pop.clone()

    # ---------------------------------------------------------------- public API
    def init(
        self,
        mean: Tensor | float | None = None,
        population: Tensor | None = None,
        generator: torch.Generator | int | None = None,
    ) -> Strategy:
        """Start from ``mean`` (ES centre) or ``population`` (GA). Without either, ES start at
        a zeros mean and GAs at ``N(0, I) * init_scale``. Called again mid-run, it only
        re-centres (mean or population) and keeps every other piece of state."""
        if mean is not None and population is not None:
            raise ValueError(f"{self.name}.init: give mean or population, not both")
        if isinstance(generator, torch.Generator):
            if generator.device != self.device:
                raise ValueError(
                    f"{self.name}.init: generator is on {generator.device}, strategy on {self.device}"
                )
            self.generator = generator
        elif generator is not None:
            self.generator.manual_seed(int(generator))
        m = None if mean is None else self._as_vector(mean, "mean")
        p = None if population is None else self._as_population(population)
        if not self._initialized:
            self._init_state(m, p)
            self._initialized = True
        elif m is not None:
            self._set_mean(m)
        elif p is not None:
            self._set_population(p)
        self._pending = None
        return self

    def ask(self) -> Tensor:
        """Return the next population, shape ``(P, d)`` (``P`` may grow, e.g. IPOP-CMA-ES)."""
        if not self._initialized:
            self.init()
        x = self._ask()
        self._pending = x
        return x

    def tell(self, fitness: Tensor, descriptors: Tensor | None = None) -> None:
        """Report the fitness (to be minimised) of the population ``ask`` returned.

        NaN/±inf count as the worst possible fitness. ``descriptors`` (``(P, b)`` behaviour
        descriptors) are used by novelty search and MAP-Elites and ignored by the others.
        """
        if self._pending is None:
            raise RuntimeError(f"{self.name}.tell() called without a pending ask()")
        x = self._pending
        n = x.shape[0]
        f = torch.as_tensor(fitness).to(device=self.device, dtype=self.dtype)
        if f.shape != (n,):
            raise ValueError(
                f"{self.name}.tell: expected fitness of shape ({n},) for the population ask() "
                f"returned, got {tuple(f.shape)}"
            )
        if descriptors is not None:
            descriptors = torch.as_tensor(descriptors).to(device=self.device, dtype=self.dtype)
            if descriptors.ndim == 1:
                descriptors = descriptors[:, None]
            if descriptors.ndim != 2 or descriptors.shape[0] != n:
                raise ValueError(
                    f"{self.name}.tell: expected descriptors of shape ({n}, b), "
                    f"got {tuple(descriptors.shape)}"
                )
        self._check_descriptors(descriptors)  # before any state changes: a bad tell loses nothing
        f = sanitize_fitness(f)
        i = int(torch.argmin(f))
        # a strict "<" keeps the first best and ignores all-inf generations
        if bool(f[i] < self.best_fitness):
            self.best_fitness = f[i].clone()
            self.best_x = x[i].clone()
        self._tell(x, f, descriptors)
        self._generation += 1
        self._pending = None

    @property
    def generation(self) -> int:
        return int(self._generation)

    @property
    def mean(self) -> Tensor:
        """The current search centre (ES) or best individual (GA)."""
        if not self._initialized:
            self.init()
        return self._get_mean()

    def set_mean(self, mean: Tensor) -> None:
        """Re-centre the search (e.g. after re-encoding), keeping all other state."""
        self.init(mean=mean)

    def reset_best(self) -> None:
        """Forget best-so-far (e.g. when the space's meaning changed after a fine-tune)."""
        self.best_x = None
        self.best_fitness = torch.tensor(math.inf, device=self.device, dtype=self.dtype)

    # ---------------------------------------------------------------- checkpointing
    def state_dict(self) -> dict[str, Tensor]:
        """All state as a flat dict of tensors (clones): safetensors-compatible."""
        sd: dict[str, Tensor] = {
            "generation": self._generation.clone(),
            "initialized": torch.tensor(self._initialized),
            "best_fitness": self.best_fitness.clone(),
            "rng_state": self.generator.get_state().clone(),
        }
        if self.best_x is not None:
            sd["best_x"] = self.best_x.clone()
        if self._pending is not None:
            sd["pending"] = self._pending.clone()
        for k in self.state_names:
            v = getattr(self, k, None)
            if v is not None:
                sd["state." + k] = v.clone()
        return sd

    def load_state_dict(self, sd: dict[str, Tensor]) -> None:
        """Restore ``state_dict()``; the next ``ask`` is bit-identical to the saved run's."""
        missing = {"generation", "initialized", "best_fitness", "rng_state"} - set(sd)
        if missing:
            raise ValueError(f"{self.name}.load_state_dict: missing keys {sorted(missing)}")
        unknown = {k[6:] for k in sd if k.startswith("state.")} - set(self.state_names)
        if unknown:
            raise ValueError(
                f"{self.name}.load_state_dict: unexpected state {sorted(unknown)} "
                f"(was it saved by another strategy?)"
            )
        self._generation = sd["generation"].clone().cpu()
        self._initialized = bool(sd["initialized"])
        self.best_fitness = sd["best_fitness"].to(self.device).clone()
        self.best_x = sd["best_x"].to(self.device).clone() if "best_x" in sd else None
        self._pending = sd["pending"].to(self.device).clone() if "pending" in sd else None
        self.generator.set_state(sd["rng_state"].cpu())
        for k in self.state_names:
            v = sd.get("state." + k)
            setattr(self, k, None if v is None else v.to(self.device).clone())
        self._after_load()

    def _after_load(self) -> None:
        """Hook to rebuild derived caches after ``load_state_dict``."""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(dim={self.dim}, popsize={self.popsize}, device={self.device})"
        )


class PopulationStrategy(Strategy):
    """A strategy whose state is a population of points (a GA), not a search distribution.

    It starts from several points at once (`init(population=x (P, d))`, e.g. a zoo's top-k or
    re-encoded codes after a fine-tune) and exposes them as `population (P, d)`; a Gaussian ES
    starts from one mean. The run tells the two apart by this class, not by a state name.
    """

    population: Tensor | None
