"""Bad input is refused with an error that names the culprit, before anything is written, and
non-finite fitness never passes silently (each case feeds the bad input and checks the message)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import save_file
from torch import nn

import latent_evo
from latent_evo.cli.evolve import main as evolve_main
from latent_evo.evolution.config import ConfigError
from latent_evo.strategies import get_strategy
from latent_evo.tasks.function import NonFiniteFitnessError
from latent_evo.zoo.config import ZooConfigError, config_from_dict, load_config

CONFIG = {
    "task": {"name": "mnist1d-mlp-tiny"}, "mode": "direct", "generations": 2, "seed": 0,
    "strategy": {"name": "ga", "popsize": 8, "hparams": {"mutation_sigma": 0.02}},
}  # fmt: skip


def _user_task():
    torch.manual_seed(0)
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))

    def loss(params):
        return F.cross_entropy(torch.func.functional_call(model, params, (x,)), y)

    return model, loss


def test_fitness_that_is_nan_everywhere_stops_naming_the_function():
    model, _ = _user_task()
    with pytest.raises(NonFiniteFitnessError, match=r"generation 0: all 8 .* NaN.*task 'user'"):
        latent_evo.evolve(task=model, fitness_fn=lambda p: p["0.weight"].sum() * float("nan"),
                          strategy="ga", popsize=8, generations=3, seed=0)  # fmt: skip


def test_non_finite_weights_are_named(tmp_path):
    model, loss = _user_task()
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    sd["2.bias"][0] = float("nan")
    save_file(sd, str(tmp_path / "nan.safetensors"))
    with pytest.raises(NonFiniteFitnessError, match=r"tensor '2\.bias' holds non-finite weights"):
        latent_evo.evolve(task=model, fitness_fn=loss, strategy="openai_es", popsize=8,
                          generations=2, seed=0,
                          init={"kind": "network", "path": str(tmp_path / "nan.safetensors")})  # fmt: skip


def test_minus_inf_fitness_counts_as_worst_not_best():
    model, loss = _user_task()

    def fitness(params):  # one genome per generation reports -inf: it must never be "best"
        f = loss(params)
        return torch.where(params["0.bias"][0] > 0.5, torch.tensor(-float("inf")), f)

    res = latent_evo.evolve(task=model, fitness_fn=fitness, strategy="ga", popsize=8,
                            generations=3, seed=0, strategy_hparams={"mutation_sigma": 1.0})  # fmt: skip
    assert torch.isfinite(torch.tensor(res.best_fitness))


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("generations", 0, r"generations: a budget must be >= 1, got 0"),
        ("generations", -3, r"generations: a budget must be >= 1, got -3"),
        ("evaluations", 0, r"evaluations: a budget must be >= 1, got 0"),
        ("popsize", 1, r"strategy\.popsize: a population needs >= 2"),
        ("popsize", "eight", r"strategy\.popsize: expected int, got 'eight'"),
    ],
)
def test_bad_budgets_and_populations_are_config_errors(option, value, message):
    model, loss = _user_task()
    with pytest.raises(ConfigError, match=message):
        latent_evo.evolve(task=model, fitness_fn=loss, strategy="ga", **{option: value})


@pytest.mark.parametrize(
    ("name", "hparams", "message"),
    [
        ("cma_es", {"sigma_init": -1}, r"cma_es: sigma_init must be > 0, got -1"),
        ("openai_es", {"lr": 0.0}, r"openai_es: lr must be > 0"),
        ("ga", {"mutation_sigma": "abc"}, r"ga: mutation_sigma must be a number, got 'abc'"),
        ("snes", {"sigma_init": True}, r"snes: sigma_init must be a number"),
    ],
)
def test_bad_strategy_hparams_name_the_option(name, hparams, message):
    with pytest.raises(ValueError, match=message):
        get_strategy(name, dim=4, popsize=8, seed=0, **hparams)


def test_bad_set_override_leaves_no_run_directory(tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    run_dir = tmp_path / "run"
    argv = [
        "--config",
        str(cfg),
        "--run-dir",
        str(run_dir),
        "--set",
        "strategy.hparams.mutation_sigma=abc",
    ]
    assert evolve_main(argv) == 2
    assert "mutation_sigma must be a number, got 'abc'" in capsys.readouterr().err
    assert not run_dir.exists()


def test_malformed_yaml_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("task:\n  name: mnist1d-mlp-tiny\nstrategy: [ga\n")
    assert evolve_main(["--config", str(bad), "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "line" in err and not (tmp_path / "r").exists()
    with pytest.raises(ZooConfigError, match=r"bad\.yaml.*not valid YAML at line \d+"):
        load_config(bad)


def test_zoo_checkpoint_epochs_beyond_training_are_refused():
    with pytest.raises(ZooConfigError, match=r"checkpoint_epochs.*epoch 20.*more than 10 epochs"):
        config_from_dict({"task": "t", "checkpoint_epochs": [0, 5, 20], "hparams": {"epochs": 10}})
    with pytest.raises(ZooConfigError, match=r"batch_size: expected int, got 'big'"):
        config_from_dict({"task": "t", "batch_size": "big"})


def test_model_type_is_a_registry_name_not_an_import_path():
    pytest.importorskip("lightning")
    from latent_evo.pretrain.module import CompressorModule

    with pytest.raises(ValueError, match=r"model_type must be one of \['attention', 'mlp'\]"):
        CompressorModule(model_type="os.system")


def _flip_bytes(path, offset_from_end: int = 64, n: int = 16) -> None:
    data = bytearray(path.read_bytes())
    for i in range(len(data) - offset_from_end, len(data) - offset_from_end + n):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_corrupted_zoo_shard_is_named(tmp_path):
    from zoo_helpers import write_zoo

    from latent_evo.tasks import get_task
    from latent_evo.zoo.dataset import ZooDataset
    from latent_evo.zoo.format import ZooError

    task = get_task("mnist1d-mlp-tiny")
    root = write_zoo(tmp_path / "zoo", "mnist1d-mlp-tiny", task.spec,
                     task.init_genomes(4, torch.Generator().manual_seed(0)))  # fmt: skip
    ZooDataset(root, "all")  # intact: opens
    shard = next((root / "shards").glob("*.safetensors"))
    _flip_bytes(shard)  # the data region: the header still parses, the values are garbage
    with pytest.raises(ZooError, match=rf"{shard.name}: content hash mismatch"):
        ZooDataset(root, "all")


def test_corrupted_checkpoint_is_named(tmp_path):
    from latent_evo.evolution.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

    tensors = {"a": torch.arange(64, dtype=torch.float32)}
    path = save_checkpoint(tmp_path, "gen-000001", tensors, {"generation": 1})
    t, meta = load_checkpoint(tmp_path)
    assert torch.equal(t["a"], tensors["a"]) and meta == {"generation": 1}
    _flip_bytes(path / "state.safetensors")
    with pytest.raises(CheckpointError, match=r"state\.safetensors: content hash mismatch"):
        load_checkpoint(tmp_path)


def _pretrain(argv, tmp_path):
    pytest.importorskip("lightning")
    from pathlib import Path

    from latent_evo.cli.pretrain import main

    tiny = Path(__file__).resolve().parents[1] / "configs" / "pretrain" / "tiny.yaml"
    return main(["fit", "--config", str(tiny), "--trainer.enable_progress_bar", "false",
                 "--trainer.default_root_dir", str(tmp_path / "runs"), *argv])  # fmt: skip


def test_pretrain_on_an_empty_zoo_names_it_and_writes_nothing(tmp_path, capsys):
    import json

    (tmp_path / "empty").mkdir()
    assert _pretrain(["--data.zoos", json.dumps([str(tmp_path / "empty")])], tmp_path) == 1
    err = capsys.readouterr().err
    assert "empty" in err and "zoo.json" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_pretrain_on_nan_zoo_data_blames_the_data(tmp_path, capsys):
    import json

    from zoo_helpers import write_zoo

    from latent_evo.tasks import get_task

    task = get_task("mnist1d-mlp-tiny")
    g = task.init_genomes(8, torch.Generator().manual_seed(0))
    g[:, :5] = float("nan")
    zoo = write_zoo(tmp_path / "nanzoo", "mnist1d-mlp-tiny", task.spec, g, epochs_per_model=2)
    assert (
        _pretrain(["--data.zoos", json.dumps([str(zoo)]), "--trainer.max_steps", "2"], tmp_path)
        == 1
    )
    err = capsys.readouterr().err
    assert "the zoo data holds NaN" in err and "nanzoo" in err and "lower model.lr" not in err
