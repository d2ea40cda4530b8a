"""A population of low-rank variants of one network, evaluated without building their weights.

Member p of the population is the base network with some linear layers changed by a rank-r
delta, in function space

    y_p = base_layer(x_p) + (x_p @ B_p) @ A_pᵀ          A_p (out, r), B_p (in, r)

for `nn.Linear` (weight (out, in): W_p = W + A_p B_pᵀ) and GPT-2's `Conv1D` (weight (in, out):
W_p = W + B_p A_pᵀ) alike. The population's inputs are stacked member-major along the batch
dimension, (P * b, ...), so every shared op (embeddings, LayerNorm, attention, the base matmuls)
runs once for the whole population as one batch, and each targeted layer adds its members'
corrections with two batched matmuls of width r: O((in + out) r) extra work per token against
in * out for the layer, and no (P, out, in) tensor ever exists. This is EGGROLL's
`x Wᵀ + (x B) Aᵀ` (Sarkar et al. 2025) as a forward pass; the same factors are what a low-rank
latent decoder emits.

Axis legend: P population, b inputs per member, N = b * (tokens) rows per member, r rank.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import Tensor, nn

#: factors of one layer: A (P, out, r), B (P, in, r)
Factors = tuple[Tensor, Tensor]


def _layout(module: nn.Module) -> str:
    """ "out_in" for nn.Linear's (out, in) weight, "in_out" for GPT-2's Conv1D (in, out)."""
    if isinstance(module, nn.Linear):
        return "out_in"
    if type(module).__name__ == "Conv1D" and hasattr(module, "weight"):
        return "in_out"
    raise TypeError(
        f"low-rank population: {type(module).__name__} is not nn.Linear or GPT-2's Conv1D"
    )


def layer_dims(model: nn.Module, name: str) -> tuple[int, int]:
    """(in, out) of the linear layer `name` in `model`."""
    module = model.get_submodule(name)
    w = module.weight
    return (w.shape[1], w.shape[0]) if _layout(module) == "out_in" else (w.shape[0], w.shape[1])


def linear_layers(model: nn.Module, include: str = "") -> list[str]:
    """Names of the model's nn.Linear / Conv1D layers (optionally only those containing
    `include`), e.g. GPT-2's 4 projections per block; a tied output head is left out."""
    out = []
    for name, module in model.named_modules():
        if include and include not in name:
            continue
        try:
            _layout(module)
        except TypeError:
            continue
        if name != "lm_head":  # GPT-2's head shares the embedding: not a free matrix
            out.append(name)
    return out


def check_factors(model: nn.Module, factors: Mapping[str, Factors]) -> int:
    """Every layer named exists with matching factor shapes; returns the population size."""
    sizes = set()
    for name, (a, b) in factors.items():
        try:
            n_in, n_out = layer_dims(model, name)
        except AttributeError:
            raise KeyError(f"low-rank population: the model has no layer {name!r}") from None
        if a.dim() != 3 or b.dim() != 3 or a.shape[::2] != b.shape[::2]:
            raise ValueError(
                f"low-rank population: {name}: A {tuple(a.shape)} and B {tuple(b.shape)} must be "
                "(P, out, r) and (P, in, r) with the same P and r"
            )
        if a.shape[1] != n_out or b.shape[1] != n_in:
            raise ValueError(
                f"low-rank population: {name}: the layer maps {n_in} -> {n_out}, factors A "
                f"{tuple(a.shape)} / B {tuple(b.shape)} expect {b.shape[1]} -> {a.shape[1]}"
            )
        sizes.add(a.shape[0])
    if len(sizes) > 1:
        raise ValueError(f"low-rank population: factors disagree on the population size {sizes}")
    return sizes.pop() if sizes else 0


