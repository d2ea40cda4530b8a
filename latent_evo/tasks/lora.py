"""LoRA tasks: the genome is low-rank adapters of a base task's network, evaluated unbuilt.

    genome (P, d) = every member's factors [A_0ᵀ, B_0ᵀ, A_1ᵀ, ...]  (A_l (out, r), B_l (in, r))
    member p's network = the base network with layer l's weights + A_l B_lᵀ (LoRA-style)
    fitness = base_task.fitness_low_rank(factors): shared base matmuls for the whole population
              plus per-member (x B) Aᵀ, so no member's weights are ever built (models/lowrank.py)

So any search runs over adapters of a large network through the usual `evolve()`: direct
OpenAI-ES / EGGROLL over the factors (EGGROLL gets each factor's matrix shape from the spec), or a
compressor pretrained on a zoo of such genomes. `init_genomes` follows LoRA: A = 0 and B small,
so every fresh member is the base network itself. `model` is the base network carrying adapters
(`LowRankNetwork`), so `EvolveResult.best_model` is a usable module.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from latent_evo.genome import GenomeSpec
from latent_evo.models.lowrank import layer_dims, linear_layers, low_rank_population
from latent_evo.tasks.base import chunked_losses
from latent_evo.tasks.function import genome_to_module
from latent_evo.tasks.protocol import MinibatchTask, Task


class Adapters(nn.Module):
    """Rank-r factors of some linear layers, stored one rank component per row: A[i] (r, out),
    B[i] (r, in) for layers[i], i.e. the transposes of the (out, r) / (in, r) factors. A row is
    then a whole singular vector (hundreds of values, in canonical form), which is what a
    compressor's token is cut from; (out, r) rows would be r values each."""

    def __init__(self, dims: list[tuple[int, int]], rank: int):
        super().__init__()
        self.A = nn.ParameterList(nn.Parameter(torch.zeros(rank, o)) for _, o in dims)
        self.B = nn.ParameterList(nn.Parameter(torch.zeros(rank, i)) for i, _ in dims)


class LowRankNetwork(nn.Module):
    """The base network with its adapters applied (one network: the population axis is 1)."""

    def __init__(self, base: nn.Module, layers: list[str], rank: int):
        super().__init__()
        self.base, self.layers = base, list(layers)
        self.adapters = Adapters([layer_dims(base, n) for n in layers], rank)

    def forward(self, x: Tensor) -> Tensor:
        factors = {
            name: (a.T[None], b.T[None])  # (1, out, r), (1, in, r)
            for name, a, b in zip(self.layers, self.adapters.A, self.adapters.B, strict=True)
        }
        with low_rank_population(self.base, factors):
            return self.base(x)


