"""Generate a model zoo from a `ZooConfig`: cohorts of models trained at once, checkpoints saved.

Every cohort draws everything (initialisations, hyper-parameters, batch-order seeds, data subsets,
noisy labels) from its own generator seeded by (config seed, cohort index), so a resumed run writes
exactly what an uninterrupted one would, and finished cohorts are never retrained.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from latent_evo.zoo.config import ZooConfig, load_config, sample_epochs, sample_range
from latent_evo.zoo.format import ZooWriter
from latent_evo.zoo.trainer import checkpoint_schedule, train_cohort

SCALED_KINDS = (
    "weight",
    "embedding",
)  # init_scale multiplies these; biases / norms / buffers keep their init


def build_task(cfg: ZooConfig):
    from latent_evo.tasks import get_task

    overrides = dict(cfg.task_overrides)
    if cfg.device is not None:
        overrides["device"] = cfg.device
    elif torch.cuda.is_available():
        overrides.setdefault("device", "cuda")
    return get_task(cfg.task, **overrides)


def _cohort_generator(seed: int, cohort: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 7_919 + cohort * 1_000_003 + 12_345) % 2**63)


def _scale_mask(spec) -> torch.Tensor:
    """`(n,)` True where `init_scale` applies."""
    return torch.cat([torch.full((t.numel,), t.kind in SCALED_KINDS) for t in spec.tensors])


@torch.no_grad()
def _metrics(
    task, params: dict[str, torch.Tensor], data: tuple[torch.Tensor, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Example-weighted mean of `task.metrics` over `data`, in the task's evaluation batches."""
    x, y = data
    sums: dict[str, torch.Tensor] = {}
    step = task.eval_batch_size
    for s in range(0, len(x), step):
        for k, v in task.metrics(params, (x[s : s + step], y[s : s + step])).items():
            sums[k] = sums.get(k, 0) + v.double().cpu() * len(x[s : s + step])
    return {k: v / len(x) for k, v in sums.items()}


def _train_stem(cfg: ZooConfig, task, init: torch.Tensor, group, gen: torch.Generator):
    """`init` `(n,)` trained for `group.stem_epochs` epochs on all training data: the shared start
    of a cohort's members."""
    params = train_cohort(
        task.model,
        task.loss_fn,
        task.spec.unflatten(init[None].to(task.device)),
        task.train_data[0],
        task.train_data[1],
        lr=torch.tensor([group.stem_lr]),
        weight_decay=torch.zeros(1),
        epochs=torch.tensor([group.stem_epochs]),
        order_seeds=torch.randint(0, 2**62, (1,), generator=gen),
        batch_size=cfg.batch_size,
        optimizer=cfg.optimizer,
        betas=cfg.betas,
        momentum=cfg.momentum,
    )
    return task.spec.flatten_batch(params)[0].cpu()


