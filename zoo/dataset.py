"""`ZooDataset`: a zoo on disk as a torch `Dataset` of checkpoints, memory-mapped shard by shard.

Splits are **by model** (or by cohort): every checkpoint of a model lands in the same split, so a
compressor is always evaluated on networks it has never seen a snapshot of. The split is a seeded
permutation of the sorted model ids, so it does not depend on filters or on row order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch
from torch.utils.data import Dataset

from latent_evo.genome import GenomeSpec
from latent_evo.zoo.format import (
    GENOMES_KEY,
    ZooError,
    compute_stats,
    load_stats,
    open_shard,
    read_card,
    read_metadata,
)

SPLITS = ("train", "validation", "test", "all")


def split_groups(
    groups: Sequence[int], fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> dict[str, set[int]]:
    """Assign group ids (models or cohorts) to train / validation / test by a seeded permutation."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(
            f"split fractions must be three non-negative numbers summing to 1, got {fractions}"
        )
    ids = sorted(set(groups))
    perm = torch.randperm(len(ids), generator=torch.Generator().manual_seed(seed)).tolist()
    n_val, n_test = round(fractions[1] * len(ids)), round(fractions[2] * len(ids))
    if len(ids) >= 3:  # a small zoo still gets one held-out model per requested split
        n_val, n_test = max(n_val, fractions[1] > 0), max(n_test, fractions[2] > 0)
    n_train = len(ids) - n_val - n_test
    order = [ids[i] for i in perm]
    return {
        "train": set(order[:n_train]),
        "validation": set(order[n_train : n_train + n_val]),
        "test": set(order[n_train + n_val :]),
    }


