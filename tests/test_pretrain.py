"""Lightning pretraining: CLI runs, the combined loss's logged terms, resume, NaN stop, errors,
evaluation files, permutation augmentation and (slow) 2-process CPU DDP."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "pretrain" / "tiny.yaml")


@pytest.fixture(scope="session")
def zoo(tmp_path_factory) -> str:
    """The tiny MNIST-1D MLP zoo (8 models), generated once per session."""
    from latent_evo.zoo.generate import generate_zoo

    return str(
        generate_zoo(
            ROOT / "configs" / "zoo" / "mnist1d-mlp-tiny.yaml",
            tmp_path_factory.mktemp("zoo") / "tiny",
            progress=False,
        )
    )


def _fit(argv: list[str]) -> int:
    from latent_evo.cli.pretrain import main

    return main(["fit", "--config", TINY, "--trainer.enable_progress_bar", "false", *argv])


def test_fast_dev_run_exports_compressor_and_evaluation(zoo, tmp_path):
    from latent_evo.compressor.attention import Compressor

    rc = _fit(
        [
            "--data.zoos",
            json.dumps([zoo]),
            "--trainer.fast_dev_run",
            "true",
            "--trainer.default_root_dir",
            str(tmp_path),
        ]
    )
    assert rc == 0
    comp = Compressor.from_pretrained(tmp_path / "compressor")
    info = json.loads((tmp_path / "compressor" / "pretraining.json").read_text())
    assert info["zoos"][0]["task"] == "mnist1d-mlp-tiny" and info["zoos"][0]["num_models"] == 8
    assert info["zoos"][0]["config"]["task"] == "mnist1d-mlp-tiny"  # the generating config
    assert comp.spec.numel == 40 * 32 + 32 + 32 * 10 + 10
    for split in ("test", "train"):
        ev = json.loads((tmp_path / f"eval-{split}" / "evaluation.json").read_text())
        assert ev["split"] == split and ev["num_models"] >= 1
        for key in (
            "recon_r2",
            "retention_mean",
            "acc_original_mean",
            "acc_recon_mean",
            "prior_acc_best",
            "init_acc_mean",
        ):
            assert isinstance(ev[key], float), key
        assert (tmp_path / f"eval-{split}" / "retention.png").stat().st_size > 1000
    assert info["evaluation"]["test"]["mnist1d-mlp-tiny"]["retention_mean"] == pytest.approx(
        json.loads((tmp_path / "eval-test" / "evaluation.json").read_text())["retention_mean"]
    )


def test_fit_logs_every_term_saves_config_and_resumes(zoo, tmp_path):
    # two zoos -> two tasks: the functional term routes each genome to its own task's data
    common = [
        "--data.zoos",
        json.dumps([zoo, zoo]),
        "--model.export",
        "false",
        "--trainer.limit_val_batches",
        "1",
    ]
    one_epoch = ["--trainer.limit_train_batches", "2", "--trainer.max_epochs", "1"]
    assert _fit([*common, *one_epoch, "--trainer.default_root_dir", str(tmp_path / "a")]) == 0
    run = tmp_path / "a" / "tiny" / "version_0"
    assert (run / "config.yaml").is_file() and list(run.glob("events.out.tfevents*"))
    with open(run / "metrics.csv") as f:
        columns = set(next(csv.reader(f)))
    for term in ("loss", "recon", "fit", "head", "kl", "r2"):
        assert f"train/{term}" in columns and f"val/{term}" in columns, term
    last = run / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == 2

    # resume into a logger-less directory, then `validate` and `test` there: each writes config.yaml
    # into the same directory, which must overwrite the previous one rather than abort
    out = tmp_path / "b"
    resume = ["--trainer.logger", "false", "--trainer.default_root_dir", str(out)]
    two_epochs = ["--trainer.limit_train_batches", "2", "--trainer.max_epochs", "2"]
    assert _fit([*common, *resume, *two_epochs, "--ckpt_path", str(last)]) == 0
    ckpt = out / "checkpoints" / "last.ckpt"
    resumed = torch.load(ckpt, weights_only=False)
    assert resumed["global_step"] == 4 and resumed["epoch"] == 1 and "pretrain_generator" in resumed
    from latent_evo.cli.pretrain import main

    for sub in ("validate", "test"):
        assert main([sub, "--config", TINY, *common, *resume, "--ckpt_path", str(ckpt)]) == 0
    assert (out / "config.yaml").is_file()
    # `test` evaluates each zoo's held-out models; results lie next to the checkpoint
    for key in ("mnist1d-mlp-tiny", "mnist1d-mlp-tiny-1"):
        ev = json.loads((out / "checkpoints" / key / "evaluation.json").read_text())
        assert ev["split"] == "test" and isinstance(ev["retention_mean"], float)
        assert (out / "checkpoints" / key / "retention.png").is_file()


def test_architecture_mismatch_is_a_clear_error(zoo, tmp_path, capsys):
    from latent_evo.cli.pretrain import main
    from latent_evo.compressor.attention import Compressor
    from latent_evo.compressor.tokenizer import Tokenizer
    from latent_evo.genome import GenomeSpec
    from latent_evo.models.mlp import MLP
    from latent_evo.pretrain import ZooMismatchError, evaluate_compressor

    other = Tokenizer(GenomeSpec.from_module(MLP(40, (16,), 10)), 32)
    comp = Compressor.from_tokenizer(
        other, d_model=16, n_heads=2, encoder_layers=1, num_latents=2, latent_dim=4
    )
    with pytest.raises(
        ZooMismatchError, match=r"different architecture than zoo .*tiny.*layers\.0\.weight"
    ):
        evaluate_compressor(comp, zoo, split="test")
    comp.save_pretrained(tmp_path / "other")
    argv = [
        "fit",
        "--config",
        TINY,
        "--data.zoos",
        json.dumps([zoo]),
        "--model.init_from",
        str(tmp_path / "other"),
    ]
    assert (
        main([*argv, "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path)]) == 1
    )
    err = capsys.readouterr().err
    assert "different architecture" in err and str(tmp_path / "other") in err


def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(zoo, tmp_path, monkeypatch):
    import lightning.pytorch as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    from latent_evo.pretrain import CompressorModule, NonFiniteLossError, ZooDataModule

    step = CompressorModule._common_step

    def poisoned(self, batch, stage):  # the loss turns NaN from the third step on
        loss = step(self, batch, stage)
        return loss * float("nan") if stage == "train" and self.global_step >= 2 else loss

    monkeypatch.setattr(CompressorModule, "_common_step", poisoned)
    model = CompressorModule(
        compressor={
            "d_model": 16,
            "n_heads": 2,
            "encoder_layers": 1,
            "num_latents": 2,
            "latent_dim": 4,
        },
        lambda_fit=0.0,
    )
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True, every_n_train_steps=1)
    trainer = L.Trainer(
        max_steps=10,
        callbacks=[ckpt],
        logger=False,
        enable_progress_bar=False,
        limit_val_batches=0,
        default_root_dir=tmp_path,
    )
    with pytest.raises(
        NonFiniteLossError, match=r"non-finite training loss .* global step 2.*last\.ckpt"
    ):
        trainer.fit(model, ZooDataModule(zoos=[zoo], batch_size=4))
    saved = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert saved["global_step"] == 2
    assert all(
        torch.isfinite(v).all() for v in saved["state_dict"].values() if v.is_floating_point()
    )


def test_permutation_augment_preserves_function(zoo):
    from latent_evo.pretrain.augment import PermutationAugment
    from latent_evo.pretrain.data import open_zoo, zoo_task

    ds = open_zoo(zoo, "train")
    task = zoo_task(ds)
    genomes = ds.genomes(range(6))
    aug = PermutationAugment(task.model, task.spec)
    permuted = aug(genomes, torch.Generator().manual_seed(0))
    assert aug.enabled and not torch.equal(permuted, genomes)
    assert torch.equal(
        permuted.sort(dim=1).values, genomes.sort(dim=1).values
    )  # same values, moved
    batch = task.fitness_batch()
    torch.testing.assert_close(
        task.fitness(permuted, batch), task.fitness(genomes, batch), rtol=1e-4, atol=1e-5
    )


@pytest.mark.slow
def test_ddp_two_cpu_processes(zoo, tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "latent_evo.cli",
        "pretrain",
        "fit",
        "--config",
        TINY,
        "--data.zoos",
        json.dumps([zoo]),
    ]
    cmd += [
        "--trainer.accelerator",
        "cpu",
        "--trainer.strategy",
        "ddp",
        "--trainer.devices",
        "2",
        "--trainer.max_steps",
        "2",
    ]
    cmd += [
        "--trainer.limit_val_batches",
        "1",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.default_root_dir",
        str(tmp_path),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "tiny" / "version_0"
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 2
    assert (run / "compressor" / "model.safetensors").is_file()
