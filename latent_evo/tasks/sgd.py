"""The gradient reference every search result stands next to: Adam on the same architecture.

It trains one network of a task on minibatches of the task's training data and logs test
metrics along the way; the demo and the search benchmark report it beside every search.
"""

from __future__ import annotations

import time
from typing import Any

import torch


def minibatch_loss(task, genome: torch.Tensor, x, y, trainable: set[str]) -> torch.Tensor:
    """Mean task loss of ONE network (a flat genome that may require grad) on a minibatch: a
    plain functional_call (no vmap over a population of one). Genome entries that are not in
    `trainable` (BatchNorm running statistics) are detached."""
    from torch.func import functional_call

    params = {k: v if k in trainable else v.detach()
              for k, v in task.spec.unflatten(genome).items()}  # fmt: skip
    return task.loss_fn(functional_call(task.model, params, (x,)), y).mean()


def run_sgd(task, steps: int, lr: float, seed: int, batch_size: int = 128) -> dict[str, Any]:
    """Adam on minibatches of the same training data; test accuracy logged along the way."""
    from tqdm.auto import tqdm

    gen = torch.Generator().manual_seed(seed)
    genome = task.init_genomes(1, gen)[0].clone().requires_grad_(True)
    opt = torch.optim.Adam([genome], lr=lr)
    # buffers in the genome (BatchNorm running statistics) stay as they are, as in the zoo's
    # training: BatchNorm refuses a running_mean that requires grad; a zero gradient leaves
    # their slots unchanged under Adam
    trainable = {name for name, _ in task.model.named_parameters()}
    history, t0 = [], time.perf_counter()
    for step in tqdm(range(1, steps + 1), desc="SGD (Adam)", unit="step", dynamic_ncols=True):
        x, y = task.sample_batch(gen, batch_size)
        loss = minibatch_loss(task, genome, x, y, trainable)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % max(steps // 20, 1) == 0 or step == steps:
            history.append({"step": step, **task.evaluate(genome.detach())})
    final = task.evaluate(genome.detach())
    return {"history": history, "test": final, "wall_s": time.perf_counter() - t0, "steps": steps}
