"""The genome codec: a network's parameters as one flat vector, and back, bit-exactly.

A `GenomeSpec` is the ordered list of tensors that make up a network's genome. `flatten` packs a
state dict into `(n,)` (or `(P, n)` for a population); `unflatten` views a genome as a state dict
without copying, so a `(P, n)` population becomes `{name: (P, *shape)}` ready for
`torch.func.functional_call` under `vmap`.

Bit-exactness: a spec whose tensors share one dtype (the usual case) never casts anything, so every
bit pattern (NaN payloads, -0.0, subnormals) survives. A mixed-dtype spec stores its genome in the
promoted dtype (float16 + bfloat16 -> float32, anything + float64 -> float64); those widenings are
exact for every number, and NaNs are moved by bit manipulation because torch's casts canonicalise
NaN payloads.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import accumulate

import torch
from torch import nn

KINDS = ("weight", "bias", "norm", "embedding", "buffer")
_FLOAT_DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}
# (bits, mantissa bits, same-width integer dtype) of each float format, for exact NaN casts
_FORMATS = {
    torch.float16: (16, 10, torch.int16),
    torch.bfloat16: (16, 7, torch.int16),
    torch.float32: (32, 23, torch.int32),
    torch.float64: (64, 52, torch.int64),
}


class GenomeError(ValueError):
    """A genome or state dict does not match its `GenomeSpec`; the message names the culprit."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    kind: str  # one of KINDS: the tokenizer embeds it so the compressor knows what a chunk is

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


# Name parts (split on "." and "_") that mark a norm or an embedding when the owning module's
# type does not tell (hand-written LayerNorms, raw nn.Parameter embeddings as in nanoGPT).
_NORM_PART = re.compile(r"^(norm|ln|bn|gn|layernorm|batchnorm|groupnorm|rmsnorm)\d*$")
_EMB_PART = re.compile(r"^(wte|wpe|emb|embed|embeds|embedding|embeddings)\d*$")


def infer_kind(name: str, tensor: torch.Tensor, owner: nn.Module | None, is_buffer: bool) -> str:
    """Guess what role a tensor plays, from its owning module when known, else from its name."""
    if is_buffer:
        return "buffer"
    norm_types = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)
    if owner is not None:
        if isinstance(owner, norm_types):
            return "norm"
        if isinstance(owner, nn.Embedding | nn.EmbeddingBag):
            return "embedding"
    # whole name parts only: a substring test would call "subnet.fc.bias" a norm ("bn")
    parts = [p for p in re.split(r"[._]", name.lower()) if p]
    if tensor.dim() == 1 and any(_NORM_PART.match(p) for p in parts):
        return "norm"
    if any(_EMB_PART.match(p) or p.endswith(("emb", "embedding")) for p in parts):
        return "embedding"
    if name.rsplit(".", 1)[-1].startswith("bias") or tensor.dim() <= 1:
        return "bias"
    return "weight"


