"""`latent-evo pretrain {fit,validate,test} --config configs/pretrain/<name>.yaml` (LightningCLI).

Defaults live in the typed `__init__`s of `CompressorModule` and `ZooDataModule` and in the trainer
defaults below; a YAML config only overrides them. The resolved config is saved as `config.yaml` in
each run directory (overwritten on a rerun into the same directory rather than refused).
"""

from __future__ import annotations

import sys
import warnings

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from latent_evo.pretrain.data import ZooDataModule, ZooMismatchError
from latent_evo.pretrain.module import CompressorModule, NonFiniteLossError
from latent_evo.zoo.format import ZooError

TRAINER_DEFAULTS = {
    "default_root_dir": "runs",
    "max_epochs": 20,
    "gradient_clip_val": 1.0,
    "log_every_n_steps": 10,
    # the learning rate is logged by the module (train/lr), which also works without a logger
}


class PretrainCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument(
            "--name",
            default="pretrain",
            help="run name: runs go to <trainer.default_root_dir>/<name>/version_N",
        )
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.save_last": True,
                "checkpoint.monitor": "val/loss",
                "checkpoint.save_top_k": 1,
            }
        )

    def instantiate_trainer(self, **kwargs):
        cfg = self.config_init[self.subcommand] if self.subcommand else self.config_init
        if cfg["trainer"].get("logger") in (None, True) and not cfg["trainer"].get("fast_dev_run"):
            # default loggers: TensorBoard + CSV in one run directory <root>/<name>/version_N, which
            # also receives config.yaml, checkpoints/ and the exported compressor
            root = cfg["trainer"].get("default_root_dir") or "runs"
            tb = TensorBoardLogger(save_dir=root, name=cfg["name"])
            kwargs["logger"] = [tb, CSVLogger(save_dir=root, name=cfg["name"], version=tb.version)]
        return super().instantiate_trainer(**kwargs)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `latent-evo pretrain`; returns a process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # `latent-evo pretrain ...` always has sys.argv besides args=argv; Lightning warns about that
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    try:
        PretrainCLI(
            CompressorModule,
            ZooDataModule,
            args=argv,
            trainer_defaults=TRAINER_DEFAULTS,
            save_config_kwargs={"overwrite": True},
            seed_everything_default=0,
            parser_kwargs={"prog": "latent-evo pretrain"},
        )
    except SystemExit as e:  # --help, argument errors
        return int(e.code or 0) if isinstance(e.code, int) else 2
    except (NonFiniteLossError, ZooMismatchError, FileNotFoundError, ZooError, ValueError) as e:
        print(f"latent-evo pretrain: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
