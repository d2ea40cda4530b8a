"""Decoding straight into a genome's raw slots: the residual token decoder's bank mix, in raw units.

Token t of tensor i decodes to normalised values x_t = base_t + c_t @ bank_t (M coefficients, M
directions of C values); the genome holds mean_i + std_i * x_t in the token's first L slots.
With the base folded in as one more direction,

    raw_t = [c_t, 1] @ [std_i * bank_t ; mean_i + std_i * base_t]        (M + 1 directions, L values)

so a run of consecutive same-length tokens of one tensor is one batched matmul written through
`out=` into a strided view of the (P, n) genome: neither the padded (P, T, C) token grid nor a
transposed copy of the genome is ever built (benchmarks/results/decode.md, BENCHMARKS.md).

Axis legend: P population, T tokens, t tokens of a run, M bank size, L real values per token.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

#: a run of tokens [lo, hi) of tensor `i`, L real values each, at genome offset g
Segment = tuple[int, int, int, int, int]  # (lo, hi, L, g, i)


def raw_segments(mask: Tensor, tensor_index: Tensor) -> list[Segment] | None:
    """Runs of tokens (lo, hi, L, genome offset, tensor) whose real values are the first L
    slots of each token and sit back to back in the genome; None when some token's values are
    not a prefix of its slots (then only the generic token path can decode)."""
    mask, tensor = mask.cpu(), tensor_index.cpu()  # (T, C), (T,)
    lengths = mask.sum(1)  # (T,)
    if not torch.equal(mask, torch.arange(mask.shape[1])[None] < lengths[:, None]):
        return None
    segs, g, t, T = [], 0, 0, len(lengths)
    while t < T:
        u = t
        while u < T and lengths[u] == lengths[t] and tensor[u] == tensor[t]:
            u += 1
        segs.append((t, u, int(lengths[t]), g, int(tensor[t])))
        g += (u - t) * int(lengths[t])
        t = u
    return segs


def raw_bank(bank: Tensor, base: Tensor, mean: Tensor, std: Tensor, L: int) -> Tensor:
    """Tokens' banks (t, M, C) and base (t, C) of one tensor (statistics `mean`, `std`) ->
    (t, M+1, L) = [std * bank; mean + std * base] over their L real slots."""
    raw = bank[:, :, :L] * std  # (t, M, L)
    offset = torch.addcmul(mean, base[:, None, :L], std)  # (t, 1, L)
    return torch.cat([raw, offset], 1)  # (t, M+1, L)


class RawBankCache:
    """Every run's `raw_bank`, kept while the watched tensors (bank, base, statistics) are the
    same objects at the same version: decode after decode in a search reuses them."""

    def __init__(self):
        self._key: tuple | None = None
        self._banks: list[Tensor] | None = None

    def get(self, watched: tuple[Tensor, ...], build: Callable[[], list[Tensor]]) -> list[Tensor]:
        key = tuple((t.data_ptr(), t._version, t.device) for t in watched)
        if self._banks is None or self._key != key:
            with torch.no_grad():
                self._banks = build()
            self._key = key
        return self._banks

    def clear(self) -> None:
        self._key, self._banks = None, None


def write_runs(
    out: Tensor,
    coef: Tensor,
    lo: int,
    hi: int,
    segs: list[Segment],
    bank_of: Callable[[int, int, int], Tensor],
) -> None:
    """Write the genome values of tokens [lo, hi) into `out` (P, n). coef (P, hi - lo, M):
    their bank coefficients; bank_of(j, a, b): run j's raw bank for its tokens [a, b)."""
    P = out.shape[0]
    coef = torch.cat([coef, coef.new_ones(P, hi - lo, 1)], -1)  # (P, T_b, M+1): 1 x the base
    for j, (s_lo, s_hi, L, g, _) in enumerate(segs):
        a, b = max(s_lo, lo), min(s_hi, hi)  # the run's part inside this block
        if a >= b:
            continue
        g += (a - s_lo) * L  # genome offset of token a
        bank = bank_of(j, a, b)  # (t, M+1, L)
        c = coef[:, a - lo : b - lo].transpose(0, 1)  # (t, P, M+1)
        target = out[:, g : g + (b - a) * L].view(P, b - a, L).transpose(0, 1)  # (t, P, L)
        if c.requires_grad or bank.requires_grad:  # autograd cannot flow through `out=`
            target.copy_(torch.bmm(c, bank))
        else:
            torch.bmm(c, bank, out=target)