def plan_cohort(
    cfg: ZooConfig, task, cohort: int, shared_init: bool, size: int, group=None
) -> dict[str, Any]:
    """Initial genomes `(P, n)` and per-model hyper-parameters of one cohort (deterministic)."""
    gen = _cohort_generator(cfg.seed, cohort)
    h = cfg.hparams
    epochs = sample_epochs(h.epochs, size, gen)  # first: generate_zoo re-draws it for the ETA
    lr = sample_range(h.lr, size, gen, log=True)
    wd = sample_range(h.weight_decay, size, gen, log=True)
    noise = sample_range(h.label_noise, size, gen, log=False)
    order_seeds = torch.randint(0, 2**62, (size,), generator=gen)
    if shared_init:
        scale = sample_range(h.init_scale, 1, gen, log=True).expand(size)
        init = task.init_genomes(1, gen).cpu().expand(size, -1)
    else:
        scale = sample_range(h.init_scale, size, gen, log=True)
        init = task.init_genomes(size, gen).cpu()
    mask = _scale_mask(task.spec)
    init = torch.where(mask, init * scale.unsqueeze(1).to(init.dtype), init).contiguous()  # (P, n)
    n_train = len(task.train_data[0])
    subsets = None
    if h.data_fraction < 1.0:
        m = max(1, round(h.data_fraction * n_train))
        subsets = torch.stack(
            [torch.randperm(n_train, generator=gen)[:m] for _ in range(size)]
        )  # (P, m)
    targets = None
    if bool((noise > 0).any()):
        y = task.train_data[1].cpu()
        if y.dim() != 1 or y.is_floating_point():
            raise ValueError(
                f"label_noise needs a classification task with (N,) labels; {task.name} has {tuple(y.shape)}"
            )
        n_cls = int(y.max()) + 1
        flip = torch.rand(size, n_train, generator=gen, dtype=torch.float64) < noise.unsqueeze(1)
        rand_y = torch.randint(0, n_cls, (size, n_train), generator=gen)
        targets = torch.where(flip, rand_y, y.unsqueeze(0))  # (P, N)
    if group is not None and group.stem_epochs:  # drawn last: other cohorts' plans unchanged
        init = _train_stem(cfg, task, init[0], group, gen).expand(size, -1).contiguous()
    return dict(
        init=init, lr=lr, weight_decay=wd, epochs=epochs, label_noise=noise, order_seeds=order_seeds,
        init_scale=scale.clone(), subsets=subsets, targets=targets,
    )  # fmt: skip


def train_one_cohort(
    cfg: ZooConfig,
    task,
    cohort: int,
    first_model_id: int,
    shared_init: bool,
    size: int,
    on_step=None,
    group=None,
):
    """Train one cohort; returns `(genomes (R, n), rows)` with one row per checkpoint."""
    plan = plan_cohort(cfg, task, cohort, shared_init, size, group)
    dev = task.device
    n_train = plan["subsets"].shape[1] if plan["subsets"] is not None else len(task.train_data[0])
    steps_per_epoch = math.ceil(n_train / cfg.batch_size)
    n_eval = (
        len(task.train_data[0])
        if cfg.eval_examples is None
        else min(cfg.eval_examples, len(task.train_data[0]))
    )
    train_eval = (task.train_data[0][:n_eval], task.train_data[1][:n_eval])  # fixed, clean labels
    genomes, rows = [], []

    def on_checkpoint(epoch: int, params: dict[str, torch.Tensor], models: torch.Tensor) -> None:
        sel = {k: v[models.to(v.device)] for k, v in params.items()}
        tr, te = _metrics(task, sel, train_eval), _metrics(task, sel, task.test_data)
        genomes.append(task.spec.flatten_batch(sel).cpu())
        for j, i in enumerate(models.tolist()):
            hp = {k: float(plan[k][i]) for k in ("lr", "weight_decay", "init_scale", "label_noise")}
            hp.update(epochs=int(plan["epochs"][i]), data_fraction=cfg.hparams.data_fraction)
            rows.append(
                {
                    "model_id": first_model_id + i,
                    "cohort": cohort,
                    "shared_init": shared_init,
                    "init_id": first_model_id if shared_init else first_model_id + i,
                    "epoch": epoch,
                    "step": epoch * steps_per_epoch,
                    "train_loss": float(tr["loss"][j]),
                    "test_loss": float(te["loss"][j]),
                    "test_accuracy": float(te["accuracy"][j]) if "accuracy" in te else float("nan"),
                    "order_seed": int(plan["order_seeds"][i]),
                    "hparams": _json(
                        {**hp, "optimizer": cfg.optimizer, "batch_size": cfg.batch_size}
                    ),
                    **hp,
                }
            )

    train_cohort(
        task.model,
        task.loss_fn,
        task.spec.unflatten(plan["init"].to(dev)),
        task.train_data[0],
        task.train_data[1],
        lr=plan["lr"],
        weight_decay=plan["weight_decay"],
        epochs=plan["epochs"],
        order_seeds=plan["order_seeds"],
        batch_size=cfg.batch_size,
        optimizer=cfg.optimizer,
        betas=cfg.betas,
        momentum=cfg.momentum,
        subsets=plan["subsets"],
        targets=plan["targets"],
        checkpoint_epochs=cfg.checkpoint_epochs,
        on_checkpoint=on_checkpoint,
        on_step=on_step,
    )
    order = sorted(
        range(len(rows)), key=lambda r: (rows[r]["model_id"], rows[r]["epoch"])
    )  # a model's checkpoints together
    return torch.cat(genomes)[torch.tensor(order)], [rows[r] for r in order]


