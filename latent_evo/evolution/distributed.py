"""Population evaluation sharded over `torch.distributed` ranks (launched by `torchrun`).

Every rank runs the same seeded `ask()`, so every rank holds the same `(P, d)` population; each
evaluates a contiguous slice and the results are all-gathered, so every rank then `tell`s the
same fitness and the strategies stay in lock-step without ever broadcasting state.

    torchrun --nproc-per-node 2 -m latent_evo.cli evolve --config configs/evolve/x.yaml

Without an initialised process group (or with one rank) `shard_map` is a plain call.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return world()[0] == 0


def init_from_env(device: torch.device) -> bool:
    """Initialise the process group when launched by torchrun (WORLD_SIZE > 1). Gloo on CPU,
    NCCL on CUDA. Returns whether this process is part of a multi-process run."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return True


def shard_slice(population: int) -> slice:
    """This rank's contiguous slice of a population of `population` rows."""
    rank, size = world()
    per = math.ceil(population / size)
    lo = min(rank * per, population)
    return slice(lo, min(lo + per, population))


def shard_map(
    fn: Callable[[torch.Tensor], tuple[torch.Tensor, ...]], x: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """`fn(x)` for a `(P, ...)` input replicated on all ranks, each rank computing its slice.

    `fn` returns a tuple of tensors with leading dim = rows of its input; the tuple is
    all-gathered, so every rank gets the full results, in order.
    """
    rank, size = world()
    if size == 1:
        return fn(x)
    population = x.shape[0]
    per = math.ceil(population / size)
    sl = shard_slice(population)
    if sl.start == sl.stop:  # more ranks than individuals: compute one row for the shapes
        local = tuple(t[:0] for t in fn(x[:1]))
    else:
        local = fn(x[sl])
    out = []
    for t in local:
        # all_gather needs equal shapes: pad the last rank's (possibly short) slice
        pad = torch.zeros((per - t.shape[0], *t.shape[1:]), dtype=t.dtype, device=t.device)
        t = torch.cat([t, pad]).contiguous()
        parts = [torch.empty_like(t) for _ in range(size)]
        dist.all_gather(parts, t)
        out.append(torch.cat(parts)[:population])
    return tuple(out)
