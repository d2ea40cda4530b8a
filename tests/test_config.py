"""The one dict -> typed-config builder behind EvolveConfig and ZooConfig."""

import pytest

from latent_evo.evolution.config import ConfigError, EvolveConfig
from latent_evo.zoo.config import ZooConfigError, config_from_dict


def test_wrong_types_name_the_key():
    with pytest.raises(ConfigError, match=r"strategy\.popsize: expected int, got 'eight'"):
        EvolveConfig.from_dict({"strategy": {"popsize": "eight"}})
    with pytest.raises(ConfigError, match=r"mode: expected 'auto' or 'latent'"):
        EvolveConfig.from_dict({"mode": "sideways"})
    with pytest.raises(ConfigError, match=r"switch\.enabled: expected bool"):
        EvolveConfig.from_dict({"switch": {"enabled": "yes"}})
    with pytest.raises(ZooConfigError, match=r"z\.yaml: batch_size: expected int, got 'big'"):
        config_from_dict({"task": "mnist1d-mlp", "batch_size": "big"}, where="z.yaml")
    with pytest.raises(ZooConfigError, match=r"cohorts\[1\]\.count: expected int"):
        config_from_dict({"task": "t", "cohorts": [{"count": 1}, {"count": 1.5}]})
    with pytest.raises(ZooConfigError, match=r"missing required key 'task'"):
        config_from_dict({"seed": 1})


def test_values_that_yaml_reads_loosely_are_accepted():
    cfg = EvolveConfig.from_dict({"finetune": {"lr": "1e-3"}, "surrogate": None})
    assert cfg.finetune.lr == 1e-3  # YAML 1.1 reads `1e-3` (no dot) as a string
    assert cfg.surrogate == EvolveConfig().surrogate  # an empty section means its defaults
    zoo = config_from_dict(
        {"task": "t", "hparams": {"lr": [1e-3, 1e-2]}, "cohorts": [{"count": 2}]}
    )
    assert zoo.cohorts[0].count == 2 and zoo.hparams.lr == [1e-3, 1e-2]
