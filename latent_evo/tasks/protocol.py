"""What the evolution loop needs of a problem: the `Task` protocol and its optional parts.

Every task class (`SupervisedTask`, `FunctionTask`, `LoRATask`, `EpisodicTask`, a user's own)
satisfies `Task`; the loop is typed against it and asks for the optional parts with
`isinstance` (the protocols are runtime-checkable), never with `hasattr`:

    Task           spec, device, model, fitness of a population, test metrics of one genome
    MinibatchTask  + `batch(step)`: fresh fitness data per generation (a minibatch of examples,
                   or the episode seeds every member of a generation shares)
    StatefulTask   + `state_dict()` / `load_state_dict()`: state that changes while a run goes
                   on (running observation statistics), saved in the run's checkpoints
    CountingTask   + `counters()`: work besides evaluations (episodes, environment steps),
                   logged next to evaluations in every history record
    ValidatedTask  + `hold_out(fraction, seed)` / `validation_losses(genomes, chunks)`: a
                   validation set the search never sees, which gates the reported network

Fitness is a loss: lower is better (an episodic task returns the negative mean return).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from latent_evo.genome import GenomeSpec


@runtime_checkable
class Task(Protocol):
    """A problem the loop can evolve networks for."""

    name: str
    spec: GenomeSpec  # the genome layout: (P, n) genomes <-> {name: (P, *shape)}
    device: torch.device
    model: nn.Module  # a template network; `EvolveResult.best_model` is a copy of it

    def to(self, device: str | torch.device) -> Task: ...

    def fitness_genomes(self, genomes: Tensor, batch: Any = None) -> Tensor:
        """`(P, n)` genomes -> `(P,)` fitness (lower is better); `batch=None`: the fixed data."""
        ...

    def evaluate(self, genome: Tensor) -> dict[str, float]:
        """Test metrics of one `(n,)` genome, keys prefixed `test_`."""
        ...

    def init_genomes(self, population: int, generator: torch.Generator | None = None) -> Tensor:
        """`(P, n)` fresh random initialisations drawn from `generator`."""
        ...


@runtime_checkable
class MinibatchTask(Task, Protocol):
    def batch(self, step_or_generator: int | torch.Generator, size: int | None = None) -> Any:
        """The fitness data of generation `step` (a pure function of the task's seed and `step`),
        or drawn from a generator; passed back to `fitness_genomes(genomes, batch)`. `size`:
        how many examples (or episodes); None: the task's default."""
        ...


@runtime_checkable
class StatefulTask(Task, Protocol):
    def state_dict(self) -> dict[str, Tensor]: ...

    def load_state_dict(self, tensors: dict[str, Tensor]) -> None: ...


@runtime_checkable
class CountingTask(Task, Protocol):
    def counters(self) -> dict[str, int]:
        """Cumulative work counters, e.g. `{"episodes": ..., "env_steps": ...}`."""
        ...


@runtime_checkable
class ValidatedTask(Task, Protocol):
    def hold_out(self, fraction: float, seed: int) -> None:
        """Set aside `fraction` of the training data (or episodes) as a validation set that
        fitness never sees. Idempotent: a second call re-splits the original training data."""
        ...

    def validation_losses(self, genomes: Tensor, chunks: int, metric: str = "loss") -> Tensor:
        """`(P, n)` genomes -> `(P, chunks)`: the loss (`metric="loss"`) or another lower-is-
        better measure (`"error"`: error rate) on each of `chunks` disjoint parts of the
        validation set, the same parts for every member (a paired comparison)."""
        ...


def missing_members(obj: Any, protocol: type) -> list[str]:
    """The members of `protocol` that `obj` lacks (for an error that names them)."""
    names: set[str] = set()
    for cls in protocol.__mro__:
        if cls in (object, Protocol) or not getattr(cls, "_is_protocol", False):
            continue
        names |= set(getattr(cls, "__annotations__", {}))
        names |= {k for k, v in vars(cls).items() if callable(v) and not k.startswith("_")}
    return sorted(n for n in names if not hasattr(obj, n))
