"""The README's own-model walkthrough, through the CLI in fresh processes: a network latent-evo
does not ship (examples/own-model/my_tasks.py) goes zoo -> pretrain -> evolve, each command
seeing the user's task only through `--import` (sizes shrunk by command-line overrides)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "own-model"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "latent_evo.cli", "--import", str(EXAMPLE / "my_tasks.py"), *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_own_model_zoo_pretrain_evolve_through_the_cli(tmp_path):
    zoo_cfg = yaml.safe_load((EXAMPLE / "zoo.yaml").read_text())
    zoo_cfg.update(checkpoint_epochs=[1, 2], cohorts=[{"count": 1, "models_per_cohort": 6,
                   "shared_init": True}], task_overrides={"data": {"num_samples": 1000}})  # fmt: skip
    zoo_cfg["hparams"]["epochs"] = 2
    (tmp_path / "zoo.yaml").write_text(yaml.safe_dump(zoo_cfg))
    r = _cli("zoo", "generate", "--config", "zoo.yaml", "--out", "zoos/own-model",
             "--no-progress", cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert "mnist1d-layernorm-mlp" in r.stdout

    r = _cli("pretrain", "fit", "--config", str(EXAMPLE / "pretrain.yaml"),
             "--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false",
             "--model.eval_max_models", "4", "--model.eval_prior_samples", "4", cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    comp = tmp_path / "runs" / "own-model" / "version_0" / "compressor"
    assert (comp / "model.safetensors").is_file()
    info = json.loads((comp / "pretraining.json").read_text())
    assert info["zoos"][0]["task"] == "mnist1d-layernorm-mlp"

    r = _cli("evolve", "--config", str(EXAMPLE / "evolve.yaml"), "--compressor", str(comp),
             "--set", "evaluations=64", "--run-dir", "runs/evolve", "--no-progress", cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert "test_accuracy" in r.stdout  # test metrics of a user task, not only its fitness
    assert (tmp_path / "runs" / "evolve" / "best.safetensors").is_file()


def test_without_import_the_task_is_unknown_and_nothing_is_written(tmp_path):
    (tmp_path / "zoo.yaml").write_text((EXAMPLE / "zoo.yaml").read_text())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "latent_evo.cli", "zoo", "generate", "--config",
                        "zoo.yaml", "--out", "z"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300)  # fmt: skip
    assert r.returncode != 0 and "mnist1d-layernorm-mlp" in r.stderr and "--import" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "z").exists()


def test_import_of_a_missing_file_is_named(capsys):
    from latent_evo.cli import main

    assert main(["--import", "no/such/tasks.py", "zoo", "info", "x"]) == 2
    assert "no/such/tasks.py" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["classification", "lm"])
def test_function_task_reports_test_metrics(kind):
    import torch
    import torch.nn.functional as F
    from torch import nn

    import latent_evo
    from latent_evo.tasks import FunctionTask

    torch.manual_seed(0)
    if kind == "classification":
        model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
        x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    else:
        model = nn.Sequential(nn.Embedding(5, 8), nn.Linear(8, 5))
        x, y = torch.randint(0, 5, (4, 6)), torch.randint(0, 5, (4, 6))

    def fitness(params):
        out = torch.func.functional_call(model, params, (x,))
        return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))

    task = FunctionTask(model, fitness, test_data=(x, y), kind=kind)
    res = latent_evo.evolve(task=task, strategy="ga", generations=2, popsize=8, seed=0)
    key = "test_accuracy" if kind == "classification" else "test_bits_per_token"
    assert key in res.test_metrics and res.test_metrics["test_loss"] == pytest.approx(
        res.best_fitness, rel=1e-5
    )
