"""The on-disk zoo format: safetensors shards of genomes + a parquet metadata table + a zoo card.

```
ZOO/
  zoo.json                         card: name, task (+ overrides), GenomeSpec, config, counts
  metadata/<part>.parquet          one row per checkpoint (a Hugging Face `datasets` parquet table)
  shards/<part>-<k>.safetensors    tensor "genomes" (rows, n) in the spec's dtype
  stats.safetensors                per-tensor mean / std over the zoo, "mean" (T,), "std" (T,)
```

A *part* is what one unit of work (a generation cohort, an import) writes; its metadata file is
written last and atomically, so its presence means the part is complete (that is how resume
knows which cohorts to skip). Shard + offset in each row locate its genome.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from latent_evo.genome import GenomeSpec
from latent_evo.integrity import sha256_file, verify

FORMAT_VERSION = 1
CARD = "zoo.json"
STATS = "stats.safetensors"
GENOMES_KEY = "genomes"


class ZooError(ValueError):
    """A zoo on disk is malformed or a request cannot be served; the message names the file/row."""


# Fixed schema so parts from generation and imports concatenate; missing metrics are NaN and
# the full hyper-parameter set (whatever its source) is also kept as JSON in `hparams`.
SCHEMA = pa.schema(
    [
        ("model_id", pa.int64()),
        ("cohort", pa.int64()),
        ("shared_init", pa.bool_()),
        ("init_id", pa.int64()),
        ("epoch", pa.int64()),
        ("step", pa.int64()),
        ("train_loss", pa.float64()),
        ("test_loss", pa.float64()),
        ("test_accuracy", pa.float64()),
        ("lr", pa.float64()),
        ("weight_decay", pa.float64()),
        ("init_scale", pa.float64()),
        ("epochs", pa.int64()),
        ("label_noise", pa.float64()),
        ("data_fraction", pa.float64()),
        ("order_seed", pa.int64()),
        ("hparams", pa.string()),
        ("shard", pa.string()),
        ("offset", pa.int64()),
    ]
)
_DEFAULTS: dict[str, Any] = {
    "cohort": 0,
    "shared_init": False,
    "init_id": -1,
    "step": -1,
    "train_loss": float("nan"),
    "test_loss": float("nan"),
    "test_accuracy": float("nan"),
    "lr": float("nan"),
    "weight_decay": float("nan"),
    "init_scale": float("nan"),
    "epochs": -1,
    "label_noise": float("nan"),
    "data_fraction": float("nan"),
    "order_seed": -1,
    "hparams": "{}",
}


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def read_card(root: str | Path) -> dict:
    path = Path(root) / CARD
    if not path.is_file():
        raise ZooError(f"{str(Path(root))!r} is not a zoo: {CARD} is missing")
    try:
        card = json.loads(path.read_text())
        GenomeSpec.from_dict(card["spec"])
    except (json.JSONDecodeError, KeyError, ValueError) as e:
        raise ZooError(f"zoo card {str(path)!r} is malformed: {e}") from e
    return card


class ZooWriter:
    """Writes a zoo part by part; `finalize()` adds the normalisation statistics and the card."""

    def __init__(
        self,
        root: str | Path,
        spec: GenomeSpec,
        task: str,
        task_overrides: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
        name: str | None = None,
        shard_size: int = 4096,
    ):
        self.root = Path(root)
        self.spec, self.task, self.shard_size = spec, task, shard_size
        self.card = {
            "format_version": FORMAT_VERSION,
            "name": name or self.root.name,
            "task": task,
            "task_overrides": dict(task_overrides or {}),
            "spec": spec.to_dict(),
            "config": dict(config or {}),
            "complete": False,
        }
        (self.root / "shards").mkdir(parents=True, exist_ok=True)
        (self.root / "metadata").mkdir(exist_ok=True)

    def start(self, resume: bool) -> set[str]:
        """Write the (incomplete) card; with `resume`, check it matches and return finished parts."""
        path = self.root / CARD
        if path.exists():
            if not resume:
                raise ZooError(
                    f"{str(self.root)!r} already holds a zoo; pass resume=True (--resume) or use a new directory"
                )
            old = read_card(self.root)
            for key in ("task", "task_overrides", "spec", "config"):
                if json.dumps(old[key], sort_keys=True) != json.dumps(
                    self.card[key], sort_keys=True
                ):
                    raise ZooError(
                        f"cannot resume {str(self.root)!r}: its {key!r} differs from this run's"
                    )
        _atomic_write_bytes(path, json.dumps(self.card, indent=2).encode())
        return self.done_parts()

    def done_parts(self) -> set[str]:
        return {p.stem for p in (self.root / "metadata").glob("*.parquet")}

    def write_part(
        self, part: str, genomes: torch.Tensor, rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """`genomes` (k, n) with one metadata row each (columns of `SCHEMA`; shard/offset are set
        here). Shards first, metadata last: a part without metadata is simply redone."""
        self.spec.check_genome(genomes, what=f"genomes of part {part!r}")
        if genomes.dim() != 2 or len(rows) != genomes.shape[0]:
            raise ZooError(
                f"part {part!r}: {len(rows)} metadata rows for {tuple(genomes.shape)} genomes"
            )
        genomes = genomes.detach().to("cpu", self.spec.dtype).contiguous()
        out_rows = []
        for k, start in enumerate(range(0, len(rows), self.shard_size)):
            shard = f"shards/{part}-{k:03d}.safetensors"
            block = genomes[start : start + self.shard_size].clone()
            tmp = self.root / f"{shard}.tmp{os.getpid()}"
            save_file({GENOMES_KEY: block}, str(tmp), metadata={"format": "latent-evo-zoo"})
            os.replace(tmp, self.root / shard)
            for off, row in enumerate(rows[start : start + self.shard_size]):
                unknown = set(row) - set(SCHEMA.names)
                if unknown:
                    raise ZooError(f"part {part!r}: unknown metadata column(s) {sorted(unknown)}")
                out_rows.append({**_DEFAULTS, **row, "shard": shard, "offset": off})
        table = pa.Table.from_pylist(out_rows, schema=SCHEMA)
        path = self.root / "metadata" / f"{part}.parquet"
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        pq.write_table(table, tmp)
        os.replace(tmp, path)

    def finalize(self, extra: Mapping[str, Any] | None = None) -> Path:
        table = read_metadata(self.root)
        mean, std = compute_stats(self.root, self.spec, table)
        names = [t.name for t in self.spec.tensors]
        save_file(
            {"mean": mean, "std": std},
            str(self.root / STATS),
            metadata={"tensors": json.dumps(names)},
        )
        shards = sorted(set(table.column("shard").to_pylist()))
        self.card.update(
            sha256={sh: sha256_file(self.root / sh) for sh in shards},  # checked when read
            complete=True,
            num_models=len(set(table.column("model_id").to_pylist())),
            num_checkpoints=table.num_rows,
            num_shards=len(set(table.column("shard").to_pylist())),
            created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **dict(extra or {}),
        )
        _atomic_write_bytes(self.root / CARD, json.dumps(self.card, indent=2).encode())
        return self.root


def read_metadata(root: str | Path) -> pa.Table:
    """All parts' metadata as one arrow table (sorted by part name, i.e. generation order)."""
    files = sorted((Path(root) / "metadata").glob("*.parquet"))
    if not files:
        raise ZooError(f"zoo {str(Path(root))!r} has no metadata (metadata/*.parquet)")
    tables = []
    for f in files:
        try:
            tables.append(pq.read_table(f).select(SCHEMA.names).cast(SCHEMA))
        except (pa.ArrowException, OSError, KeyError) as e:
            raise ZooError(
                f"metadata file {str(f)!r} is unreadable or has the wrong columns: {e}"
            ) from e
    return pa.concat_tables(tables)


