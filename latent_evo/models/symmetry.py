"""Hidden-unit permutation symmetries, applied to a whole population at once.

A *group* is a list of `(tensor_name, axis)` pairs that permute together when the hidden units of
one layer are permuted; `axis` counts the tensor's own dims (not the population dim). A group's
size n is the smallest axis length among its entries. An axis of length k·n is read as k
contiguous blocks of n, each permuted alike: that covers an LSTM's four gate blocks (4H rows)
and a CNN head reading a channel-last flattened feature map (L'·C columns).

`perm[i]` names the old unit that becomes unit i (index_select semantics), so applying the same
perm to every entry of a group leaves the network's function unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

Group = Sequence[tuple[str, int]]


def permutation_groups(model: nn.Module) -> list[list[tuple[str, int]]]:
    """The model's own `permutation_groups()`, or [] for models that state none (torchvision)."""
    fn = getattr(model, "permutation_groups", None)
    return fn() if callable(fn) else []


def _axis_len(
    state_dict_batch: Mapping[str, torch.Tensor], name: str, axis: int
) -> tuple[int, int]:
    """(dim in the batched tensor, its length); errors name the tensor at fault."""
    if name not in state_dict_batch:
        raise ValueError(f"permutation group names tensor {name!r}, absent from the state dict")
    t = state_dict_batch[name]
    ndim = t.dim() - 1  # without the population dim
    if not -ndim <= axis < ndim:
        raise ValueError(
            f"axis {axis} out of range for {name!r} of per-genome shape {tuple(t.shape[1:])}"
        )
    dim = (axis % ndim) + 1
    return dim, t.shape[dim]


def group_sizes(groups: Sequence[Group], state_dict_batch: Mapping[str, torch.Tensor]) -> list[int]:
    """Number of units n that each group permutes."""
    return [min(_axis_len(state_dict_batch, name, axis)[1] for name, axis in g) for g in groups]


def random_permutations(
    groups: Sequence[Group],
    state_dict_batch: Mapping[str, torch.Tensor],
    generator: torch.Generator | None = None,
) -> list[torch.Tensor]:
    """One uniformly random permutation (P, n) long per group and genome."""
    P = next(iter(state_dict_batch.values())).shape[0]
    device = next(iter(state_dict_batch.values())).device
    perms = []
    for n in group_sizes(groups, state_dict_batch):
        keys = torch.rand(
            P, n, generator=generator, device=generator.device if generator else "cpu"
        )
        perms.append(keys.argsort(dim=1).to(device))
    return perms


def apply_permutation(
    state_dict_batch: Mapping[str, torch.Tensor],
    groups: Sequence[Group],
    perms: Sequence[torch.Tensor],
) -> dict[str, torch.Tensor]:
    """Permute a population's stacked state dict `{name: (P, *shape)}`, genome p by `perms[g][p]`.

    `perms[g]` is a (P, n) long tensor of permutations for group g. Batched gathers, no loop over
    P. Returns a new dict; tensors outside every group are passed through unchanged.
    """
    if len(groups) != len(perms):
        raise ValueError(f"got {len(perms)} permutation tensors for {len(groups)} groups")
    out = dict(state_dict_batch)
    for g, (group, perm) in enumerate(zip(groups, perms, strict=True)):
        if perm.dim() != 2 or perm.dtype not in (torch.long, torch.int32):
            raise ValueError(
                f"perms[{g}] must be a (P, n) integer tensor, got {tuple(perm.shape)} {perm.dtype}"
            )
        P, n = perm.shape
        for name, axis in group:
            dim, size = _axis_len(out, name, axis)
            t = out[name]
            if t.shape[0] != P:
                raise ValueError(f"{name!r} has population size {t.shape[0]}, perms[{g}] has {P}")
            if size % n:
                raise ValueError(
                    f"{name!r} axis {axis} has length {size}, not a multiple of the group size {n}"
                )
            k = size // n
            perm_d = perm.to(device=t.device, dtype=torch.long)
            offsets = n * torch.arange(k, device=t.device).view(1, k, 1)
            index = (perm_d.unsqueeze(1) + offsets).reshape(
                P, size
            )  # (P, k*n): same perm per block
            rows = torch.arange(P, device=t.device).unsqueeze(1)  # (P, 1)
            moved = t.movedim(dim, 1)  # (P, size, ...)
            out[name] = moved[rows, index].movedim(1, dim).contiguous()
    return out