def _json(d: dict) -> str:
    import json

    return json.dumps(d, sort_keys=True)


def generate_zoo(
    config: ZooConfig | str | Path,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    task=None,
) -> Path:
    """Generate (or, with `resume`, finish) the zoo of `config` into `out` (default `zoos/<name>`).

    `task` overrides the config's task (a `Task` object, e.g. one you built yourself)."""
    cfg = load_config(config) if not isinstance(config, ZooConfig) else config
    cfg.validate()
    name = cfg.name or cfg.task
    out = Path(out) if out is not None else Path("zoos") / name
    task = task if task is not None else build_task(cfg)
    task.model.eval()  # eval-mode BatchNorm / no dropout: see latent_evo.zoo.trainer
    writer = ZooWriter(
        out, task.spec, task.name, cfg.task_overrides, cfg.to_dict(), name, cfg.shard_size
    )
    done = writer.start(resume)
    t0, c0 = time.perf_counter(), time.process_time()
    cohorts = cfg.cohort_list()
    done_models = sum(
        g.models_per_cohort for c, g in enumerate(cohorts) if f"cohort-{c:05d}" in done
    )
    fmt = "{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total_fmt} models [{elapsed}<{remaining}, {rate_fmt}]"
    bar = tqdm(
        total=cfg.num_models,
        initial=done_models,
        unit="model",
        desc=f"zoo {name}",
        disable=not progress,
        bar_format=fmt,
    )
    first_id = 0
    for c, group in enumerate(cohorts):
        part = f"cohort-{c:05d}"
        size = group.models_per_cohort
        if part not in done:
            ep = sample_epochs(cfg.hparams.epochs, size, _cohort_generator(cfg.seed, c))
            n_train = (
                len(task.train_data[0])
                if cfg.hparams.data_fraction >= 1
                else max(1, round(cfg.hparams.data_fraction * len(task.train_data[0])))
            )
            total_steps = int(ep.max()) * math.ceil(n_train / cfg.batch_size)
            per_step = size / max(
                total_steps, 1
            )  # fractional models per step: a smooth rate and ETA
            genomes, rows = train_one_cohort(
                cfg,
                task,
                c,
                first_id,
                group.shared_init,
                size,
                on_step=lambda s=per_step: bar.update(s),
                group=group,
            )
            writer.write_part(part, genomes, rows)
            bar.n = done_models = done_models + size  # exact count after float updates
            bar.refresh()
        first_id += size
    bar.close()
    writer.finalize(
        {
            "generation_seconds": round(time.perf_counter() - t0, 2),  # of this run only
            "generation_cpu_seconds": round(time.process_time() - c0, 2),
            "device": str(task.device),
        }
    )
    return out


def expected_checkpoints(cfg: ZooConfig) -> int:
    """Rows a finished zoo of `cfg` holds (for info / tests)."""
    total = 0
    for c, group in enumerate(cfg.cohort_list()):
        ep = sample_epochs(
            cfg.hparams.epochs, group.models_per_cohort, _cohort_generator(cfg.seed, c)
        )
        total += sum(len(checkpoint_schedule(cfg.checkpoint_epochs, int(e))) for e in ep)
    return total
