"""Zoo generation configs: a YAML file -> a validated `ZooConfig`, with clear errors for typos.

A config names a task (+ overrides), a list of cohort groups and the ranges per-model
hyper-parameters are sampled from::

    task: mnist1d-mlp
    task_overrides: {}
    seed: 0
    batch_size: 128
    optimizer: adam            # adam (decoupled weight decay, = torch AdamW) | sgd (momentum, L2)
    checkpoint_epochs: [0, 1, 2, 4, 8, 16]
    cohorts:                   # a cohort trains in one vmapped pass and is the unit of resume
      - {count: 4, models_per_cohort: 100, shared_init: false}
      - {count: 5, models_per_cohort: 20, shared_init: true}
    hparams:
      lr: [1.0e-3, 1.0e-2]     # [lo, hi]: log-uniform; a number: fixed
      weight_decay: [1.0e-5, 1.0e-2]
      init_scale: [0.5, 1.5]
      epochs: 16               # [lo, hi]: integer uniform (inclusive)
      label_noise: 0.0         # [lo, hi]: uniform fraction of training labels replaced at random
      data_fraction: 1.0       # fixed: every model trains on its own random subset of this size

Ranges: `lr`, `weight_decay` and `init_scale` are log-uniform (so `lo` must be > 0; a fixed 0 is
fine for `weight_decay`), `label_noise` is uniform, `epochs` is uniform over integers.
In a shared-init cohort every model starts from the same weights (one `init_scale` per cohort) and
differs by learning rate, weight decay, batch order, data subset, label noise and epochs. With
`stem_epochs: k` (shared-init cohorts only) those weights are first trained for k epochs, so the
members branch from one partly trained network.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from latent_evo.config import build, read_yaml


class ZooConfigError(ValueError):
    """A zoo config is malformed; the message names the file and option at fault."""


Range = float | int | list  # a fixed number or [lo, hi]


@dataclass
class CohortGroup:
    count: int = 1  # how many cohorts of this kind
    models_per_cohort: int = 16
    shared_init: bool = False
    #: a shared-init cohort first trains its one initial network for this many epochs (on all
    #: training data, at `stem_lr`) and every member starts from that: where training noise, not
    #: the init, decides the basin (GPT-2's 0.02-std init), members then share one
    stem_epochs: int = 0
    stem_lr: float = 3e-3


@dataclass
class HParamRanges:
    lr: Range = field(default_factory=lambda: [1e-3, 1e-2])
    weight_decay: Range = 0.0
    init_scale: Range = 1.0
    epochs: Range = 10
    label_noise: Range = 0.0
    data_fraction: float = 1.0


@dataclass
class ZooConfig:
    task: str
    task_overrides: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    batch_size: int = 128
    optimizer: str = "adam"
    momentum: float = 0.9  # sgd only
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adam only
    checkpoint_epochs: list[int] = field(default_factory=lambda: [0, 1, 2, 5, 10])
    cohorts: list[CohortGroup] = field(default_factory=lambda: [CohortGroup()])
    hparams: HParamRanges = field(default_factory=HParamRanges)
    shard_size: int = 4096  # genomes (rows) per safetensors shard at most
    eval_examples: int | None = 4096  # train-loss measured on at most this many training examples
    device: str | None = None  # None: cuda if available else cpu
    name: str | None = None  # the zoo's name; default: the config file's stem

    # ---- derived ------------------------------------------------------------------------------
    @property
    def num_cohorts(self) -> int:
        return sum(g.count for g in self.cohorts)

    @property
    def num_models(self) -> int:
        return sum(g.count * g.models_per_cohort for g in self.cohorts)

    def cohort_list(self) -> list[CohortGroup]:
        """One entry per cohort, in generation order."""
        return [g for g in self.cohorts for _ in range(g.count)]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    # ---- validation ---------------------------------------------------------------------------
    def validate(self, where: str = "zoo config") -> ZooConfig:
        def bad(msg: str) -> ZooConfigError:
            return ZooConfigError(f"{where}: {msg}")

        if not isinstance(self.task, str) or not self.task:
            raise bad("'task' must be a task name such as 'mnist1d-mlp'")
        if self.optimizer not in ("adam", "sgd"):
            raise bad(f"'optimizer' must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.batch_size < 1 or self.shard_size < 1:
            raise bad("'batch_size' and 'shard_size' must be >= 1")
        if not self.cohorts:
            raise bad("'cohorts' must list at least one cohort group")
        for i, g in enumerate(self.cohorts):
            if g.count < 1 or g.models_per_cohort < 1:
                raise bad(f"cohorts[{i}]: 'count' and 'models_per_cohort' must be >= 1")
            if g.stem_epochs < 0 or (g.stem_epochs and not g.shared_init) or g.stem_lr <= 0:
                raise bad(
                    f"cohorts[{i}]: 'stem_epochs' must be >= 0 and needs 'shared_init: true' "
                    f"(one network trained, then shared), and 'stem_lr' > 0; got "
                    f"stem_epochs={g.stem_epochs}, shared_init={g.shared_init}, stem_lr={g.stem_lr}"
                )
        eps = self.checkpoint_epochs
        if not eps or any(not isinstance(e, int) or e < 0 for e in eps) or sorted(set(eps)) != eps:
            raise bad(f"'checkpoint_epochs' must be increasing non-negative integers, got {eps}")
        h = self.hparams
        for key, log in (
            ("lr", True),
            ("weight_decay", True),
            ("init_scale", True),
            ("label_noise", False),
        ):
            _check_range(getattr(h, key), f"hparams.{key}", log, bad)
        _check_range(h.epochs, "hparams.epochs", False, bad)
        lo_ep = h.epochs if not isinstance(h.epochs, list) else h.epochs[0]
        if int(lo_ep) < 1 or (
            isinstance(h.epochs, list) and not all(isinstance(e, int) for e in h.epochs)
        ):
            raise bad(f"'hparams.epochs' must be integers >= 1, got {h.epochs}")
        hi_ep = int(h.epochs[1] if isinstance(h.epochs, list) else h.epochs)
        if eps[-1] > hi_ep:
            raise bad(
                f"'checkpoint_epochs' asks for epoch {eps[-1]}, but no model trains more than "
                f"{hi_ep} epochs ('hparams.epochs': {h.epochs}); those checkpoints would be missing"
            )
        if not 0.0 < h.data_fraction <= 1.0:
            raise bad(f"'hparams.data_fraction' must be in (0, 1], got {h.data_fraction}")
        return self


def _check_range(value: Range, name: str, log: bool, bad) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float | list):
        raise bad(f"'{name}' must be a number or a [lo, hi] pair, got {value!r}")
    if isinstance(value, list):
        if (
            len(value) != 2
            or not all(isinstance(v, int | float) for v in value)
            or value[0] > value[1]
        ):
            raise bad(f"'{name}' must be [lo, hi] with lo <= hi, got {value!r}")
        if log and value[0] <= 0:
            raise bad(f"'{name}' is sampled log-uniformly, so lo must be > 0, got {value!r}")
        lo = value[0]
    else:
        lo = value
    if lo < 0:
        raise bad(f"'{name}' must be non-negative, got {value!r}")


def config_from_dict(data: dict, where: str = "zoo config") -> ZooConfig:
    cfg = build(ZooConfig, data, ZooConfigError, where)  # unknown keys, wrong types, missing task
    return cfg.validate(where)


def load_config(path: str | Path) -> ZooConfig:
    path = Path(path)
    data = read_yaml(path, ZooConfigError, "zoo config")
    cfg = config_from_dict(data, where=f"zoo config {str(path)!r}")
    if cfg.name is None:
        cfg.name = path.stem
    return cfg


# ---- sampling ------------------------------------------------------------------------------------
def sample_range(value: Range, n: int, gen: torch.Generator, log: bool) -> torch.Tensor:
    """`(n,)` float64 samples: fixed, log-uniform or uniform over [lo, hi]."""
    if not isinstance(value, list):
        return torch.full((n,), float(value), dtype=torch.float64)
    lo, hi = float(value[0]), float(value[1])
    u = torch.rand(n, generator=gen, dtype=torch.float64)
    if log:
        return torch.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
    return lo + u * (hi - lo)


def sample_epochs(value: Range, n: int, gen: torch.Generator) -> torch.Tensor:
    if not isinstance(value, list):
        return torch.full((n,), int(value), dtype=torch.int64)
    return torch.randint(int(value[0]), int(value[1]) + 1, (n,), generator=gen)