def open_shard(root: Path, shard: str, spec: GenomeSpec, sha256: str | None = None):
    """A `safe_open` handle on one shard, checked: readable, holds "genomes" of width
    `spec.numel`, and (when the card records one) has the content hash written with it."""
    path = root / shard
    if not path.is_file():
        raise ZooError(f"shard {str(path)!r} does not exist")
    try:
        handle = safe_open(str(path), framework="pt")
        keys = list(handle.keys())
        shape = handle.get_slice(GENOMES_KEY).get_shape() if GENOMES_KEY in keys else None
    except Exception as e:  # safetensors raises its own error type for a truncated/corrupt header
        raise ZooError(f"shard {str(path)!r} is corrupt or truncated ({e})") from e
    if shape is None:
        raise ZooError(f"shard {str(path)!r} holds no {GENOMES_KEY!r} tensor (keys: {keys})")
    if len(shape) != 2 or shape[1] != spec.numel:
        raise ZooError(
            f"shard {str(path)!r} holds genomes of shape {tuple(shape)}, but the zoo's genome spec "
            f"has length {spec.numel}"
        )
    verify(path, sha256, ZooError)  # after the header checks, whose messages say more
    return handle, int(shape[0])


def compute_stats(
    root: str | Path, spec: GenomeSpec, table: pa.Table, rows: Sequence[int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tensor mean and std `(T,)` over the zoo's genomes (or the metadata rows `rows`)."""
    root = Path(root)
    shards = table.column("shard").to_pylist()
    offsets = table.column("offset").to_pylist()
    wanted = range(len(shards)) if rows is None else rows
    by_shard: dict[str, list[int]] = {}
    for r in wanted:
        by_shard.setdefault(shards[r], []).append(offsets[r])
    seg = torch.repeat_interleave(torch.arange(len(spec.numels)), torch.tensor(spec.numels))  # (n,)
    total = torch.zeros(len(spec.numels), dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    count = 0
    for shard, offs in by_shard.items():
        handle, _ = open_shard(root, shard, spec)
        sl = handle.get_slice(GENOMES_KEY)
        offs_t = torch.tensor(sorted(offs))
        for s in range(0, len(offs_t), 256):  # bounded memory: read 256 rows' span at a time
            block = offs_t[s : s + 256]
            lo, hi = int(block[0]), int(block[-1]) + 1
            g = sl[lo:hi][block - lo].double()  # (k, n)
            total.index_add_(0, seg, g.sum(0))
            total_sq.index_add_(0, seg, (g * g).sum(0))
        count += len(offs)
    n = torch.tensor(spec.numels, dtype=torch.float64) * max(count, 1)
    mean = total / n
    std = (total_sq / n - mean * mean).clamp(min=0).sqrt()
    return mean.float(), std.float()


def load_stats(root: str | Path) -> dict[str, tuple[float, float]]:
    """`{tensor name: (mean, std)}` from `stats.safetensors`."""
    path = Path(root) / STATS
    if not path.is_file():
        raise ZooError(f"zoo {str(Path(root))!r} has no {STATS} (was generation finalised?)")
    with safe_open(str(path), framework="pt") as f:
        names = json.loads(f.metadata()["tensors"])
        mean, std = f.get_tensor("mean"), f.get_tensor("std")
    return {n: (float(m), float(s)) for n, m, s in zip(names, mean, std, strict=True)}
