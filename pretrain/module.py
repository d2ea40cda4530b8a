"""`CompressorModule`: the LightningModule that pretrains a genome compressor on model zoos.

The compressor is built lazily in `configure_model` because its size depends on the zoo's genome
spec and normalisation statistics, which the datamodule knows; resuming (`--ckpt_path`) rebuilds it
the same way and then loads the weights. One `_common_step` serves train/val/test and logs every
term of the combined loss separately (see DESIGN.md):

    L = recon + lambda_fit * functional + lambda_head * head + beta * latent regulariser
"""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import torch

from latent_evo.compressor import losses
from latent_evo.pretrain.augment import PermutationAugment
from latent_evo.pretrain.data import check_compressor_spec

MODEL_TYPES = {
    "attention": "latent_evo.compressor.attention.Compressor",
    "mlp": "latent_evo.compressor.mlp.MLPAutoencoder",
}


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN/inf; the run stops and earlier checkpoints are kept."""


def compressor_class(model_type: str) -> type:
    """'attention' | 'mlp' -> the compressor class. A name from this registry, never an import
    path: a config file must not be able to import arbitrary modules."""
    if model_type not in MODEL_TYPES:
        raise ValueError(
            f"model.model_type must be one of {sorted(MODEL_TYPES)}, got {model_type!r}"
        )
    module, _, name = MODEL_TYPES[model_type].rpartition(".")
    return getattr(importlib.import_module(module), name)


class CompressorModule(L.LightningModule):
    """Pretrains a genome compressor with the combined loss.

    Args:
        model_type: 'attention' (the self-attention `Compressor`) or 'mlp' (the
            `MLPAutoencoder` baseline).
        compressor: overrides of the compressor's config (e.g. `{latent_tokens: 8, latent_dim: 16}`).
        chunk_size: values per token (tokenizer); ignored with `init_from`.
        init_from: a saved compressor directory to start from (fine-tuning on a new zoo); its
            genome spec must match the zoo's.
        lambda_fit: weight of the functional term (F(w_hat) - F(w))^2, F = the task's loss.
        lambda_head: weight of the fitness-head regression (head(z) - fitness)^2.
        beta: weight of the KL term (None: the compressor config's `beta`; the "noise"/"none"
            regularisers have no KL term).
        permutation_augment: randomly permute hidden units of training genomes.
        fitness_batch_size: data examples per task for the functional term.
        lr, weight_decay, warmup_steps, min_lr_ratio: AdamW with linear warm-up then cosine decay
            to `min_lr_ratio * lr` over the run's optimizer steps.
        export: at the end of `fit`, save the compressor (+ provenance and evaluation) to
            `<run_dir>/compressor/`.
        eval_max_models, eval_prior_samples: size of the end-of-fit / test evaluation.
        seed: seeds augmentation and fitness batches (offset by the process rank under DDP).
    """

    def __init__(
        self,
        model_type: str = "attention",
        compressor: dict[str, Any] | None = None,
        chunk_size: int = 32,
        init_from: str | None = None,
        lambda_fit: float = 1.0,
        lambda_head: float = 0.1,
        beta: float | None = None,
        permutation_augment: bool = True,
        fitness_batch_size: int = 256,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        warmup_steps: int = 100,
        min_lr_ratio: float = 0.05,
        export: bool = True,
        eval_max_models: int = 256,
        eval_prior_samples: int = 64,
        seed: int = 0,
    ):
        super().__init__()
        compressor_class(model_type)  # refuse an unknown model_type before any file is written
        self.save_hyperparameters()
        self.compressor: torch.nn.Module | None = None
        self.tasks: list = []
        self.augment: PermutationAugment | None = None
        self.generator = torch.Generator().manual_seed(seed)
        self.last_evaluation: dict[str, Any] | None = None

    # ---- building -----------------------------------------------------------------------------
    def configure_model(self) -> None:
        if self.compressor is not None:
            return
        dm = self.trainer.datamodule
        if dm is None:
            raise ValueError(
                "CompressorModule needs a ZooDataModule (pass datamodule=... or data: in the config)"
            )
        spec = dm.spec
        cls = compressor_class(self.hparams.model_type)
        if self.hparams.init_from:
            comp = cls.from_pretrained(self.hparams.init_from)
            check_compressor_spec(comp, spec, dm.zoos[0], self.hparams.init_from)
        else:
            from latent_evo.compressor.tokenizer import Tokenizer

            tok = Tokenizer(spec, self.hparams.chunk_size).fit_normalization(dm.norm_genomes())
            comp = cls.from_tokenizer(tok, **(self.hparams.compressor or {}))
        self.compressor = comp
        self.tasks = dm.tasks(self.device)
        self.task_names = dm.task_names()
        self.augment = PermutationAugment(self.tasks[0].model, spec)
        self.generator.manual_seed(self.hparams.seed + 1000 * self.global_rank)

    @property
    def tokenizer(self):
        return self.compressor.tokenizer  # follows the compressor's device and norm buffers

    # ---- the combined loss --------------------------------------------------------------------
    def _fitness_fn(self, task_id: torch.Tensor):
        """A population fitness for `latent_evo.compressor.losses.compressor_loss` that evaluates
        each genome on its own zoo's task. The data batches are drawn once here, so F(w_hat) and
        F(w) see the same examples."""
        present = [t for t in range(len(self.tasks)) if bool((task_id == t).any())]
        data = {}
        for t in present:
            task = self.tasks[t]
            if task.device != self.device:  # configure_model runs before the strategy moves us
                task.to(self.device)
            data[t] = task.sample_batch(self.generator, self.hparams.fitness_batch_size)

        def fitness_fn(params: dict[str, torch.Tensor], _batch: Any) -> torch.Tensor:
            P = task_id.shape[0]
            f = next(iter(params.values())).new_empty(P, dtype=torch.float32)  # (P,)
            for t in present:
                idx = (task_id == t).nonzero().squeeze(1)  # (b,)
                sub = {k: v[idx] for k, v in params.items()}
                f = f.index_put((idx,), self.tasks[t].fitness(sub, data[t]).float())
            return f

        return fitness_fn

    def _common_step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        genomes = batch["genome"]  # (B, n)
        if stage == "train" and self.hparams.permutation_augment and self.augment.enabled:
            genomes = self.augment(genomes, self.generator)
        tokens = self.tokenizer.tokenize(genomes)  # (B, T, C) normalised, padding = 0
        lambda_fit, fitness_fn, fitness = self.hparams.lambda_fit, None, None
        if lambda_fit > 0:
            fitness_fn = self._fitness_fn(batch["task_id"])
            with torch.no_grad():  # F(w) of the zoo's own weights, not of their token round trip
                fitness = fitness_fn(self.tokenizer.spec.unflatten(genomes.float()), None)
        terms = losses.compressor_loss(
            self.compressor, tokens, fitness_fn=fitness_fn, fitness=fitness,
            head_target=batch["fitness"],  # the zoo's test loss (NaN where an import lacks it)
            lambda_fit=lambda_fit, lambda_head=self.hparams.lambda_head, beta=self.hparams.beta,
        )  # fmt: skip
        loss = terms["loss"]
        B = genomes.shape[0]
        sync = stage != "train"  # epoch-level val/test numbers averaged over all processes
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=B, sync_dist=sync)
        for k in ("recon", "fit", "head", "kl", "r2"):
            self.log(f"{stage}/{k}", terms[k], prog_bar=k == "r2", batch_size=B, sync_dist=sync)
        return loss

    # ---- steps --------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._common_step(batch, "train")
        bad = not bool(torch.isfinite(loss))
        if self.trainer.strategy.reduce_boolean_decision(bad, all=False):  # any process -> all stop
            ckpt = self.trainer.checkpoint_callback
            last = (ckpt.last_model_path or ckpt.best_model_path) if ckpt else ""
            g = batch["genome"]  # (B, n): the data, not the optimiser, may be the culprit
            rows = (~torch.isfinite(g).all(1)).nonzero().squeeze(1).tolist()
            if rows:
                i = rows[0]
                raise NonFiniteLossError(
                    f"the zoo data holds NaN or inf: {len(rows)} genome(s) of this batch, e.g. "
                    f"model {int(batch['model_id'][i])} epoch {int(batch['epoch'][i])} of zoo "
                    f"{self.trainer.datamodule.zoos[int(batch['task_id'][i])]!r}; the run is "
                    f"stopped. Last good checkpoint: {last or 'none saved yet'}."
                )
            raise NonFiniteLossError(
                f"non-finite training loss ({float(loss):.4g}) at global step {self.global_step}, "
                f"epoch {self.current_epoch}; the run is stopped. Last good checkpoint: "
                f"{last or 'none saved yet'}. Lower model.lr, raise warmup_steps or set trainer.gradient_clip_val."
            )
        self.log(
            "train/lr",
            self.trainer.optimizers[0].param_groups[0]["lr"],
            batch_size=len(batch["genome"]),
        )
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._common_step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._common_step(batch, "test")

    def configure_optimizers(self):
        opt = torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warm, floor = max(0, self.hparams.warmup_steps), self.hparams.min_lr_ratio

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            progress = min(1.0, (step - warm) / max(1, total - warm))
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ---- checkpoint extras: RNG state, so a resumed run draws the same batches -------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["pretrain_generator"] = self.generator.get_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "pretrain_generator" in checkpoint:
            self.generator.set_state(checkpoint["pretrain_generator"])

    # ---- evaluation and export ----------------------------------------------------------------
    def run_dir(self) -> Path:
        return Path(self.trainer.log_dir or self.trainer.default_root_dir)

    def evaluate(self, split: str, out_dir: Path) -> dict[str, Any]:
        """`evaluate_compressor` on every zoo's `split`; JSON + PNG per zoo under `out_dir`."""
        from latent_evo.pretrain.evaluate import evaluate_compressor

        dm = self.trainer.datamodule
        results = {}
        for zoo, task in zip(dm.split(split), self.tasks, strict=True):
            key = str(zoo.card.get("name") or task.name)
            key = key if key not in results else f"{key}-{len(results)}"  # the same zoo twice
            # one zoo: files straight in out_dir; several: a sub-directory per zoo
            sub = out_dir / key if len(self.tasks) > 1 else out_dir
            results[key] = evaluate_compressor(
                self.compressor,
                zoo,
                task,
                split=split,
                max_models=self.hparams.eval_max_models,
                prior_samples=self.hparams.eval_prior_samples,
                seed=self.hparams.seed,
                out_dir=sub,
            )
        return results

    def on_test_epoch_end(self) -> None:
        ckpt = self.trainer.ckpt_path
        out = Path(ckpt).parent if ckpt else self.run_dir()  # run_dir() is a collective under DDP
        if not self.trainer.is_global_zero:
            return
        results = self.evaluate("test", out)
        self.last_evaluation = results
        for task, r in results.items():
            for k in (
                "recon_r2",
                "retention_mean",
                "head_r2",
                "acc_recon_mean",
                "acc_original_mean",
            ):
                if isinstance(r.get(k), float):
                    self.log(f"test_eval/{task}/{k}", r[k], rank_zero_only=True)

    def fit_prior(self) -> None:
        """Fit the compressor's sampling prior to the codes of every training checkpoint (all
        zoos): what `sample`, the prior init of evolution and the evaluation's prior draw from."""
        was_training = self.compressor.training
        self.compressor.eval()
        codes = torch.cat(
            [zoo.encode(self.compressor) for zoo in self.trainer.datamodule.split("train")]
        )
        self.compressor.fit_prior(codes.float())
        self.compressor.train(was_training)

    def on_fit_end(self) -> None:
        if not self.hparams.export:
            return
        run = self.run_dir()  # on every process: trainer.log_dir broadcasts under DDP
        if not self.trainer.is_global_zero:
            return
        export = run / "compressor"
        self.fit_prior()
        self.compressor.save_pretrained(export)
        # held-out models (test split) next to a same-sized sample of training models
        evaluation = {
            split: self.evaluate(split, run / f"eval-{split}") for split in ("test", "train")
        }
        self.last_evaluation = evaluation
        info = {
            "zoos": self.trainer.datamodule.provenance(),
            "pretrain": dict(self.hparams),
            "global_step": self.global_step,
            "evaluation": evaluation,
        }
        (export / "pretraining.json").write_text(json.dumps(info, indent=1, default=str))
        print(f"exported compressor to {export}")
        for split, res in evaluation.items():
            for task, r in res.items():
                print(f"  {split:5s} {task}: {summary_line(r)}")


def summary_line(r: dict[str, Any]) -> str:
    keys = ("recon_r2", "retention_mean", "acc_original_mean", "acc_recon_mean", "head_r2")
    return ", ".join(f"{k}={r[k]:.4f}" for k in keys if isinstance(r.get(k), float))