@contextmanager
def low_rank_population(model: nn.Module, factors: Mapping[str, Factors]) -> Iterator[int]:
    """Within the block, `model(x)` on member-major stacked inputs (P * b, ...) computes every
    member's output, member p's layers `name` carrying A_p B_pᵀ; yields P."""
    population = check_factors(model, factors)
    handles = []

    def hook_for(a: Tensor, b: Tensor):
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], out: Tensor) -> Tensor:
            x = inputs[0]
            xs = x.reshape(population, -1, x.shape[-1])  # (P, N, in) member p's rows
            low = torch.bmm(xs, b.to(x.dtype))  # (P, N, r)
            ys = out.view(population, -1, out.shape[-1])  # (P, N, out) the base output, in place
            return ys.baddbmm_(low, a.to(x.dtype).transpose(1, 2)).view(out.shape)

        return hook

    try:
        for name, (a, b) in factors.items():
            handles.append(model.get_submodule(name).register_forward_hook(hook_for(a, b)))
        yield population
    finally:
        for h in handles:
            h.remove()


def materialize(model: nn.Module, factors: Mapping[str, Factors], member: int) -> dict[str, Tensor]:
    """Member `member`'s full state dict (the deltas added to the weights): the slow,
    memory-hungry path, for checking and for exporting one network."""
    # parameters once each (a tied head appears under one name) and the buffers
    named = [*model.named_parameters(), *model.named_buffers()]
    sd = {k: v.detach().clone() for k, v in named}
    for name, (a, b) in factors.items():
        module = model.get_submodule(name)
        delta = a[member] @ b[member].T  # (out, in)
        key = f"{name}.weight"
        sd[key] = sd[key] + (delta if _layout(module) == "out_in" else delta.T).to(sd[key].dtype)
    return sd


def canonical_factors(a: Tensor, b: Tensor, reference: Tensor | None = None) -> Factors:
    """The canonical factors of each member's A Bᵀ. A Bᵀ does not change under A Q, B Q⁻ᵀ (any
    invertible r x r Q), so two equal adapters can have unrelated factors; a zoo stored in one
    canonical form shows a compressor equal adapters as equal, and similar ones as similar.

    reference None: the SVD form, A = U √σ, B = V √σ, singular values in decreasing order, each
        column's sign fixed so A's largest entry is positive.
    reference (in, r): the gauge closest to a fixed B_ref (e.g. the LoRA init every adapter of a
        zoo started from): B = the projection of B_ref onto the row space of A Bᵀ, A = the
        matching factor. It depends only on the product, and it is continuous in it: a small
        change of A Bᵀ moves the factors a little, where the SVD form can swap columns or flip
        signs (which is what a compressor cannot learn).
    a (P, out, r), b (P, in, r) -> the same shapes, same products A Bᵀ up to float rounding.
    """
    if reference is not None:
        qb, _ = torch.linalg.qr(b.double())  # (P, in, r) orthonormal basis of B's columns
        b2 = qb @ (qb.transpose(1, 2) @ reference.double())  # (P, in, r) B_ref projected
        # A' = A Bᵀ B' (B'ᵀ B')⁻¹, so that A' B'ᵀ = A Bᵀ P = A Bᵀ
        gram = b2.transpose(1, 2) @ b2  # (P, r, r)
        a2 = torch.linalg.solve(gram, (a.double() @ (b.double().transpose(1, 2) @ b2)).mT).mT
        return a2.to(a.dtype), b2.to(b.dtype)
    qa, ra = torch.linalg.qr(a.double())  # (P, out, r), (P, r, r)
    qb, rb = torch.linalg.qr(b.double())  # (P, in, r), (P, r, r)
    u, s, vh = torch.linalg.svd(ra @ rb.transpose(1, 2))  # core (P, r, r) = u diag(s) vh
    root = s.sqrt().unsqueeze(1)  # (P, 1, r)
    a2 = (qa @ u) * root  # (P, out, r)
    b2 = (qb @ vh.transpose(1, 2)) * root  # (P, in, r)
    pivot = a2.abs().argmax(1, keepdim=True)  # (P, 1, r) row of each column's largest entry
    sign = torch.sign(a2.gather(1, pivot))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return (a2 * sign).to(a.dtype), (b2 * sign).to(b.dtype)
