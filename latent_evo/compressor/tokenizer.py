"""Genome tokenizer: a flat genome as a grid of fixed-size tokens, one tensor row at a time.

Every tensor of shape `(out, *rest)` is read as `out` rows of `prod(rest)` values (one output unit
per row; a conv kernel is flattened into its row); 1-D tensors and scalars are one row. Each row is
cut into chunks of `chunk_size` values; the last chunk of a row is zero-padded and masked, so a
token never straddles two rows or two tensors. All index arithmetic is done once at construction:

    gather_index (T, C)  position in the genome of every token slot (padding -> n, a zero slot)
    scatter_index (n,)   position in the flattened (T*C) token grid of every genome value

so `tokenize` and `detokenize` are each one `index_select` plus an affine per-tensor
normalisation, for a whole population at once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from latent_evo.genome import KINDS, GenomeError, GenomeSpec

CONFIG_FILE = "tokenizer.json"
STATS_FILE = "tokenizer.safetensors"
_FORMAT = "latent-evo-tokenizer"
_VERSION = 1

# Columns of TokenMeta.shape_features, all properties of the token's tensor.
SHAPE_FEATURES = (
    "log1p_rows",  # number of rows (output units; 1 for 1-D tensors and scalars)
    "log1p_row_length",  # values per row = fan-in of a weight (in_features, in_ch * kernel)
    "log1p_numel",  # tensor size
    "ndim",  # number of dimensions (0 for a scalar)
    "log1p_receptive_field",  # prod(shape[2:]): kernel size of a conv, 1 otherwise
    "log1p_chunks_per_row",  # tokens per row at this chunk size
)


class TokenizerError(GenomeError):
    """A tokenizer file or token tensor is malformed; the message names the file or shape."""


@dataclass
class TokenMeta:
    """Per-token metadata the compressor embeds (T tokens; all tensors share dim 0).

    tensor_index   (T,) long   index of the token's tensor in `spec.tensors`
    kind           (T,) long   index into `genome.KINDS` (weight / bias / norm / embedding / buffer)
    depth          (T,) float  layer position in [0, 1]: index of the tensor's owning module prefix
                               (its name without the last component) among the genome's distinct
                               prefixes in order, divided by (number of prefixes - 1)
    row            (T,) long   row of the tensor the token comes from (output unit)
    chunk          (T,) long   chunk of that row (0 = first `chunk_size` values)
    row_frac       (T,) float  row / (rows - 1) in [0, 1] (0 for one-row tensors)
    chunk_frac     (T,) float  chunk / (chunks per row - 1) in [0, 1] (0 for one-chunk rows)
    shape_features (T, F) float tensor shape features, columns named by `SHAPE_FEATURES`
    """

    tensor_index: torch.Tensor
    kind: torch.Tensor
    depth: torch.Tensor
    row: torch.Tensor
    chunk: torch.Tensor
    row_frac: torch.Tensor
    chunk_frac: torch.Tensor
    shape_features: torch.Tensor

    def continuous(self) -> torch.Tensor:
        """(T, 3 + F) float: depth, row_frac, chunk_frac, then the shape features."""
        frac = torch.stack([self.depth, self.row_frac, self.chunk_frac], dim=1)  # (T, 3)
        return torch.cat([frac, self.shape_features], dim=1)  # (T, 3 + F)

    def to(self, device: torch.device | str) -> TokenMeta:
        return TokenMeta(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def __getitem__(self, index: slice | torch.Tensor) -> TokenMeta:
        """The metadata of a subset of tokens (e.g. a block of queries when decoding in blocks)."""
        return TokenMeta(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def __len__(self) -> int:
        return self.tensor_index.shape[0]


def _module_prefix(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else ""


class Tokenizer:
    """Splits `(P, n)` genomes of one `GenomeSpec` into normalised `(P, T, C)` tokens and back.

    Per-tensor normalisation statistics (`mean`, `std`, one value per tensor) start as the
    identity and are set by `fit_normalization` on a set of genomes (a model zoo).
    """

    def __init__(self, spec: GenomeSpec, chunk_size: int = 64):
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise TokenizerError(f"chunk_size must be a positive int, got {chunk_size!r}")
        self.spec = spec
        self.chunk_size = chunk_size
        C, n = chunk_size, spec.numel

        # ---- per-tensor geometry (a loop over tensors, not tokens) --------------------------
        rows = [t.shape[0] if len(t.shape) >= 2 else 1 for t in spec.tensors]
        row_len = [t.numel // r if r else 0 for t, r in zip(spec.tensors, rows, strict=True)]
        chunks = [math.ceil(L / C) for L in row_len]
        self.tokens_per_tensor: tuple[int, ...] = tuple(
            r * k for r, k in zip(rows, chunks, strict=True)
        )
        self.num_tokens: int = sum(self.tokens_per_tensor)
        T = self.num_tokens
        if T == 0:
            raise TokenizerError(f"genome spec {spec} has no values to tokenize")

        prefixes = list(dict.fromkeys(_module_prefix(t.name) for t in spec.tensors))
        depth_of = {p: i / max(len(prefixes) - 1, 1) for i, p in enumerate(prefixes)}
        tt = {  # (num_tensors,) per-tensor tables, gathered per token below
            "rows": torch.tensor(rows),
            "row_len": torch.tensor(row_len),
            "chunks": torch.tensor(chunks),
            "offset": torch.tensor(spec.offsets),
            "kind": torch.tensor([KINDS.index(t.kind) for t in spec.tensors]),
            "depth": torch.tensor([depth_of[_module_prefix(t.name)] for t in spec.tensors]),
        }
        shape_feats = torch.tensor(
            [
                [
                    math.log1p(r),
                    math.log1p(L),
                    math.log1p(t.numel),
                    float(len(t.shape)),
                    math.log1p(math.prod(t.shape[2:])),
                    math.log1p(k),
                ]
                for t, r, L, k in zip(spec.tensors, rows, row_len, chunks, strict=True)
            ]
        )  # (num_tensors, F)

        # ---- per-token coordinates, vectorised ----------------------------------------------
        counts = torch.tensor(self.tokens_per_tensor)
        tensor_index = torch.repeat_interleave(torch.arange(len(spec)), counts)  # (T,)
        first_token = torch.cumsum(counts, 0) - counts  # (num_tensors,)
        local = torch.arange(T) - first_token[tensor_index]  # token number inside its tensor
        k = tt["chunks"][tensor_index]  # (T,) chunks per row of the token's tensor
        row, chunk = local // k, local % k  # (T,), (T,)
        L = tt["row_len"][tensor_index]  # (T,)

        col = torch.arange(C)[None, :] + (chunk * C)[:, None]  # (T, C) column inside the row
        self.mask = col < L[:, None]  # (T, C) True where the slot holds a genome value
        row_start = tt["offset"][tensor_index] + row * L  # (T,) genome index of the row's start
        # in place: these are the largest temporaries of a big genome (T*C int64)
        self.gather_index = col.add_(row_start[:, None]).masked_fill_(~self.mask, n)  # (T, C)
        # inverse map: each genome value's slot in the flattened (T*C) grid. Padding slots all
        # land on the extra entry n, which is dropped (a scatter, not slow boolean indexing).
        inverse = torch.empty(n + 1, dtype=torch.long)
        inverse.scatter_(0, self.gather_index.view(-1), torch.arange(T * C))  # (n + 1,)
        self.scatter_index = inverse[:n].clone()  # (n,)

        self.meta = TokenMeta(
            tensor_index=tensor_index,
            kind=tt["kind"][tensor_index],
            depth=tt["depth"][tensor_index].float(),
            row=row,
            chunk=chunk,
            row_frac=(row / (tt["rows"][tensor_index] - 1).clamp(min=1)).float(),
            chunk_frac=(chunk / (k - 1).clamp(min=1)).float(),
            shape_features=shape_feats[tensor_index].float(),  # (T, F)
        )
        self._set_stats(torch.zeros(len(spec)), torch.ones(len(spec)))
        # (n,) per-value mean of the genomes `fit_normalization` saw (None until then): the base
        # genome a residual decoder starts from (`Compressor.from_tokenizer`)
        self.mean_genome: torch.Tensor | None = None

    # ---- device and statistics ------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.gather_index.device

    def to(self, device: torch.device | str) -> Tokenizer:
        """Move indices, mask, metadata and statistics to `device` (in place; returns self)."""
        self.gather_index = self.gather_index.to(device)
        self.scatter_index = self.scatter_index.to(device)
        self.mask = self.mask.to(device)
        self.meta = self.meta.to(device)
        self._set_stats(self.mean.to(device), self.std.to(device))
        if self.mean_genome is not None:
            self.mean_genome = self.mean_genome.to(device)
        return self

    def _set_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean = mean.to(device=self.device, dtype=torch.float32)  # (num_tensors,)
        self.std = std.to(device=self.device, dtype=torch.float32)  # (num_tensors,)
        # per-token copies, broadcast over (P, T, C)
        self._mean_tok = self.mean[self.meta.tensor_index][:, None]  # (T, 1)
        self._std_tok = self.std[self.meta.tensor_index][:, None]  # (T, 1)

    @torch.no_grad()
    def fit_normalization(
        self,
        genomes: torch.Tensor | Iterable[torch.Tensor],
        eps: float = 1e-6,
        block: int = 1 << 24,
    ) -> Tokenizer:
        """Per-tensor mean/std over a set of genomes: an `(N, n)` tensor or an iterable of
        `(B, n)` batches (a zoo streamed from disk). One pass, merged in float64 with Chan's
        parallel update, so it is stable and never holds more than one batch.

        A std below `eps` (a tensor that is constant across the set, e.g. untouched BatchNorm
        running variances) is replaced by 1: such a tensor is only centred, so a genome that later
        moves it is not blown up by 1/eps.
        """
        if torch.is_tensor(genomes):
            g = genomes[None] if genomes.dim() == 1 else genomes
            self.spec.check_genome(g, what="genomes")
            rows = max(1, block // max(self.spec.numel, 1))  # bound float64 temporaries
            genomes = g.split(rows)
        nt = len(self.spec)
        numels = torch.tensor(self.spec.numels, dtype=torch.float64)
        count = torch.zeros((), dtype=torch.float64)  # genomes seen so far
        mean = torch.zeros(nt, dtype=torch.float64)
        m2 = torch.zeros(nt, dtype=torch.float64)  # sum of squared deviations
        total = torch.zeros(self.spec.numel, dtype=torch.float64)  # per-value sum -> mean genome
        for batch in genomes:
            self.spec.check_genome(batch, what="genome batch")
            b = batch.reshape(-1, self.spec.numel)  # (B, n) on its own device
            nb = b.shape[0] * numels  # (nt,) values per tensor in this batch
            # one fused reduction per tensor (a loop over tensors, not values); float64 so that
            # large tensors do not lose the small variance of their weights
            stats = [
                torch.var_mean(part.double(), correction=0)
                if part.numel()
                else (torch.zeros(()),) * 2
                for part in b.split(self.spec.numels, dim=1)  # views (B, numel_i)
            ]
            bvar = torch.stack([v.cpu() for v, _ in stats]).double()  # (nt,)
            bmean = torch.stack([m.cpu() for _, m in stats]).double()  # (nt,)
            bm2 = bvar * nb
            na = count * numels  # (nt,)
            tot = (na + nb).clamp(min=1)
            delta = bmean - mean
            mean = mean + delta * nb / tot
            m2 = m2 + bm2 + delta**2 * na * nb / tot
            count = count + b.shape[0]
            total += b.double().sum(0).cpu()
        if count == 0:
            raise TokenizerError("fit_normalization got no genomes")
        self.mean_genome = (total / count).float().to(self.device)  # (n,)
        std = (m2 / (count * numels).clamp(min=1)).sqrt()
        std = torch.where(std < eps, torch.ones_like(std), std)
        self._set_stats(mean.float(), std.float())
        return self

    # ---- the hot path ---------------------------------------------------------------------------
    def _check_device(self, x: torch.Tensor, what: str) -> None:
        if x.device != self.device:
            raise TokenizerError(
                f"{what} is on {x.device} but the tokenizer is on {self.device}; "
                f"call tokenizer.to({str(x.device)!r})"
            )

    def tokenize(self, genome: torch.Tensor) -> torch.Tensor:
        """`(n,)` or `(P, n)` genome (any float dtype) -> `(P, T, C)` float32 normalised tokens;
        padding slots are exactly 0 (a single genome is a population of one)."""
        self.spec.check_genome(genome)
        self._check_device(genome, "genome")
        g = genome[None] if genome.dim() == 1 else genome  # (P, n)
        P, n = g.shape
        padded = g.new_zeros((P, n + 1), dtype=torch.float32)  # (P, n + 1): slot n stays 0
        padded[:, :n] = g
        tokens = padded.index_select(1, self.gather_index.view(-1))  # (P, T*C)
        tokens = tokens.view(P, self.num_tokens, self.chunk_size)  # (P, T, C)
        tokens = tokens.sub_(self._mean_tok).div_(self._std_tok)
        return tokens.masked_fill_(~self.mask, 0.0)  # normalised padding would be -mean/std

    def detokenize(self, tokens: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """`(P, T, C)` -> `(P, n)` denormalised genomes (or `(T, C)` -> `(n,)`), in `dtype`
        (default: the spec's dtype). Padding slots are ignored, whatever they hold."""
        T, C = self.num_tokens, self.chunk_size
        if (
            not torch.is_tensor(tokens)
            or tokens.dim() not in (2, 3)
            or tuple(tokens.shape[-2:]) != (T, C)
        ):
            got = tuple(tokens.shape) if torch.is_tensor(tokens) else type(tokens).__name__
            raise TokenizerError(f"tokens must have shape (P, {T}, {C}) or ({T}, {C}), got {got}")
        self._check_device(tokens, "tokens")
        x = tokens[None] if tokens.dim() == 2 else tokens  # (P, T, C)
        x = torch.addcmul(self._mean_tok, x.float(), self._std_tok)  # (P, T, C) denormalised
        genome = x.view(x.shape[0], T * C).index_select(1, self.scatter_index)  # (P, n)
        genome = genome.to(dtype or self.spec.dtype)
        return genome[0] if tokens.dim() == 2 else genome

    # ---- persistence (JSON + safetensors, never pickle) ---------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write `tokenizer.json` (spec + chunk size) and `tokenizer.safetensors` (mean/std)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {
            "format": _FORMAT,
            "version": _VERSION,
            "chunk_size": self.chunk_size,
            "spec": self.spec.to_dict(),
        }
        (directory / CONFIG_FILE).write_text(json.dumps(config, indent=1))
        stats = {
            "mean": self.mean.detach().cpu().contiguous(),
            "std": self.std.detach().cpu().contiguous(),
        }
        save_file(stats, str(directory / STATS_FILE), metadata={"format": _FORMAT})
        return directory

    @classmethod
    def load(cls, directory: str | Path, device: torch.device | str = "cpu") -> Tokenizer:
        directory = Path(directory)
        cfg_path, stats_path = directory / CONFIG_FILE, directory / STATS_FILE
        for path in (cfg_path, stats_path):
            if not path.is_file():
                raise FileNotFoundError(f"tokenizer file {path} does not exist")
        try:
            config = json.loads(cfg_path.read_text())
            if config.get("format") != _FORMAT:
                raise TokenizerError(f"format is {config.get('format')!r}, expected {_FORMAT!r}")
            if config.get("version") != _VERSION:
                raise TokenizerError(f"version {config.get('version')!r} is not supported")
            tok = cls(GenomeSpec.from_dict(config["spec"]), int(config["chunk_size"]))
        except (
            json.JSONDecodeError,
            UnicodeDecodeError,
            KeyError,
            TypeError,
            ValueError,
            AttributeError,
        ) as e:
            raise TokenizerError(f"corrupt tokenizer config {cfg_path}: {e}") from e
        try:
            stats = load_file(str(stats_path))
        except (SafetensorError, OSError, ValueError) as e:
            raise TokenizerError(f"corrupt tokenizer statistics {stats_path}: {e}") from e
        want = (len(tok.spec),)
        for key in ("mean", "std"):
            t = stats.get(key)
            if t is None or tuple(t.shape) != want or not t.is_floating_point():
                got = "missing" if t is None else f"{tuple(t.shape)} {t.dtype}"
                raise TokenizerError(
                    f"tokenizer statistics {stats_path}: {key!r} is {got}, expected {want} float"
                )
            if not bool(torch.isfinite(t).all()) or (key == "std" and not bool((t > 0).all())):
                raise TokenizerError(
                    f"tokenizer statistics {stats_path}: {key!r} has invalid values"
                )
        tok._set_stats(stats["mean"], stats["std"])
        return tok.to(device)

    def __repr__(self) -> str:
        return (
            f"Tokenizer({self.spec!r}, chunk_size={self.chunk_size}, tokens={self.num_tokens:,}, "
            f"fill={self.spec.numel / (self.num_tokens * self.chunk_size):.1%})"
        )
