"""Search spaces: how a strategy's `(P, d)` candidates become `(P, n)` genomes.

    DirectSpace     genome = x                                        (d = n, the baseline)
    SubsetSpace     genome = base with the entries of some tensors set to x   (d = their size)
    LatentSpace     genome = decode(z)                                 (d = s, the decoder's image)
    ResidualSpace   genome = base + alpha * (decode(z_a + u) - decode(z_a))

Residual search never caps accuracy at the decoder's image: at u = 0 the genome *is* the base
(a real network, not its reconstruction), the decoder only proposes *changes*, and `rebase`
moves the base to the best genome found, so the reachable set grows as the search proceeds:
after k re-bases it is base_0 + the sum of k decoded differences, not decode(R^s).

A compressor here is anything with `encode_genomes((P, n)) -> (P, s)`,
`decode_genomes((P, s)) -> (P, n)` and `latent_size` (see `latent_evo.compressor.attention.Compressor`).
`to_genomes` / `from_genomes` are differentiable (re-encoding after a fine-tune refines codes by
gradient descent); the loop calls them under `torch.no_grad()`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fnmatch import fnmatchcase
from typing import Any

import torch
from torch import Tensor


def decode_chunked(compressor: Any, z: Tensor, chunk: int = 0) -> Tensor:
    """`(P, s) -> (P, n)`, `chunk` codes at a time (0 = all) so decoder memory stays bounded."""
    if chunk <= 0 or z.shape[0] <= chunk:
        return compressor.decode_genomes(z)
    return torch.cat([compressor.decode_genomes(z[i : i + chunk]) for i in range(0, len(z), chunk)])


def encode_chunked(compressor: Any, g: Tensor, chunk: int = 0) -> Tensor:
    if chunk <= 0 or g.shape[0] <= chunk:
        return compressor.encode_genomes(g)
    return torch.cat([compressor.encode_genomes(g[i : i + chunk]) for i in range(0, len(g), chunk)])


class SearchSpace:
    name = "base"
    dim: int
    shapes: list | None = None  # matrix / vector segments of a direct space, else None
    # a space made of components (the code, decoder parameters): their sizes and a GA's
    # per-component mutation probabilities, else None
    groups: list[int] | None = None
    mutation_probs: list[float] | None = None

    def to_genomes(self, x: Tensor) -> Tensor:
        """`(P, d)` candidates -> `(P, n)` genomes."""
        raise NotImplementedError

    def from_genomes(self, g: Tensor) -> Tensor:
        """`(P, n)` genomes -> `(P, d)` candidates that (approximately) decode back to them."""
        raise NotImplementedError

    def from_codes(self, z: Tensor) -> Tensor:
        """`(P, s)` latent codes (prior samples) -> `(P, d)` candidates that decode to them."""
        return z

    def initial_mean(self) -> Tensor | None:
        """`(d,)` where a search with `init.kind: task` starts when the space has its own
        initialisation (a generator's init); None: fresh task genomes mapped into the space."""
        return None

    def state_dict(self) -> dict[str, Tensor]:
        return {}

    def load_state_dict(self, sd: dict[str, Tensor]) -> None:
        pass


#: `(space, x (P, d)) -> (fitness (P,), genomes (P, n))`, counting the evaluations it spends
Evaluate = Callable[[SearchSpace, Tensor], tuple[Tensor, Tensor]]


def tensor_shapes(spec: Any, patterns: list[str] | tuple[str, ...] | None = None) -> list:
    """The genome's tensors (those matching `patterns`, default all) as the segments a
    structure-aware strategy (EGGROLL's low-rank matrix noise) needs, in genome order: a matrix
    as (rows, cols), a conv kernel (out, in, k, ...) as (out, in * k * ...) (its row-major
    flattening), anything else as (numel,)."""
    shapes = []
    for t in spec.tensors:
        if patterns is not None and not any(fnmatchcase(t.name, p) for p in patterns):
            continue
        n = math.prod(t.shape)
        if len(t.shape) >= 2 and n:
            shapes.append((int(t.shape[0]), n // int(t.shape[0])))
        elif n:
            shapes.append((n,))
    return shapes


class DirectSpace(SearchSpace):
    """The flat genome; `shapes` (`tensor_shapes(spec)`) tells a structure-aware strategy where
    its matrices are."""

    name = "direct"

    def __init__(self, numel: int, shapes: list | None = None):
        self.dim = numel
        self.shapes = shapes

    def to_genomes(self, x: Tensor) -> Tensor:
        return x

    def from_genomes(self, g: Tensor) -> Tensor:
        return g


class SubsetSpace(SearchSpace):
    """Direct search over some entries of the genome (`index`, e.g. the output layer's weights);
    every other entry stays at `base`, typically the best genome when the search switched here.
    Re-fitting the head of a network whose features came from latent search is the
    gradient-free analogue of fine-tuning only the last layer in transfer learning."""

    name = "subset"

    def __init__(self, numel: int, index: Tensor, shapes: list | None = None):
        if index.numel() == 0:
            raise ValueError("SubsetSpace: the index selects no genome entries")
        self.numel = int(numel)
        self.index = index.long()
        self.dim = int(index.numel())
        self.shapes = shapes  # of the selected tensors, in genome order (see `tensor_shapes`)
        self.base: Tensor | None = None  # (n,)

    def set_base(self, base: Tensor) -> None:
        if base.shape != (self.numel,):
            raise ValueError(
                f"SubsetSpace: base has shape {tuple(base.shape)}, not ({self.numel},)"
            )
        self.base = base.detach().clone()
        self.index = self.index.to(base.device)

    def to_genomes(self, x: Tensor) -> Tensor:
        if self.base is None:
            raise RuntimeError("SubsetSpace: call set_base(genome) before decoding")
        g = self.base.expand(x.shape[0], -1).clone()  # (P, n)
        g[:, self.index] = x.to(g.dtype)
        return g

    def from_genomes(self, g: Tensor) -> Tensor:
        return g[:, self.index.to(g.device)]

    def state_dict(self) -> dict[str, Tensor]:
        return {} if self.base is None else {"base": self.base}

    def load_state_dict(self, sd: dict[str, Tensor]) -> None:
        if "base" in sd:
            self.set_base(sd["base"])


def subset_index(spec: Any, patterns: list[str] | tuple[str, ...]) -> Tensor:
    """Flat genome indices of the tensors whose names match any of the glob `patterns`
    (`["layers.2.*"]`, `["*.bias"]`), in genome order; an unmatched pattern is an error that
    lists the tensor names."""
    names = [t.name for t in spec.tensors]
    for p in patterns:
        if not any(fnmatchcase(n, p) for n in names):
            shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
            raise ValueError(f"tensor pattern {p!r} matches no tensor of the genome ({shown})")
    parts = [
        torch.arange(off, off + k)
        for name, off, k in zip(names, spec.offsets, spec.numels, strict=True)
        if any(fnmatchcase(name, p) for p in patterns)
    ]
    return torch.cat(parts)


class LatentSpace(SearchSpace):
    name = "latent"

    def __init__(self, compressor: Any, decode_chunk: int = 0):
        self.compressor = compressor
        self.dim = int(compressor.latent_size)
        self.decode_chunk = decode_chunk

    def to_genomes(self, x: Tensor) -> Tensor:
        return decode_chunked(self.compressor, x, self.decode_chunk)

    def from_genomes(self, g: Tensor) -> Tensor:
        return encode_chunked(self.compressor, g, self.decode_chunk)


class ResidualSpace(SearchSpace):
    """genome = base + alpha * (decode(anchor + u) - decode(anchor)); `u` is what the strategy
    searches, so u = 0 is exactly the base network."""

    name = "residual"

    def __init__(self, compressor: Any, alpha: float = 1.0, decode_chunk: int = 0):
        self.compressor = compressor
        self.dim = int(compressor.latent_size)
        self.alpha = float(alpha)
        self.decode_chunk = decode_chunk
        self.base: Tensor | None = None  # (n,)
        self.anchor: Tensor | None = None  # (s,) latent the differences are taken around
        self.anchor_genome: Tensor | None = None  # (n,) decode(anchor), cached

    @torch.no_grad()
    def set_base(self, base: Tensor, anchor: Tensor | None = None) -> None:
        """Use `base` (n,) as the centre; its anchor code defaults to `encode(base)`."""
        self.base = base.detach().clone()
        if anchor is None:
            anchor = self.compressor.encode_genomes(base[None])[0]
        self.anchor = anchor.detach().clone()
        self.anchor_genome = self.compressor.decode_genomes(self.anchor[None])[0]

    def _check(self) -> None:
        if self.base is None:
            raise RuntimeError("ResidualSpace: call set_base(genome) before decoding")

    def to_genomes(self, x: Tensor) -> Tensor:
        self._check()
        dec = decode_chunked(self.compressor, self.anchor + x, self.decode_chunk)  # (P, n)
        return self.base + self.alpha * (dec - self.anchor_genome)

    def from_genomes(self, g: Tensor) -> Tensor:
        # invert base + alpha * (decode(a + u) - decode(a)) = g  via the encoder
        self._check()
        target = self.anchor_genome + (g - self.base) / self.alpha
        return encode_chunked(self.compressor, target, self.decode_chunk) - self.anchor

    @torch.no_grad()
    def rebase(self, genome: Tensor, u: Tensor) -> None:
        """Move the base to `genome` (the best found), produced by candidate `u`. The anchor
        moves to `anchor + u`, so a candidate's *latent point* keeps its meaning: the caller
        shifts the strategy by `-u` and the search continues around the new base."""
        self._check()
        self.set_base(genome, self.anchor + u)

    def state_dict(self) -> dict[str, Tensor]:
        if self.base is None:
            return {}
        return {"base": self.base, "anchor": self.anchor, "anchor_genome": self.anchor_genome}

    def load_state_dict(self, sd: dict[str, Tensor]) -> None:
        # the caller has moved `sd` to the run's device
        if "base" in sd:
            self.base = sd["base"].clone()
            self.anchor = sd["anchor"].clone()
            self.anchor_genome = sd["anchor_genome"].clone()


class DecoderSpace(SearchSpace):
    """The latent code and chosen decoder parameters, searched together (Risi & Stanley 2019
    mutate one component of a multi-component network or the other):

        x = [z (s) | delta_1 (k_1) | ... | delta_c (k_c)]
        genome = decode(z; theta_j = theta0_j + scale_j * delta_j)       (full component)
                 decode(z; W_j = W0_j + scale_j * B_j @ A_j)             (rank r: B (out, r)
                                                                          searched, A fixed)

    At delta = 0 this is the latent space. A component's `scale` is its step size relative to
    the latent's, so an isotropic ES takes per-component steps; `groups` (the component sizes,
    latent first) let a GA mutate each component with its own probability. Searching decoder
    parameters lets the genome leave the decoder's image, which caps latent search on a task
    outside the compressor's family.

    Each distinct delta decodes in one batch with the parameters written in place (and restored
    afterwards), so a population whose members share their decoder part decodes at the latent
    space's cost; a population of distinct deltas costs one decode call each.
    """

    name = "decoder"

    def __init__(
        self,
        compressor: Any,
        components: list[Any],
        seed: int = 0,
        decode_chunk: int = 0,
        latent_mutation_prob: float = 1.0,
    ):
        self.compressor = compressor
        self.latent_dim = int(compressor.latent_size)
        self.decode_chunk = decode_chunk
        named = dict(compressor.named_parameters())
        gen = torch.Generator().manual_seed(int(seed) + 4242)
        self.parts: list[tuple[str, Tensor, Tensor | None, float]] = []  # name, base, A, scale
        self.groups = [self.latent_dim]
        taken: set[str] = set()
        for i, comp in enumerate(components):
            names = [n for n in named if any(fnmatchcase(n, p) for p in comp.params)]
            if not names:
                shown = ", ".join(list(named)[:16]) + (", ..." if len(named) > 16 else "")
                raise ValueError(
                    f"decoder.components[{i}].params {comp.params} match no parameter of the "
                    f"compressor ({shown})"
                )
            size = 0
            for n in names:
                if n in taken:
                    raise ValueError(f"decoder.components[{i}]: {n!r} is in two components")
                taken.add(n)
                p = named[n].detach()
                a = None
                if comp.rank > 0 and p.ndim == 2:  # LoRA-FA: only B is searched
                    a = torch.randn(comp.rank, p.shape[1], generator=gen) / math.sqrt(p.shape[1])
                    a = a.to(p.device, p.dtype)
                    size += p.shape[0] * comp.rank
                else:
                    size += p.numel()
                self.parts.append((n, p.clone(), a, float(comp.scale)))
            self.groups.append(size)
        self._params = {n: named[n] for n, *_ in self.parts}
        # a GA's per-component mutation probabilities (see `make_strategy`), in `groups` order
        self.mutation_probs = [float(latent_mutation_prob)] + [c.mutation_prob for c in components]
        self.dim = sum(self.groups)

    def _deltas(self, delta: Tensor) -> list[Tensor]:
        """`(k,)` decoder coordinates -> each parameter's change (its shape)."""
        out, off = [], 0
        for _, base, a, scale in self.parts:
            if a is None:
                k = base.numel()
                out.append(scale * delta[off : off + k].view_as(base))
            else:
                k = base.shape[0] * a.shape[0]
                out.append(scale * delta[off : off + k].view(base.shape[0], a.shape[0]) @ a)
            off += k
        return out

    def _write(self, deltas: list[Tensor] | None) -> None:
        with torch.no_grad():
            for i, (n, base, _, _) in enumerate(self.parts):
                p = self._params[n]
                p.copy_(base if deltas is None else base + deltas[i].to(p.dtype))

    def to_genomes(self, x: Tensor) -> Tensor:
        s = self.latent_dim
        z, delta = x[:, :s], x[:, s:]  # (P, s), (P, k)
        uniq, inverse = torch.unique(delta, dim=0, return_inverse=True)  # (U, k), (P,)
        out: Tensor | None = None
        try:
            for j in range(len(uniq)):
                rows = (inverse == j).nonzero().squeeze(1)
                zero = not bool(uniq[j].any())
                self._write(None if zero else self._deltas(uniq[j]))
                g = decode_chunked(self.compressor, z[rows], self.decode_chunk)  # (|rows|, n)
                if out is None:
                    out = g.new_empty(x.shape[0], g.shape[1])
                out[rows] = g
        finally:
            self._write(None)  # the compressor is shared: it always leaves as it came
        return out

    def from_genomes(self, g: Tensor) -> Tensor:
        return self.from_codes(encode_chunked(self.compressor, g, self.decode_chunk))

    def from_codes(self, z: Tensor) -> Tensor:
        return torch.cat([z, z.new_zeros(z.shape[0], self.dim - self.latent_dim)], 1)  # delta 0

    def state_dict(self) -> dict[str, Tensor]:
        # the fixed projections come from the seed; saved so a checkpoint never depends on it
        return {f"proj.{n}": a for n, _, a, _ in self.parts if a is not None}

    def load_state_dict(self, sd: dict[str, Tensor]) -> None:
        self.parts = [(n, b, sd.get(f"proj.{n}", a), s) for n, b, a, s in self.parts]
