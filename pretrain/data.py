"""`ZooDataModule`: one or more model zoos of the same architecture as a LightningDataModule.

Splits are by *model* (the zoo's own train/val/test split), so validation and test always measure
held-out networks. Each zoo is one *task* (its dataset/variant): every batch item carries a
`task_id` so the functional loss term evaluates it on the right task's data (multi-task zoos).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as L
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from latent_evo.genome import GenomeSpec


class ZooMismatchError(ValueError):
    """Zoos (or a zoo and a compressor) describe different architectures."""


class _Tagged(Dataset):
    """A zoo split whose items are reduced to tensors the default collate can stack, plus task_id."""

    def __init__(self, ds: Dataset, task_id: int):
        self.ds, self.task_id = ds, task_id

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = self.ds[i]
        return {
            "genome": torch.as_tensor(item["genome"]).float(),
            "fitness": torch.as_tensor(float(item["fitness"])),
            "accuracy": torch.as_tensor(float(item["accuracy"])),
            "model_id": torch.as_tensor(int(item["model_id"])),
            "epoch": torch.as_tensor(int(item["epoch"])),
            "task_id": torch.as_tensor(self.task_id),
        }


def open_zoo(path: str | Path, split: str, filters: dict[str, Any] | None = None):
    """`latent_evo.zoo.ZooDataset` for one split, with a message naming the zoo when it is missing."""
    from latent_evo.zoo.dataset import ZooDataset

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"zoo {str(path)!r} does not exist; make it with `latent-evo zoo generate --config configs/zoo/<name>.yaml`"
        )
    return ZooDataset(path, split=split, **(filters or {}))


def zoo_task(ds, device: str | torch.device = "cpu"):
    """The `Task` a zoo was trained on (name + overrides from its zoo card)."""
    from latent_evo.tasks import get_task

    overrides = dict(getattr(ds, "task_overrides", None) or {})
    overrides.pop("device", None)
    weights = overrides.get("base_weights")  # a LoRA zoo's base network, stored in the zoo
    if weights is not None and not Path(weights).is_absolute() and hasattr(ds, "root"):
        overrides["base_weights"] = str(Path(ds.root) / weights)
    return get_task(ds.task_name, device=device, **overrides)


def zoo_provenance(ds) -> dict[str, Any]:
    """What the exported compressor was trained on: task, path, size and the generating config."""
    card = ds.card
    return {
        "name": card.get("name"),
        "path": str(Path(ds.root).resolve()),
        "task": ds.task_name,
        "task_overrides": dict(ds.task_overrides),
        "num_models": card.get("num_models"),
        "num_checkpoints": card.get("num_checkpoints"),
        "train_split_checkpoints": len(ds),
        "train_split_models": len(set(ds.model_ids.tolist())),
        "config": card.get("config"),
    }


class ZooDataModule(L.LightningDataModule):
    """Genomes of one or more zoos; `task_id` of an item = index of its zoo in `zoos`.

    Args:
        zoos: zoo directories (each made by `latent-evo zoo generate`), same architecture.
        batch_size: genomes per batch (per process under DDP).
        filters: passed to every `ZooDataset` (e.g. `{epochs: [4, 8]}`, `{accuracy_range: [0.5, null]}`,
            `{fractions: [0.8, 0.1, 0.1], split_by: cohort}`).
        num_workers: DataLoader workers (0 on small CPUs: items are memory-mapped slices).
        max_train_genomes: cap on genomes used to fit the tokenizer's normalisation statistics.
    """

    def __init__(
        self,
        zoos: list[str] | str = "zoos/mnist1d-mlp",
        batch_size: int = 64,
        filters: dict[str, Any] | None = None,
        num_workers: int = 0,
        max_norm_genomes: int = 4096,
    ):
        super().__init__()
        self.zoos = [zoos] if isinstance(zoos, str) else list(zoos)
        if not self.zoos:
            raise ValueError("data.zoos must name at least one zoo directory")
        self.batch_size = batch_size
        self.filters = dict(filters or {})
        self.num_workers = num_workers
        self.max_norm_genomes = max_norm_genomes
        self.splits: dict[str, list] = {}
        for z in self.zoos:  # a missing, empty or corrupt zoo is refused before any run dir exists
            open_zoo(z, "all", self.filters)
        self._tasks: list | None = None

    # ---- zoos ---------------------------------------------------------------------------------
    def split(self, name: str) -> list:
        """The `ZooDataset` of every zoo for split `name` (opened once)."""
        if name not in self.splits:
            self.splits[name] = [open_zoo(z, name, self.filters) for z in self.zoos]
        return self.splits[name]

    @property
    def spec(self) -> GenomeSpec:
        """The common `GenomeSpec`; zoos of different architectures are rejected here."""
        dss = self.split("train")
        spec = _spec_of(dss[0])
        for z, ds in zip(self.zoos[1:], dss[1:], strict=True):
            other = _spec_of(ds)
            if other != spec:
                raise ZooMismatchError(
                    f"zoo {z!r} has a different architecture than {self.zoos[0]!r} "
                    f"({spec.describe_mismatch(other)}); multi-task pretraining needs zoos of one architecture"
                )
        return spec

    def tasks(self, device: str | torch.device = "cpu") -> list:
        """One `Task` per zoo, in `task_id` order (built once, then moved to `device`)."""
        if self._tasks is None:
            self._tasks = [zoo_task(ds) for ds in self.split("train")]
        return [t.to(device) for t in self._tasks]

    def task_names(self) -> list[str]:
        return [ds.task_name for ds in self.split("train")]

    def provenance(self) -> list[dict[str, Any]]:
        return [zoo_provenance(ds) for ds in self.split("train")]

    def norm_genomes(self) -> torch.Tensor:
        """`(N, n)` training genomes (evenly spaced, all zoos) to fit normalisation statistics on;
        training split only, so no statistic leaks from held-out models."""
        dss = self.split("train")
        per = max(1, self.max_norm_genomes // len(dss))
        out = []
        for z, ds in zip(self.zoos, dss, strict=True):
            idx = torch.linspace(0, len(ds) - 1, min(per, len(ds))).round().long().unique()
            g = ds.genomes(idx).float()  # (k, n)
            bad = (~torch.isfinite(g).all(1)).nonzero().squeeze(1)
            if len(bad):  # the data, not the optimiser, would be the culprit of a NaN loss
                i = int(idx[bad[0]])
                raise ValueError(
                    f"the zoo data holds NaN or inf: zoo {z!r}, model {int(ds.model_ids[i])} "
                    f"epoch {int(ds.epochs[i])} (and {len(bad) - 1} more of the {len(idx)} genomes "
                    "read to fit the normalisation); regenerate or filter the zoo"
                )
            out.append(g)
        return torch.cat(out)

    # ---- Lightning hooks ----------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        names = {
            "fit": ("train", "validation"),
            "validate": ("validation",),
            "test": ("test",),
            "predict": ("test",),
        }
        for name in names.get(stage, ()):
            dss = self.split(name)
            for z, ds in zip(self.zoos, dss, strict=True):
                if len(ds) == 0:
                    raise ValueError(
                        f"zoo {z!r} has no genomes in its {name!r} split (filters {self.filters})"
                    )

    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        ds = ConcatDataset([_Tagged(d, i) for i, d in enumerate(self.split(name))])
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            shuffle=shuffle,
            drop_last=shuffle and len(ds) > self.batch_size,  # no tiny last batch in training
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


def _spec_of(ds) -> GenomeSpec:
    spec = ds.spec
    return spec if isinstance(spec, GenomeSpec) else GenomeSpec.from_dict(spec)


def check_compressor_spec(compressor, spec, zoo: str, source: str) -> None:
    """A clear error when a compressor and a zoo describe different architectures."""
    theirs = compressor.tokenizer.spec
    if theirs != spec:
        raise ZooMismatchError(
            f"compressor {source!r} was trained for a different architecture than zoo {zoo!r}: "
            f"{theirs.describe_mismatch(spec)}"
        )
