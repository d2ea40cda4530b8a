"""Vectorised cohort training: P models of one architecture trained in one pass.

Parameters are stacked `{name: (P, *shape)}`; one step is `vmap(grad(loss_of_one_model))` over the
population, so P small networks cost roughly one batched matmul per layer instead of P Python
loops. Optimisers (Adam with decoupled weight decay = `torch.optim.AdamW`, SGD with momentum and L2
weight decay = `torch.optim.SGD`) are written on the stacked tensors, with learning rate and weight
decay as `(P,)` tensors so every model has its own.

Independent of `Task`: it takes a template `nn.Module`, a `loss_fn(logits, targets)` and training
tensors. Per model: its batch order (a seed), an optional data subset and optional own targets
(label noise), its number of epochs (models that are done stop moving; the cohort runs until the
longest is done).

BatchNorm: the step runs the template in whatever mode it is in; the generator puts it in eval
mode (see `latent_evo.models.resnet`), so BatchNorm layers act as fixed affine maps whose running
statistics are genome buffers held constant during training. Only `named_parameters` are trained;
float buffers in `params` are passed through unchanged.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

Params = dict[str, torch.Tensor]  # {name: (P, *shape)}
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# on_checkpoint(epoch, params, models): `models` (k,) indices of the models checkpointed now;
# `params` are live views that later steps overwrite, so copy what you keep
CheckpointFn = Callable[[int, Params, torch.Tensor], None]


def checkpoint_schedule(checkpoint_epochs: Sequence[int], epochs: int) -> list[int]:
    """Epochs at which a model trained for `epochs` epochs is saved: the listed ones it reaches,
    plus its final epoch (so every model's last checkpoint is its trained state)."""
    return sorted({e for e in checkpoint_epochs if e < epochs} | {int(epochs)})


def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """`(n,)` the order a model sees its `n` training examples in `epoch`: a pure function of its
    own seed, so a model's run does not depend on which cohort it was trained in."""
    gen = torch.Generator().manual_seed((int(seed) * 1_000_003 + epoch) % 2**63)
    return torch.randperm(n, generator=gen)


class StackedOptimizer:
    """Adam(W) or SGD on stacked parameters with per-model lr / weight decay `(P,)`.

    The trainable tensors live in one flat `(P, n)` buffer (`params()` hands out views), so every
    update is a handful of in-place kernels over the whole population instead of several
    allocations per tensor; that halves the cost of a training step for small networks.
    """

    def __init__(
        self,
        params: Params,
        lr: torch.Tensor,
        weight_decay: torch.Tensor,
        kind: str = "adam",
        betas: Sequence[float] = (0.9, 0.999),
        eps: float = 1e-8,
        momentum: float = 0.9,
    ):
        if kind not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {kind!r}")
        self.kind, self.betas, self.eps, self.momentum = kind, tuple(betas), eps, momentum
        self.names = list(params)
        self.shapes = [tuple(v.shape[1:]) for v in params.values()]
        self.sizes = [v[0].numel() for v in params.values()]
        pop = next(iter(params.values())).shape[0]
        self.flat = torch.cat(
            [v.detach().reshape(pop, -1) for v in params.values()], 1
        ).clone()  # (P, n)
        self.lr = lr.to(self.flat).unsqueeze(1)  # (P, 1)
        self.wd = weight_decay.to(self.flat).unsqueeze(1)
        self.t = torch.zeros(
            pop, 1, dtype=self.flat.dtype, device=self.flat.device
        )  # steps per model
        self.m = torch.zeros_like(self.flat)
        self.v = torch.zeros_like(self.flat) if kind == "adam" else None

    def params(self) -> Params:
        """`{name: (P, *shape)}` views of the flat buffer (they see every update)."""
        parts = self.flat.split(self.sizes, dim=1)
        return {k: p.view(-1, *s) for k, p, s in zip(self.names, parts, self.shapes, strict=True)}

    @torch.no_grad()
    def step(self, grads: Params, active: torch.Tensor | None = None) -> None:
        """One update in place; models where `active` is False do not move (their lr is 0). A
        model, once inactive, never trains again, so its optimiser state no longer matters."""
        pop = self.flat.shape[0]
        g = torch.cat([grads[k].reshape(pop, -1) for k in self.names], 1)  # (P, n)
        act = torch.ones_like(self.t) if active is None else active.to(self.t).unsqueeze(1)
        lr = self.lr * act
        self.t += act
        p = self.flat
        if self.kind == "adam":  # torch.optim.AdamW's arithmetic
            b1, b2 = self.betas
            t = self.t.clamp(min=1)
            self.m.mul_(b1).add_(g, alpha=1 - b1)
            self.v.mul_(b2).addcmul_(g, g, value=1 - b2)
            p.mul_(1 - lr * self.wd)
            denom = (self.v / (1 - b2**t)).sqrt_().add_(self.eps)
            p.addcdiv_(self.m * (lr / (1 - b1**t)), denom, value=-1)
        else:  # torch.optim.SGD: L2 weight decay, momentum buffer starts at the first gradient
            g.add_(p * self.wd)
            self.m.mul_(self.momentum).add_(g)
            p.sub_(lr * (self.m if self.momentum else g))


def train_cohort(
    model: nn.Module,
    loss_fn: LossFn,
    params: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    lr: torch.Tensor,
    weight_decay: torch.Tensor,
    epochs: torch.Tensor,
    order_seeds: torch.Tensor,
    batch_size: int,
    optimizer: str = "adam",
    betas: Sequence[float] = (0.9, 0.999),
    momentum: float = 0.9,
    subsets: torch.Tensor | None = None,
    targets: torch.Tensor | None = None,
    checkpoint_epochs: Sequence[int] = (),
    on_checkpoint: CheckpointFn | None = None,
    on_step: Callable[[], None] | None = None,
) -> Params:
    """Train P models at once; returns their final stacked parameters.

    params: `{name: (P, *shape)}` initial weights (parameters and float buffers).
    x, y: training inputs `(N, ...)` and targets `(N, ...)`.
    lr, weight_decay: `(P,)`; epochs, order_seeds: `(P,)` integers.
    subsets: `(P, M)` indices into the N examples each model trains on (default: all N).
    targets: `(P, N)` per-model targets replacing `y` (label noise).
    Checkpoints follow `checkpoint_schedule(checkpoint_epochs, epochs[i])` per model.
    """
    pop = next(iter(params.values())).shape[0]
    device = x.device
    trainable = {n for n, _ in model.named_parameters()}
    epochs_l = [int(e) for e in epochs.tolist()]
    seeds = [int(s) for s in order_seeds.tolist()]
    schedules = [set(checkpoint_schedule(checkpoint_epochs, e)) for e in epochs_l]
    n_examples = subsets.shape[1] if subsets is not None else x.shape[0]
    lr, weight_decay = lr.to(device, torch.float32), weight_decay.to(device, torch.float32)
    epochs_t = torch.tensor(epochs_l, device=device)

    def loss_one(p: Params, const: Params, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return loss_fn(functional_call(model, {**p, **const}, (xb,)), yb)

    grad_fn = vmap(grad(loss_one))  # per-model gradient w.r.t. its own trainable tensors
    const = {k: v for k, v in params.items() if k not in trainable}
    opt = StackedOptimizer(
        {k: v for k, v in params.items() if k in trainable},
        lr,
        weight_decay,
        optimizer,
        betas=betas,
        momentum=momentum,
    )
    train = opt.params()  # views of the optimiser's flat buffer, updated in place
    rows = torch.arange(pop, device=device).unsqueeze(1)  # (P, 1)
    targets = targets.to(device) if targets is not None else None

    def checkpoint(epoch: int) -> None:
        due = [i for i in range(pop) if epoch in schedules[i]]
        if due and on_checkpoint is not None:
            on_checkpoint(epoch, {**train, **const}, torch.tensor(due))

    checkpoint(0)
    for epoch in range(max(epochs_l)):
        active = epochs_t > epoch  # (P,)
        act_mask = None if bool(active.all()) else active
        order = torch.stack([epoch_order(s, epoch, n_examples) for s in seeds]).to(device)  # (P, M)
        if subsets is not None:
            order = torch.gather(subsets.to(device), 1, order)  # positions -> example indices
        for start in range(0, n_examples, batch_size):
            idx = order[:, start : start + batch_size]  # (P, B)
            xb = x[idx]  # (P, B, ...)
            yb = targets[rows, idx] if targets is not None else y[idx]  # (P, B, ...)
            grads = grad_fn(train, const, xb, yb)
            opt.step(grads, act_mask)
            if on_step is not None:
                on_step()
        checkpoint(epoch + 1)
    return {**{k: v.clone() for k, v in train.items()}, **const}


def train_sequential(
    model: nn.Module,
    loss_fn: LossFn,
    params: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    lr: torch.Tensor,
    weight_decay: torch.Tensor,
    epochs: torch.Tensor,
    order_seeds: torch.Tensor,
    batch_size: int,
    optimizer: str = "adam",
    betas: Sequence[float] = (0.9, 0.999),
    momentum: float = 0.9,
    subsets: torch.Tensor | None = None,
    targets: torch.Tensor | None = None,
) -> Params:
    """The same training one model at a time with `torch.optim` (the reference `train_cohort` is
    tested against, and the baseline of the speed benchmark). Returns stacked final params."""
    pop = next(iter(params.values())).shape[0]
    finals = []
    for i in range(pop):
        m = copy.deepcopy(model)
        m.load_state_dict({k: v[i] for k, v in params.items()}, strict=False)
        kw = {"lr": float(lr[i]), "weight_decay": float(weight_decay[i])}
        if optimizer == "adam":
            opt = torch.optim.AdamW(m.parameters(), betas=tuple(betas), eps=1e-8, **kw)
        else:
            opt = torch.optim.SGD(m.parameters(), momentum=momentum, **kw)
        n = subsets.shape[1] if subsets is not None else x.shape[0]
        yi = targets[i] if targets is not None else y
        for epoch in range(int(epochs[i])):
            order = epoch_order(int(order_seeds[i]), epoch, n).to(x.device)
            if subsets is not None:
                order = subsets[i].to(x.device)[order]
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                opt.zero_grad(set_to_none=True)
                loss_fn(m(x[idx]), yi[idx]).backward()
                opt.step()
        sd = m.state_dict()
        finals.append({k: sd[k].detach() for k in params})
    return {k: torch.stack([f[k] for f in finals]) for k in params}


@torch.no_grad()
def evaluate_cohort(
    model: nn.Module,
    loss_fn: LossFn,
    params: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = 2048,
) -> dict[str, torch.Tensor]:
    """`{"loss": (P,), "accuracy": (P,)}` over all of (x, y), vmapped over models (accuracy only
    for integer class / token targets)."""

    def one(p: Params, xb: torch.Tensor, yb: torch.Tensor) -> dict[str, torch.Tensor]:
        out = functional_call(model, p, (xb,))
        m = {"loss": loss_fn(out, yb)}
        if out.shape[:-1] == yb.shape and not yb.is_floating_point():
            m["accuracy"] = (out.argmax(-1) == yb).float().mean()
        return m

    batched = vmap(one, in_dims=(0, None, None))
    sums: dict[str, torch.Tensor] = {}
    for s in range(0, len(x), batch_size):
        xb, yb = x[s : s + batch_size], y[s : s + batch_size]
        for k, v in batched(params, xb, yb).items():
            sums[k] = sums.get(k, 0) + v.double() * len(xb)
    return {k: (v / len(x)).float() for k, v in sums.items()}
