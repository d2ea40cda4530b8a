"""Model zoos: populations of trained networks (checkpoints along training + measured fitness),
the genome compressor's pretraining data.

    from latent_evo.zoo import generate_zoo, load_zoo
    generate_zoo("configs/zoo/mnist1d-mlp.yaml")             # -> zoos/mnist1d-mlp
    train = load_zoo("zoos/mnist1d-mlp", split="train")      # torch Dataset, split by model

Modules: `config` (YAML -> `ZooConfig`), `trainer` (vmapped cohort training), `generate`,
`format` (safetensors shards + parquet metadata + zoo.json), `dataset` (`ZooDataset`),
`modelzoos` (importer for Schürholt et al.'s layout), `hub` (push / pull), `cli`.
"""

from latent_evo.zoo.config import (
    CohortGroup,
    HParamRanges,
    ZooConfig,
    ZooConfigError,
    config_from_dict,
    load_config,
)
from latent_evo.zoo.dataset import ZooDataset, split_groups
from latent_evo.zoo.format import ZooError, ZooWriter, load_stats, read_card, read_metadata
from latent_evo.zoo.generate import generate_zoo
from latent_evo.zoo.hub import load_zoo, pull_zoo, push_zoo
from latent_evo.zoo.modelzoos import import_modelzoos
from latent_evo.zoo.trainer import StackedOptimizer, evaluate_cohort, train_cohort, train_sequential

__all__ = [
    "CohortGroup",
    "HParamRanges",
    "StackedOptimizer",
    "ZooConfig",
    "ZooConfigError",
    "ZooDataset",
    "ZooError",
    "ZooWriter",
    "config_from_dict",
    "evaluate_cohort",
    "generate_zoo",
    "import_modelzoos",
    "load_config",
    "load_stats",
    "load_zoo",
    "pull_zoo",
    "push_zoo",
    "read_card",
    "read_metadata",
    "split_groups",
    "train_cohort",
    "train_sequential",
]