class ZooDataset(Dataset):
    """Checkpoints of a zoo; item `i` is a dict with `genome` (n,), `fitness` (test loss),
    `accuracy` (test accuracy, NaN if not measured), `model_id`, `epoch` and `task`.

    Args:
        root: the zoo directory (see `latent_evo.zoo.format`); `load_zoo` also takes a Hub repo.
        split: "train", "validation", "test" or "all".
        fractions, seed: the split of models (or cohorts) into train / validation / test.
        split_by: "model" (default) or "cohort" (keeps whole shared-init cohorts together).
        epochs: keep only checkpoints at these epochs (an int or a list).
        fitness_range, accuracy_range: keep rows with lo <= value <= hi (None for an open end).
        cohorts: keep only these cohorts.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        fractions: Sequence[float] = (0.8, 0.1, 0.1),
        seed: int = 0,
        split_by: str = "model",
        epochs: int | Sequence[int] | None = None,
        fitness_range: tuple[float | None, float | None] | None = None,
        accuracy_range: tuple[float | None, float | None] | None = None,
        cohorts: Sequence[int] | None = None,
    ):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if split_by not in ("model", "cohort"):
            raise ValueError(f"split_by must be 'model' or 'cohort', got {split_by!r}")
        self.root = Path(root)
        self.card = read_card(self.root)
        self.spec = GenomeSpec.from_dict(self.card["spec"])
        self.task_name: str = self.card["task"]
        self.task_overrides: dict[str, Any] = self.card.get("task_overrides", {})
        self.split = split
        table = read_metadata(self.root)
        self._table_all = table
        cols = {
            c: torch.tensor(table.column(c).to_numpy())
            for c in ("model_id", "cohort", "epoch", "offset")
        }
        fit = torch.tensor(table.column("test_loss").to_numpy(), dtype=torch.float64)
        acc = torch.tensor(table.column("test_accuracy").to_numpy(), dtype=torch.float64)
        train = torch.tensor(table.column("train_loss").to_numpy(), dtype=torch.float64)

        keep = torch.ones(table.num_rows, dtype=torch.bool)
        what = [f"split={split!r}"]
        if split != "all":
            group = cols["model_id"] if split_by == "model" else cols["cohort"]
            chosen = split_groups(group.tolist(), fractions, seed)[split]
            keep &= torch.isin(group, torch.tensor(sorted(chosen), dtype=group.dtype))
        if epochs is not None:
            eps = [epochs] if isinstance(epochs, int) else list(epochs)
            keep &= torch.isin(cols["epoch"], torch.tensor(eps, dtype=torch.int64))
            what.append(f"epochs={eps}")
        if cohorts is not None:
            keep &= torch.isin(cols["cohort"], torch.tensor(list(cohorts), dtype=torch.int64))
            what.append(f"cohorts={list(cohorts)}")
        for name, values, rng in (
            ("fitness_range", fit, fitness_range),
            ("accuracy_range", acc, accuracy_range),
        ):
            if rng is not None:
                lo, hi = rng
                if lo is not None:
                    keep &= values >= lo
                if hi is not None:
                    keep &= values <= hi
                what.append(f"{name}={tuple(rng)}")
        rows = keep.nonzero().squeeze(1)
        if len(rows) == 0:
            raise ZooError(
                f"no checkpoints of zoo {str(self.root)!r} match {', '.join(what)} "
                f"(the zoo has {table.num_rows} checkpoints of {len(set(cols['model_id'].tolist()))} models)"
            )
        self.rows = rows  # (k,) indices into the zoo's full metadata table
        self.fitness = fit[rows].float()  # (k,)
        self.accuracy = acc[rows].float()  # (k,)
        self.train_loss = train[rows].float()  # (k,) what a search would see as fitness
        self.model_ids = cols["model_id"][rows]
        self.epochs = cols["epoch"][rows]
        self.cohorts = cols["cohort"][rows]
        self._offsets = cols["offset"][rows]
        shards_all = table.column("shard").to_pylist()
        self._shards = [shards_all[r] for r in rows.tolist()]
        self._handles: dict[str, Any] = {}
        self._check_rows()

    # ---- validation ---------------------------------------------------------------------------
    def _check_rows(self) -> None:
        """Every row must point at an existing, readable shard and a genome inside it."""
        sizes = {}
        for i, shard in enumerate(self._shards):
            if shard not in sizes:
                if not (self.root / shard).is_file():
                    raise ZooError(
                        f"metadata row of model {int(self.model_ids[i])} epoch {int(self.epochs[i])} points "
                        f"to shard {str(self.root / shard)!r}, which does not exist"
                    )
                _, sizes[shard] = self._slice(shard)
            off = int(self._offsets[i])
            if not 0 <= off < sizes[shard]:
                raise ZooError(
                    f"metadata row of model {int(self.model_ids[i])} epoch {int(self.epochs[i])} points to "
                    f"offset {off} of shard {str(self.root / shard)!r}, which holds {sizes[shard]} genomes"
                )

    def _slice(self, shard: str):
        if shard not in self._handles:
            sha = self.card.get("sha256", {}).get(shard)
            handle, n_rows = open_shard(self.root, shard, self.spec, sha)
            self._handles[shard] = (handle, handle.get_slice(GENOMES_KEY), n_rows)
        _, sl, n_rows = self._handles[shard]
        return sl, n_rows

    def __getstate__(self) -> dict:  # DataLoader workers reopen shards themselves
        state = dict(self.__dict__)
        state["_handles"] = {}
        return state

    # ---- access -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for a zoo split of {len(self)} checkpoints")
        i = i % len(self)
        return {
            "genome": self.genomes([i])[0],
            "fitness": self.fitness[i],
            "accuracy": self.accuracy[i],
            "model_id": int(self.model_ids[i]),
            "epoch": int(self.epochs[i]),
            "task": self.task_name,
        }

    def genomes(self, indices: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
        """`(k, n)` genomes of these dataset indices (all when None), read from the memory-mapped
        shards in contiguous runs."""
        idx = (
            torch.arange(len(self))
            if indices is None
            else torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
        )
        if len(idx) and (int(idx.min()) < -len(self) or int(idx.max()) >= len(self)):
            raise IndexError(f"indices out of range for a zoo split of {len(self)} checkpoints")
        idx = idx % max(len(self), 1)
        out = torch.empty(len(idx), self.spec.numel, dtype=self.spec.dtype)
        by_shard: dict[str, list[int]] = {}
        for pos, i in enumerate(idx.tolist()):
            by_shard.setdefault(self._shards[i], []).append(pos)
        for shard, positions in by_shard.items():
            sl, _ = self._slice(shard)
            pos_t = torch.tensor(positions)
            offs = self._offsets[idx[pos_t]]
            order = torch.argsort(offs)
            offs, pos_t = offs[order], pos_t[order]
            # runs of consecutive offsets are one slice each
            breaks = (torch.nonzero(offs[1:] != offs[:-1] + 1).squeeze(1) + 1).tolist()
            for a, b in zip([0, *breaks], [*breaks, len(offs)], strict=True):
                lo, hi = int(offs[a]), int(offs[b - 1]) + 1
                block = sl[lo:hi]
                out[pos_t[a:b]] = block[offs[a:b] - lo]
        return out

    def final_checkpoints(self) -> torch.Tensor:
        """Indices of the last checkpoint of every network in this split (networks may stop at
        different epochs), in dataset order."""
        last: dict[int, int] = {}
        for i in torch.argsort(self.epochs, stable=True).tolist():  # later epochs overwrite
            last[int(self.model_ids[i])] = i
        return torch.tensor(sorted(last.values()), dtype=torch.int64)

    @torch.no_grad()
    def within_cohort_share(self) -> float:
        """Share of the final networks' weight variance that lies within cohorts (0..1), one
        cohort in memory at a time. Near 1 in a shared-init zoo means the shared start did not
        keep its members together (training noise decided where each landed), and a compressor
        then has to reconstruct what is, to it, a zoo of unrelated networks. NaN with one cohort."""
        final = self.final_checkpoints()
        if len(self.cohorts[final].unique()) < 2:
            return float("nan")
        n, total, sq, within = 0, 0.0, 0.0, 0.0
        for c in self.cohorts[final].unique().tolist():
            g = self.genomes(final[self.cohorts[final] == c]).double()  # (m, n_params)
            within += float(((g - g.mean(0)) ** 2).sum())
            n, total, sq = n + len(g), total + g.sum(0), sq + (g**2).sum(0)
        between_and_within = float((sq - total**2 / n).sum())  # sum of squares about the mean
        return within / between_and_within if between_and_within > 0 else 0.0

    def best_checkpoint(self) -> int:
        """Index of the final checkpoint with the lowest training loss: the "best zoo
        checkpoint", the memorisation baseline every search result stands next to. Chosen by
        training loss, not test loss, because a search only ever sees the training loss."""
        final = self.final_checkpoints()
        loss = torch.nan_to_num(self.train_loss[final], nan=float("inf"))  # (k,)
        return int(final[int(torch.argmin(loss))])

    @torch.no_grad()
    def encode(self, compressor, batch_size: int = 256) -> torch.Tensor:
        """`(N, s)` codes of every checkpoint of this split (posterior means), in batches."""
        compressor.check_spec(self.spec)
        dev = compressor.norm_mean.device
        codes = [
            compressor.encode_genomes(self.genomes(torch.arange(a, min(a + batch_size, len(self)))).to(dev))
            for a in range(0, len(self), batch_size)
        ]  # fmt: skip
        return torch.cat(codes) if codes else torch.empty(0, compressor.latent_size)

    # ---- zoo-level information ----------------------------------------------------------------
    @property
    def metadata(self):
        """This split's metadata rows as a Hugging Face `datasets.Dataset`."""
        import datasets
        from datasets.table import InMemoryTable

        table: pa.Table = self._table_all.take(pa.array(self.rows.numpy()))
        return datasets.Dataset(InMemoryTable(table))

    @property
    def stats(self) -> dict[str, tuple[float, float]]:
        """Per-tensor `(mean, std)` over the whole zoo, from `stats.safetensors`."""
        return load_stats(self.root)

    def compute_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-tensor mean and std `(T,)` over this split only (no statistics from held-out models)."""
        return compute_stats(self.root, self.spec, self._table_all, self.rows.tolist())

    def __repr__(self) -> str:
        return (
            f"ZooDataset({self.card.get('name')!r}, task={self.task_name!r}, split={self.split!r}, "
            f"{len(self)} checkpoints of {len(set(self.model_ids.tolist()))} models, {self.spec})"
        )
