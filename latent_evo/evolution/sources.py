"""Where a run's first genomes come from besides the task's own inits: one network file, a zoo,
the compressor's prior.

Both check the architecture against the task's `GenomeSpec` and name the file and the
mismatching tensor; a zoo is read through `ZooDataset`, the one zoo reader of the project.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor

from latent_evo.genome import GenomeSpec


def load_network_genome(path: str | Path, spec: GenomeSpec) -> Tensor:
    """A network's state dict (safetensors) -> `(n,)` genome; a mismatch names the tensor."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"network file {path} does not exist")
    sd = load_file(str(path))
    if "genome" in sd and len(sd) == 1:
        return sd["genome"]
    return spec.flatten(sd)


def load_zoo_genomes(path: str | Path, spec: GenomeSpec) -> Tensor:
    """Every checkpoint `(N, n)` of the zoo at `path` (a directory written by `latent-evo zoo`)."""
    from latent_evo.zoo.dataset import ZooDataset  # pyarrow: only when a zoo is asked for

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"init.path: no zoo directory at {path}")
    ds = ZooDataset(path, split="all")
    if ds.spec != spec:
        raise ValueError(
            f"init.path: zoo {path} holds another architecture than the task: "
            f"{ds.spec.describe_mismatch(spec)}"
        )
    return ds.genomes()


def prior_codes(
    compressor: Any, n: int, seed: int, evaluate: Callable[[Tensor], Tensor] | None = None
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """`n` codes drawn from the compressor's prior (seeded). With `evaluate` (genomes -> fitness,
    counted by the caller) they are decoded, evaluated and returned best first, with their
    fitness and genomes; without, in draw order and (codes, None, None)."""
    device = next(iter(compressor.parameters())).device
    codes = compressor.sample(n, torch.Generator(device).manual_seed(seed))  # (n, s)
    if evaluate is None:
        return codes, None, None
    with torch.no_grad():
        genomes = compressor.decode_genomes(codes)  # (n, n_params)
    f = evaluate(genomes)
    order = torch.argsort(torch.nan_to_num(f, nan=float("inf")), stable=True)
    return codes[order], f[order], genomes[order]


def decoding_loss(
    compressor: Any, genome: Tensor, evaluate: Callable[[Tensor], Tensor]
) -> tuple[float, float]:
    """Fitness of `genome (n,)` and of the compressor's copy of it, decode(encode(genome)): how
    much a search around its decoded image would start behind the network itself."""
    with torch.no_grad():
        copy = compressor.decode_genomes(compressor.encode_genomes(genome[None]))  # (1, n)
    f = evaluate(torch.cat([genome[None], copy.to(genome.dtype)]))  # (2,)
    return float(f[0]), float(f[1])


def starting_points(
    cfg: Any,
    task: Any,
    space: Any,
    compressor: Any,
    popsize: int,
    rng: torch.Generator,
    seed: int,
    evaluate: Callable[[Tensor], Tensor],
) -> tuple[Tensor | None, Tensor | None, tuple[Tensor, Tensor] | None]:
    """`(genomes, codes, scored)` where a run starts by `cfg` (an `InitConfig`): starting genomes
    `(k, n)` (best first, for a zoo) or codes `(k, s)` (None: the strategy's own default), and
    `(fitness (m,), genomes (m, n))` of what was evaluated to choose them (None: nothing)."""
    genomes = codes = None
    scored = None
    if cfg.kind == "task" and space.initial_mean() is not None:  # a generator's own init
        codes = space.initial_mean().to(task.device)[None]
    elif cfg.kind == "task":
        genomes = task.init_genomes(popsize, rng).to(task.device)
    elif cfg.kind == "network":  # the user's network: evaluated first, the incumbent to beat
        genomes = load_network_genome(cfg.path, task.spec).to(task.device)[None]
        scored = (evaluate(genomes), genomes)
    elif cfg.kind == "zoo":
        zoo = load_zoo_genomes(cfg.path, task.spec).to(task.device, task.spec.dtype)
        f = evaluate(zoo)
        scored = (f, zoo)
        genomes = zoo[torch.argsort(f, stable=True)[: cfg.top_k]]
    elif cfg.kind == "prior":
        if compressor is None:
            raise ValueError("init.kind='prior' needs a compressor")
        n, score = max(popsize, cfg.samples), cfg.samples > 0  # score: start from the best
        codes, f, g = prior_codes(compressor, n, seed, evaluate if score else None)
        if score:
            scored = (f, g)
            genomes = g[:1]  # a residual search's base: the best sample
    return genomes, codes, scored
