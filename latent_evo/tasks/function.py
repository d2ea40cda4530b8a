"""A task from a user's own module and fitness function, and the checks every fitness passes.

Minimum a user writes to evolve their own network (no registered task)::

    model = MyNet()                                   # any nn.Module
    def fitness(params):                              # ONE network's {name: tensor} -> scalar
        out = torch.func.functional_call(model, params, (x,))
        return F.cross_entropy(out, y)                # a loss: lower is better
    result = latent_evo.evolve(task=model, fitness_fn=fitness, strategy="ga", generations=50)

`fitness` is vmapped over the population; pass `batched=True` to `FunctionTask` for a function
that takes `{name: (P, *shape)}` and returns `(P,)` itself, and `test_data=(x, y)` for test loss
and accuracy (or bits per token with `kind="lm"`) of the best network:
`latent_evo.evolve(task=FunctionTask(model, fitness, test_data=(x_test, y_test)), ...)`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import vmap

from latent_evo.genome import GenomeSpec
from latent_evo.tasks.base import reinitialised, seeded_genomes
from latent_evo.tasks.protocol import Task, missing_members


class FitnessShapeError(ValueError):
    """A fitness function returned something other than one finite-or-not number per genome."""


class NonFiniteFitnessError(RuntimeError):
    """A whole generation evaluated to NaN / inf; the message names the tensor or the function."""


def explain_non_finite(task: Task, f: Tensor, genomes: Tensor, generation: int, source: str) -> str:
    """Why a whole generation's fitness `f (P,)` is non-finite: non-finite weights in
    `genomes (P, n)` (made by `source`, e.g. the decoder), or the fitness function itself."""
    what = "NaN" if bool(torch.isnan(f).all()) else "non-finite (NaN or +-inf)"
    head = f"generation {generation}: all {len(f)} fitness values are {what}"
    tail = "The run stops here; the checkpoints written so far are kept."
    params = task.spec.unflatten(genomes)  # {name: (P, *shape)}
    bad = [name for name, v in params.items() if not bool(torch.isfinite(v).all())]
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        return f"{head}: tensor {bad[0]!r}{more} holds non-finite weights, from {source}. {tail}"
    return (
        f"{head} on finite weights: the fitness function of task {task.name!r} is at fault. {tail}"
    )


class FunctionTask:
    """A task from a user's `nn.Module` and fitness function (see the module docstring)."""

    def __init__(
        self,
        model: nn.Module,
        fitness_fn: Callable[[dict[str, Tensor]], Tensor],
        batched: bool = False,
        name: str = "user",
        chunk_size: int | None = None,
        test_data: tuple[Tensor, Tensor] | None = None,
        kind: str = "classification",
    ):
        if kind not in ("classification", "lm"):
            raise ValueError(f"FunctionTask kind must be 'classification' or 'lm', got {kind!r}")
        self.name = name
        self.kind = kind
        self.test_data = test_data
        self.model = model.eval()
        self.spec = GenomeSpec.from_module(model)
        self.fitness_fn = fitness_fn
        self.batched = batched
        self.chunk_size = chunk_size
        self.device = next(iter(model.parameters())).device

    def to(self, device: str | torch.device) -> FunctionTask:
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    def params(self, genomes: Tensor) -> dict[str, Tensor]:
        return self.spec.unflatten(genomes[None] if genomes.dim() == 1 else genomes)

    def fitness(self, params: dict[str, Tensor], batch: Any = None) -> Tensor:
        if self.batched:
            return self.fitness_fn(params)
        p = next(iter(params.values())).shape[0]
        chunk = self.chunk_size or p
        parts = [
            vmap(self.fitness_fn)({k: v[s : s + chunk] for k, v in params.items()})
            for s in range(0, p, chunk)
        ]
        return torch.cat(parts)

    def fitness_genomes(self, genomes: Tensor, batch: Any = None) -> Tensor:
        return self.fitness(self.params(genomes), batch)

    def genome(self) -> Tensor:
        return self.spec.flatten(self.model.state_dict())

    def init_genomes(self, population: int, generator: torch.Generator | None = None) -> Tensor:
        """Fresh initialisations: the module's `reset_parameters()` (else each submodule's) under
        a drawn seed."""
        build = lambda: reinitialised(copy.deepcopy(self.model).cpu())  # noqa: E731
        return seeded_genomes(self.spec, build, population, generator).to(self.device)

    def evaluate(self, genome: Tensor) -> dict[str, float]:
        """The training fitness, and with `test_data` the test metrics of a built-in task:
        loss and accuracy (classification, logits `(N, C)`) or loss and bits per token
        (language model, logits `(N, T, V)`)."""
        with torch.no_grad():
            out = {"fitness": float(self.fitness_genomes(genome[None])[0])}
            if self.test_data is None:
                return out
            x, y = (t.to(self.device) for t in self.test_data)
            logits = torch.func.functional_call(self.model, self.spec.unflatten(genome), (x,))
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))
            out["test_loss"] = float(loss)
            if self.kind == "classification":
                out["test_accuracy"] = float((logits.argmax(-1) == y).float().mean())
            else:
                out["test_bits_per_token"] = float(loss) / math.log(2)
            return out


def resolve_task(task: Any, fitness_fn: Callable | None, overrides: dict[str, Any]) -> Task:
    """A task name, a `Task`-like object, or an `nn.Module` (+ `fitness_fn`) -> a task."""
    if isinstance(task, str):
        from latent_evo.tasks import get_task

        return get_task(task, **overrides)
    if isinstance(task, nn.Module):
        if fitness_fn is None:
            raise ValueError("task is an nn.Module: pass fitness_fn(params) -> scalar loss as well")
        return FunctionTask(task, fitness_fn)
    if fitness_fn is not None:
        raise ValueError("fitness_fn is only used with task=<nn.Module>")
    if not isinstance(task, Task):
        missing = ", ".join(missing_members(task, Task))
        raise TypeError(
            f"task {task!r} is not a Task (it lacks {missing}): pass a task "
            "name, an object with the members of latent_evo.tasks.Task, or an nn.Module with "
            "fitness_fn"
        )
    return task


def checked_fitness(f: Any, population: int, task_name: str) -> Tensor:
    """Fitness must be a `(P,)` tensor: anything else raises naming what came back."""
    if not torch.is_tensor(f):
        raise FitnessShapeError(
            f"fitness function of task {task_name!r} returned {type(f).__name__}, "
            f"expected a tensor of shape ({population},)"
        )
    if f.shape != (population,):
        raise FitnessShapeError(
            f"fitness function of task {task_name!r} returned shape {tuple(f.shape)} for "
            f"{population} genomes, expected ({population},) (one loss per genome)"
        )
    return f


def genome_to_module(task: Task, genome: Tensor) -> nn.Module:
    """A copy of the task's model carrying `genome`'s weights."""
    model = copy.deepcopy(task.model)
    sd = task.spec.unflatten(genome.detach().to(task.device))
    model.load_state_dict({k: v.clone() for k, v in sd.items()}, strict=False)
    return model.eval()
