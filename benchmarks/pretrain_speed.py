"""Pretraining throughput (genome tokens per second) of `CompressorModule` under Lightning.

    .venv/bin/python -m latent_evo.benchmarks.pretrain_speed --zoo zoos/mnist1d-mlp --config configs/pretrain/mnist1d-mlp.yaml

Times full optimizer steps (forward, every loss term, backward, clipping, AdamW) after a few
warm-up steps, with the functional term on and off, and prints one markdown table row each.
"""

from __future__ import annotations

import argparse
import platform
import time

import lightning.pytorch as L
import torch
import yaml

from latent_evo.pretrain import CompressorModule, ZooDataModule


class StepTimer(L.Callback):
    def __init__(self, skip: int):
        self.skip, self.t0, self.steps, self.genomes = skip, None, 0, 0

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == self.skip:
            self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if self.t0 is not None:
            self.steps += 1
            self.genomes += len(batch["genome"])


def measure(model_kwargs: dict, data_kwargs: dict, steps: int, skip: int, precision: str) -> dict:
    model = CompressorModule(**{**model_kwargs, "export": False})
    dm = ZooDataModule(**data_kwargs)
    timer = StepTimer(skip)
    trainer = L.Trainer(
        max_steps=skip + steps,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        gradient_clip_val=1.0,
        precision=precision,
        callbacks=[timer],
    )
    trainer.fit(model, dm)
    seconds = time.perf_counter() - timer.t0
    T = model.compressor.tokenizer.num_tokens
    return {
        "steps_per_s": timer.steps / seconds,
        "genomes_per_s": timer.genomes / seconds,
        "tokens_per_s": timer.genomes * T / seconds,
        "tokens": T,
        "params": sum(p.numel() for p in model.compressor.parameters()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/pretrain/mnist1d-mlp.yaml")
    ap.add_argument("--zoo", default=None, help="override data.zoos with this one zoo")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--skip", type=int, default=3)
    ap.add_argument("--precision", default="32-true")
    args = ap.parse_args()
    cfg = yaml.safe_load(open(args.config))
    data = dict(cfg.get("data", {}))
    if args.zoo:
        data["zoos"] = [args.zoo]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
    )
    print("| functional term | batch | tokens/genome | params | steps/s | genomes/s | tokens/s |")
    print("|---|---|---|---|---|---|---|")
    for lam in (cfg["model"].get("lambda_fit", 1.0), 0.0):
        r = measure(
            {**cfg["model"], "lambda_fit": lam}, data, args.steps, args.skip, args.precision
        )
        print(
            f"| lambda_fit={lam} | {data.get('batch_size', 64)} | {r['tokens']} | {r['params']:,} | "
            f"{r['steps_per_s']:.2f} | {r['genomes_per_s']:.1f} | {r['tokens_per_s']:,.0f} |"
        )


if __name__ == "__main__":
    main()