# ---- exact casts between float formats (torch canonicalises NaN payloads; we must not) ----------
def _nan_bits(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Re-encode every element of `x` as a NaN of `dtype` with the same sign and payload.

    Widening shifts the payload up, narrowing shifts it back down, so a widen -> narrow round trip
    returns the original bits (all payloads of a NaN that came from the narrow format survive).
    """
    src_bits, src_mant, src_int = _FORMATS[x.dtype]
    dst_bits, dst_mant, dst_int = _FORMATS[dtype]
    bits = x.view(src_int).to(torch.int64)
    sign = (bits >> (src_bits - 1)) & 1
    mant = bits & ((1 << src_mant) - 1)
    shift = dst_mant - src_mant
    mant = mant << shift if shift >= 0 else mant >> -shift
    exp_mask = ((1 << (dst_bits - 1 - dst_mant)) - 1) << dst_mant
    out = (sign << (dst_bits - 1)) | exp_mask | mant  # int64; for 64-bit the sign wraps correctly
    if dst_bits < 64:  # reinterpret the unsigned bit pattern as a signed int of the target width
        out = torch.where(out >= (1 << (dst_bits - 1)), out - (1 << dst_bits), out)
    return out.to(dst_int).view(dtype)


def exact_cast(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`x.to(dtype)` that also keeps NaN sign and payload bits (a no-op when dtypes agree)."""
    if x.dtype == dtype:
        return x
    y = x.to(dtype)
    if x.dtype in _FORMATS and dtype in _FORMATS:
        nan = torch.isnan(x)
        if bool(nan.any()):
            y = torch.where(nan, _nan_bits(x, dtype), y)
    return y


def _is_lossless(src: torch.dtype, dst: torch.dtype) -> bool:
    """Every value of `src` is representable in `dst` (float16 and bfloat16 both fit in float32)."""
    return src == dst or torch.promote_types(src, dst) == dst


class GenomeSpec:
    """Ordered tensors of a genome with their offsets into the flat vector.

    The genome's dtype is the common dtype of its tensors; mixed dtypes promote (float16 and
    bfloat16 to float32, anything with float64 to float64), which round-trips every tensor
    bit-exactly through `unflatten_to_module_dtypes`.

    `aliases` maps tied names to the tensor they share storage with (GPT-2's `lm_head.weight` ->
    `transformer.wte.weight`) and `excluded` lists float buffers deliberately left out; both may
    appear in a state dict passed to `flatten` without being an error.
    """

    def __init__(
        self,
        tensors: Iterable[TensorSpec],
        aliases: Mapping[str, str] | None = None,
        excluded: Iterable[str] = (),
    ):
        self.tensors: tuple[TensorSpec, ...] = tuple(tensors)
        if not self.tensors:
            raise GenomeError("a GenomeSpec needs at least one tensor")
        names = [t.name for t in self.tensors]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise GenomeError(f"duplicate tensor names in GenomeSpec: {dup}")
        for t in self.tensors:
            if t.kind not in KINDS:
                raise GenomeError(
                    f"tensor {t.name!r} has unknown kind {t.kind!r}; use one of {KINDS}"
                )
            if not all(isinstance(s, int) and s >= 0 for s in t.shape):
                raise GenomeError(f"tensor {t.name!r} has invalid shape {t.shape}")
            if t.dtype not in _FORMATS:
                raise GenomeError(
                    f"tensor {t.name!r} has dtype {t.dtype}; genomes hold {list(_FLOAT_DTYPES)}"
                )
        self.numels: tuple[int, ...] = tuple(t.numel for t in self.tensors)
        self.offsets: tuple[int, ...] = (0, *accumulate(self.numels))[:-1]
        self.numel: int = sum(self.numels)
        dtype = self.tensors[0].dtype
        for t in self.tensors[1:]:
            dtype = torch.promote_types(dtype, t.dtype)
        self.dtype: torch.dtype = dtype
        self._by_name = {t.name: i for i, t in enumerate(self.tensors)}
        self.aliases: dict[str, str] = dict(aliases or {})
        for alias, target in self.aliases.items():
            if target not in self._by_name:
                raise GenomeError(
                    f"alias {alias!r} points to {target!r}, which is not in the genome spec"
                )
        self.excluded: tuple[str, ...] = tuple(excluded)

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_module(cls, module: nn.Module, include_buffers: bool = True) -> GenomeSpec:
        """Parameters and float buffers (BatchNorm running stats change the function), in state
        dict order; integer buffers (num_batches_tracked) and non-persistent buffers are not part
        of the genome, and a tied tensor appears once (its other names become aliases)."""
        owners = dict(module.named_modules())
        param_ids = {id(p) for p in module.parameters()}
        specs, aliases, excluded = [], {}, []
        first_name: dict[int, str] = {}
        for name, t in module.state_dict(keep_vars=True).items():
            if not torch.is_tensor(t) or not t.is_floating_point():
                continue
            if id(t) in first_name:  # tied weights (GPT-2's lm_head = wte)
                aliases[name] = first_name[id(t)]
                continue
            is_buffer = id(t) not in param_ids
            if is_buffer and not include_buffers:
                excluded.append(name)
                continue
            first_name[id(t)] = name
            owner = owners.get(name.rsplit(".", 1)[0]) if "." in name else module
            specs.append(
                TensorSpec(name, tuple(t.shape), t.dtype, infer_kind(name, t, owner, is_buffer))
            )
        return cls(specs, aliases, excluded)

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor]) -> GenomeSpec:
        """Every floating tensor of the state dict, in its order; integer buffers are skipped.
        Without the module, buffers are recognised by name (BatchNorm running statistics)."""
        specs = []
        for name, t in state_dict.items():
            if not torch.is_tensor(t):
                raise GenomeError(
                    f"state dict entry {name!r} is a {type(t).__name__}, not a tensor"
                )
            if not t.is_floating_point():
                continue
            is_buffer = name.endswith(("running_mean", "running_var"))
            kind = infer_kind(name, t, None, is_buffer)
            prefix = name.rsplit(".", 1)[0] + "." if "." in name else ""
            if not is_buffer and f"{prefix}running_mean" in state_dict:  # a BatchNorm's affine
                kind = "norm"
            specs.append(TensorSpec(name, tuple(t.shape), t.dtype, kind))
        return cls(specs)

    # ---- the codec ----------------------------------------------------------------------------
    def _check_state_dict(self, state_dict: Mapping[str, torch.Tensor], batch: int | None) -> None:
        missing = [t.name for t in self.tensors if t.name not in state_dict]
        if missing:
            raise GenomeError(
                f"state dict is missing tensor(s) {missing[:5]} required by the genome spec"
                + (f" (and {len(missing) - 5} more)" if len(missing) > 5 else "")
            )
        known = set(self._by_name) | set(self.aliases) | set(self.excluded)
        extra = [
            k
            for k, v in state_dict.items()
            if k not in known and torch.is_tensor(v) and v.is_floating_point()
        ]
        if extra:
            raise GenomeError(
                f"state dict has tensor(s) {extra[:5]} that are not in the genome spec"
            )
        for t in self.tensors:
            v = state_dict[t.name]
            if not torch.is_tensor(v) or not v.is_floating_point():
                what = f"dtype {v.dtype}" if torch.is_tensor(v) else type(v).__name__
                raise GenomeError(f"tensor {t.name!r} must be a floating tensor, got {what}")
            got = tuple(v.shape)
            want = t.shape if batch is None else (batch, *t.shape)
            if got != want:
                raise GenomeError(f"tensor {t.name!r} has shape {got}, expected {want}")
            if not _is_lossless(v.dtype, self.dtype):
                raise GenomeError(
                    f"tensor {t.name!r} has dtype {_dtype_name(v.dtype)}, which the genome's "
                    f"{_dtype_name(self.dtype)} cannot hold exactly; cast it explicitly first"
                )

    def flatten(self, state_dict: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """`{name: tensor}` -> `(n,)` in the genome's dtype (exact: only widening casts)."""
        self._check_state_dict(state_dict, None)
        return torch.cat(
            [exact_cast(state_dict[t.name].detach().reshape(-1), self.dtype) for t in self.tensors]
        )

    def flatten_batch(self, state_dict: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """`{name: (P, *shape)}` -> `(P, n)`."""
        first = state_dict.get(self.tensors[0].name)
        if first is None:
            raise GenomeError(f"state dict is missing tensor {self.tensors[0].name!r}")
        if not torch.is_tensor(first) or first.dim() == 0:
            raise GenomeError(
                f"tensor {self.tensors[0].name!r} has no population dimension (P, ...)"
            )
        p = first.shape[0]
        self._check_state_dict(state_dict, p)
        parts = [
            exact_cast(state_dict[t.name].detach().reshape(p, -1), self.dtype) for t in self.tensors
        ]
        return torch.cat(parts, dim=1)  # (P, n)

    def check_genome(
        self, genome: torch.Tensor, finite: bool = False, what: str = "genome"
    ) -> None:
        """Raise a `GenomeError` unless `genome` is a floating `(n,)` or `(P, n)` tensor of this
        spec's length (and, with `finite=True`, holds no NaN/inf)."""
        if not torch.is_tensor(genome) or genome.dim() not in (1, 2):
            shape = tuple(genome.shape) if torch.is_tensor(genome) else type(genome).__name__
            raise GenomeError(f"{what} must be a (n,) or (P, n) tensor, got {shape}")
        if genome.shape[-1] != self.numel:
            raise GenomeError(
                f"{what} has length {genome.shape[-1]}, expected {self.numel} for this genome spec "
                f"({len(self.tensors)} tensors)"
            )
        if not genome.is_floating_point():
            raise GenomeError(f"{what} must be a floating tensor, got dtype {genome.dtype}")
        if finite:
            bad = ~torch.isfinite(genome)
            if bool(bad.any()):
                flat = bad.reshape(-1, self.numel)  # (P, n)
                row = int(flat.any(1).nonzero()[0])
                idx = int(flat[row].nonzero()[0])
                # right=True skips zero-size tensors that share the offset of the culprit
                i = int(torch.searchsorted(torch.tensor(self.offsets), idx, right=True)) - 1
                where = f"individual {row}, " if genome.dim() == 2 else ""
                raise GenomeError(
                    f"{what} has {int(bad.sum())} non-finite value(s); first in {where}tensor "
                    f"{self.tensors[i].name!r} at flat index {idx}"
                )

    def unflatten(
        self, genome: torch.Tensor, check_finite: bool = False
    ) -> dict[str, torch.Tensor]:
        """`(n,)` -> `{name: shape}` or `(P, n)` -> `{name: (P, *shape)}`, as zero-copy views
        (writing to a view writes the genome). A genome whose last dim is strided (e.g. a
        transposed `(n, P)` tensor) is copied to contiguous first, since views need stride 1."""
        self.check_genome(genome, finite=check_finite)
        if genome.stride(-1) != 1 and genome.shape[-1] > 1:
            genome = genome.contiguous()
        lead = genome.shape[:-1]
        parts = genome.split(self.numels, dim=-1)  # views (*lead, numel_i)
        return {
            t.name: part.view((*lead, *t.shape))
            for t, part in zip(self.tensors, parts, strict=True)
        }

    def unflatten_to_module_dtypes(self, genome: torch.Tensor) -> dict[str, torch.Tensor]:
        """Like `unflatten` but cast each tensor back to its own dtype (a copy only where needed;
        bit-exact for genomes made by `flatten`, NaN payloads included)."""
        return {
            k: exact_cast(v, self.tensors[self._by_name[k]].dtype)
            for k, v in self.unflatten(genome).items()
        }

    # ---- helpers ------------------------------------------------------------------------------
    def index(self, name: str) -> int:
        if name not in self._by_name:
            raise GenomeError(
                f"no tensor {name!r} in genome spec; tensors are {list(self._by_name)[:8]}..."
            )
        return self._by_name[name]

    def __len__(self) -> int:
        return len(self.tensors)

    def __iter__(self) -> Iterator[TensorSpec]:
        return iter(self.tensors)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GenomeSpec) and self.tensors == other.tensors

    def __hash__(self) -> int:
        return hash(self.tensors)

    def __repr__(self) -> str:
        return f"GenomeSpec({len(self.tensors)} tensors, {self.numel:,} values, {_dtype_name(self.dtype)})"

    def to_dict(self) -> dict:
        d: dict = {
            "tensors": [
                {
                    "name": t.name,
                    "shape": list(t.shape),
                    "dtype": _dtype_name(t.dtype),
                    "kind": t.kind,
                }
                for t in self.tensors
            ]
        }
        if self.aliases:
            d["aliases"] = dict(self.aliases)
        if self.excluded:
            d["excluded"] = list(self.excluded)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> GenomeSpec:
        try:
            tensors = []
            for t in d["tensors"]:
                if t["dtype"] not in _FLOAT_DTYPES:
                    raise GenomeError(f"tensor {t['name']!r} has unsupported dtype {t['dtype']!r}")
                tensors.append(
                    TensorSpec(
                        str(t["name"]), tuple(t["shape"]), _FLOAT_DTYPES[t["dtype"]], t["kind"]
                    )
                )
            return cls(tensors, d.get("aliases"), d.get("excluded", ()))
        except (KeyError, TypeError, AttributeError) as e:
            raise GenomeError(f"malformed genome spec dict (missing or bad field {e})") from e

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, s: str) -> GenomeSpec:
        try:
            return cls.from_dict(json.loads(s))
        except json.JSONDecodeError as e:
            raise GenomeError(f"genome spec is not valid JSON: {e}") from e

    def describe_mismatch(self, other: GenomeSpec) -> str:
        """A one-line reason why two specs differ (for architecture-mismatch errors)."""
        if len(self) != len(other):
            return f"{len(self)} tensors vs {len(other)} tensors"
        for a, b in zip(self.tensors, other.tensors, strict=True):
            if a != b:
                return f"tensor {a.name!r} {a.shape}/{a.kind} vs {b.name!r} {b.shape}/{b.kind}"
        return "specs are equal"
