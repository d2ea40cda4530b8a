"""Every architecture family end to end in seconds: a tiny zoo -> an attention compressor ->
latent evolution that improves over its generations, with finite decoded weights (BatchNorm
running variances positive)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# (task, zoo overrides): three models from one init, a sliver of the data, one or two epochs
FAMILIES = {
    "mnist1d-cnn-tiny": {"task_overrides": {"data": {"num_samples": 1000}}},
    "digits-resnet8-tiny": {"eval_examples": 256},
    # text: one eighth of the corpus (its own train / validation split), so evaluations are quick
    "text-lstm-tiny": {
        "task_overrides": {"data": {"part": [0, 8]}},
        "eval_examples": 128,
        "hparams": {"lr": [3e-3, 1e-2], "epochs": 1, "data_fraction": 0.3},
    },
    "text-gpt2-tiny": {
        "task_overrides": {"data": {"part": [0, 8]}},
        "eval_examples": 128,
        "hparams": {"lr": [1e-3, 3e-3], "epochs": 1, "data_fraction": 0.2},
        "batch_size": 16,
    },
}


def _zoo(task: str, overrides: dict, out: Path) -> Path:
    from latent_evo.zoo.config import config_from_dict
    from latent_evo.zoo.generate import generate_zoo

    cfg = {"task": task, "seed": 0, "batch_size": 64, "checkpoint_epochs": [0, 1],
           "cohorts": [{"count": 1, "models_per_cohort": 3, "shared_init": True}],
           "hparams": {"lr": [3e-3, 1e-2], "epochs": 1}, "shard_size": 64, **overrides}  # fmt: skip
    return generate_zoo(config_from_dict(cfg), out, progress=False)


@pytest.mark.parametrize("task_name", list(FAMILIES))
def test_family_zoo_pretrain_evolve(task_name, tmp_path):
    from latent_evo.cli.pretrain import main as pretrain
    from latent_evo.evolution.evolve import evolve

    zoo = _zoo(task_name, FAMILIES[task_name], tmp_path / "zoo")
    rc = pretrain(["fit", "--config", str(ROOT / "configs/pretrain/tiny.yaml"),
                   "--trainer.enable_progress_bar", "false", "--data.zoos", json.dumps([str(zoo)]),
                   "--model.model_type", "attention", "--model.fitness_batch_size", "8",
                   "--model.eval_max_models", "2", "--model.eval_prior_samples", "2",
                   "--trainer.max_epochs", "2", "--trainer.default_root_dir", str(tmp_path)])  # fmt: skip
    assert rc == 0
    comp = tmp_path / "tiny" / "version_0" / "compressor"
    task = (task_name, FAMILIES[task_name].get("task_overrides", {}))
    from latent_evo.tasks import get_task

    res = evolve(task=get_task(task[0], **task[1]), compressor=str(comp), strategy="cma_es", evaluations=64,
                 popsize=8, strategy_hparams={"sigma_init": 1.0}, init={"kind": "prior"},
                 seed=0, eval_every=4)  # fmt: skip
    assert res.history[-1]["best_fitness"] < res.history[0]["best_fitness"]
    assert torch.isfinite(res.best_genome).all()
    assert all(v == v for v in res.test_metrics.values())  # no NaN metric
    sd = dict(res.best_model.state_dict())
    for name, v in sd.items():
        if name.endswith("running_var"):
            assert bool((v > 0).all()), name