class LoRATask:
    """`base_task`'s network with rank-`rank` adapters on `layers` (default: every nn.Linear /
    Conv1D except a tied head; pass e.g. `linear_layers(model, "transformer.h.")`)."""

    def __init__(
        self,
        base_task: Task,
        rank: int = 4,
        layers: list[str] | None = None,
        init_scale: float = 0.02,
        base_genome: Tensor | None = None,
    ):
        if rank < 1:
            raise ValueError(f"LoRATask: rank must be >= 1, got {rank}")
        self.base_task, self.rank, self.init_scale = base_task, int(rank), float(init_scale)
        self.layers = list(layers) if layers is not None else linear_layers(base_task.model)
        if not self.layers:
            raise ValueError("LoRATask: the base network has no nn.Linear / Conv1D layer")
        # the network the adapters change, built once: the base task's own, or a copy carrying
        # `base_genome` (a zoo member, a trained network)
        base_model = base_task.model
        if base_genome is not None:
            base_model = genome_to_module(base_task, base_genome)
        self.model = LowRankNetwork(base_model, self.layers, self.rank)
        holder = nn.Module()
        holder.adapters = self.model.adapters  # the genome: the adapters alone, named as in model
        self.spec = GenomeSpec.from_module(holder)
        self.name = f"{base_task.name}+rank{self.rank}"
        if isinstance(base_task, MinibatchTask):  # fresh minibatches of the base task's data
            self.batch = base_task.batch

    @property
    def device(self) -> torch.device:
        return self.base_task.device

    def to(self, device: str | torch.device) -> LoRATask:
        self.base_task.to(device)
        self.model.to(device)  # with the base network it holds
        return self

    def factors(self, genomes: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
        """`(P, d)` genomes -> {layer: (A (P, out, r), B (P, in, r))}."""
        return self.factors_of(self.spec.unflatten(genomes))  # {name: (P, *shape)}

    # ---- the base task's data, as a `Task` offers it (pretraining and evolution use these) ---
    train_data = property(lambda self: self.base_task.train_data)
    test_data = property(lambda self: self.base_task.test_data)
    eval_batch_size = property(lambda self: self.base_task.eval_batch_size)
    kind = property(lambda self: self.base_task.kind)
    loss_fn = property(lambda self: self.base_task.loss_fn)

    def hold_out(self, fraction: float, seed: int) -> None:
        self.base_task.hold_out(fraction, seed)

    def validation_losses(self, genomes: Tensor, chunks: int, metric: str = "loss") -> Tensor:
        """`(P, chunks)` losses (or error rates) of the adapters on the base task's validation
        parts."""
        return chunked_losses(self, genomes, self.base_task.val_data, chunks, metric)

    def sample_batch(self, generator: torch.Generator | None = None, batch_size: int | None = None):
        return self.base_task.sample_batch(generator, batch_size)

    def fitness_batch(self):
        return self.base_task.fitness_batch()

    def params(self, genomes: Tensor) -> dict[str, Tensor]:
        return self.spec.unflatten(genomes if genomes.dim() == 2 else genomes[None])

    def factors_of(self, params: dict[str, Tensor] | Tensor) -> dict[str, tuple[Tensor, Tensor]]:
        if isinstance(params, Tensor):
            return self.factors(params)
        return {name: (params[f"adapters.A.{i}"].transpose(1, 2),  # (P, r, out) -> (P, out, r)
                       params[f"adapters.B.{i}"].transpose(1, 2))
                for i, name in enumerate(self.layers)}  # fmt: skip

    def fitness(self, params: dict[str, Tensor] | Tensor, batch: Any = None) -> Tensor:
        """`(P,)` loss of adapters given as `{name: (P, *shape)}` or `(P, d)` (differentiable)."""
        return self.base_task.fitness_low_rank(self.factors_of(params), batch, self.model.base)

    def metrics(self, params: dict[str, Tensor] | Tensor, batch: Any = None) -> dict[str, Tensor]:
        return self.base_task.metrics_low_rank(self.factors_of(params), batch, self.model.base)

    def fitness_genomes(self, genomes: Tensor, batch: Any = None) -> Tensor:
        return self.base_task.fitness_low_rank(self.factors(genomes), batch, self.model.base)

    def init_genomes(self, population: int, generator: torch.Generator | None = None) -> Tensor:
        """LoRA's start: A = 0, B ~ N(0, init_scale²), so each member is the base network."""
        g = torch.randn(population, self.spec.numel, generator=generator) * self.init_scale
        sd = self.spec.unflatten(g)
        for i in range(len(self.layers)):
            sd[f"adapters.A.{i}"].zero_()
        return self.spec.flatten_batch(sd).to(self.spec.dtype)

    def network_genome(self, genome: Tensor) -> Tensor:
        """The base task's `(n,)` genome of the network `genome`'s adapters build (materialised)."""
        from latent_evo.models.lowrank import materialize

        factors = self.factors(genome[None])  # {layer: (A (1, out, r), B (1, in, r))}
        return self.base_task.spec.flatten(materialize(self.model.base, factors, 0))

    def evaluate(self, genome: Tensor) -> dict[str, float]:
        return self.base_task.evaluate(self.network_genome(genome))


def load_base_genome(task: Any, path: str | Path) -> Tensor:
    """The `(n,)` genome of `task`'s network stored in a safetensors state dict at `path` (GPT-2:
    the public tensor names, prefixed or bare, as in `GPT2.from_safetensors`). A missing file, a
    missing tensor or a tensor of the wrong shape is refused, naming them, before any work."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from latent_evo.models.gpt2 import GPT2, canonical_gpt2_names

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"base weights: no safetensors file at {path}")
    try:
        sd = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise ValueError(f"base weights {path}: not a readable safetensors file ({e})") from None
    if isinstance(task.model, GPT2):
        sd = canonical_gpt2_names(sd)
    names = [t.name for t in task.spec.tensors]
    missing = [k for k in names if k not in sd]
    wrong = [
        f"{t.name} {tuple(sd[t.name].shape)} (expected {tuple(t.shape)})"
        for t in task.spec.tensors
        if t.name in sd and tuple(sd[t.name].shape) != tuple(t.shape)
    ]
    if missing or wrong:
        raise ValueError(
            f"base weights {path} do not fit task {task.name!r}: "
            + "; ".join(
                ([f"missing {', '.join(missing)}"] if missing else [])
                + ([f"mis-shaped {', '.join(wrong)}"] if wrong else [])
            )
        )
    return task.spec.flatten({k: sd[k] for k in names})


def lora_task(
    base: str,
    base_weights: str | Path | None = None,
    rank: int = 4,
    include: str = "",
    init_scale: float = 0.02,
    **base_overrides: Any,
) -> LoRATask:
    """The registered `lora` task: adapters of task `base` (built with `base_overrides`) around
    the network in `base_weights` (a safetensors state dict; default the base task's init), on
    the layers whose names contain `include` (GPT-2's blocks: "transformer.h.")."""
    from latent_evo.tasks import get_task

    task = get_task(base, **base_overrides)
    genome = load_base_genome(task, base_weights) if base_weights is not None else None
    layers = linear_layers(task.model, include)
    if not layers:
        raise ValueError(f"lora task: no linear layer of {base!r} has {include!r} in its name")
    return LoRATask(task, rank, layers, init_scale, genome)


def lora_task_for(
    name_or_path: str | os.PathLike,
    part: int | None = None,
    batch_size: int = 16,
    device: str = "cpu",
    revision: str | None = None,
):
    """`(task, zoo config)`: the `lora` task a LoRA compressor (a folder or Hub id) was trained for (its base
    network, stored beside it, and its rank and matrices, from its pretraining record). `part`
    cuts the base's text to that corpus part (of the record's parts), its held-out windows every
    10th block; `batch_size` windows make the fixed fitness sample."""
    from latent_evo.compressor.hub import (
        BUNDLED_GPT2,
        PRETRAINING_FILE,
        _read_json,
        base_weights_path,
        is_local,
    )
    from latent_evo.compressor.mixin import _resolve
    from latent_evo.tasks import get_task

    name = str(Path(name_or_path).expanduser()) if is_local(name_or_path) else str(name_or_path)
    record = _resolve(name, PRETRAINING_FILE, revision=revision)
    zoo = (_read_json(record).get("zoos") or [{}])[0]
    if zoo.get("task") != "lora":
        raise ValueError(
            f"{record}: not a low-rank (LoRA) compressor (its zoo task is {zoo.get('task')!r}); "
            f"this needs one, e.g. the bundled {BUNDLED_GPT2!r}"
        )
    config = zoo.get("config") or {}
    overrides = {k: v for k, v in zoo["task_overrides"].items() if k not in ("data", "device")}
    overrides.update(base_weights=str(base_weights_path(name, revision)),
                     batch_size=batch_size, fitness_batch_size=batch_size)  # fmt: skip
    if part is not None:
        parts = int(config.get("parts", 16))
        if not 0 <= part < parts:
            raise ValueError(f"--part {part}: the corpus has parts 0..{parts - 1}")
        overrides["data"] = {"part": [part, parts], "part_val": "blocks"}
    elif "data" in zoo["task_overrides"]:
        overrides["data"] = zoo["task_overrides"]["data"]  # the base network's own text
    return get_task("lora", device=device, **overrides), config
