"""A zoo of low-rank adapters: LoRA fine-tunes of one trained base network on corpus parts.

```
base network  --Adam on the whole training text-->  ZOO/base.safetensors  (the frozen base)
for each corpus part k in `zoo_parts`, `adapters_per_part` adapters (own lr, own batch order):
    A = 0, B ~ N(0, init_scale²)  --Adam on part k's training windows, factors only-->  (A, B)
    checkpoints at `checkpoint_steps`, in one canonical gauge, written in the zoo format
```

Every adapter of every part trains in one batched pass: the members' windows are stacked
member-major and evaluated with `models.lowrank.low_rank_population`, so the base matmuls are
shared and no member's weights are ever built; the per-member Adam is `zoo.trainer`'s
`StackedOptimizer`. The zoo's task is `lora` (see `latent_evo.tasks.lora.lora_task`) around the
stored base, so pretraining rebuilds exactly the network the adapters change. The factors of a
product A Bᵀ are free up to A Q, B Q⁻ᵀ; every stored checkpoint is in one canonical form of
`canonical_factors`, so equal adapters look equal: by default the gauge closest to the shared
LoRA init, which is continuous in the adapter (the SVD form, `canonical: svd`, flips signs and
swaps columns between similar adapters; a compressor pretrained on it reached R² 0.01).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from latent_evo.config import build, read_yaml
from latent_evo.models.lowrank import canonical_factors, low_rank_population
from latent_evo.zoo.format import ZooError, ZooWriter, read_card
from latent_evo.zoo.trainer import StackedOptimizer

BASE_FILE = "base.safetensors"
INIT_FILE = "lora_init.safetensors"  # the shared LoRA init: the reference of the "init" gauge


class LoraZooConfigError(ValueError):
    """A LoRA zoo config is malformed; the message names the file and option at fault."""


@dataclass
class BaseTraining:
    steps: int = 1000  # Adam steps on the whole training text (0: keep the fresh init)
    lr: float = 2e-3
    batch_size: int = 16
    seed: int = 0


@dataclass
class LoraZooConfig:
    base_task: str = "text-gpt2-mini"  # a text task; its corpus is cut into `parts`
    base_overrides: dict[str, Any] = field(default_factory=dict)
    base: BaseTraining = field(default_factory=BaseTraining)
    rank: int = 4
    include: str = "transformer.h."  # adapt the linear layers whose name contains this
    init_scale: float = 0.02
    parts: int = 16  # the corpus in this many contiguous parts (pydoc topics are sorted)
    zoo_parts: list[int] = field(default_factory=lambda: list(range(12)))  # the rest stay unseen
    adapters_per_part: int = 4
    steps: int = 100
    batch_size: int = 2  # windows per adapter per step
    lr: list[float] = field(default_factory=lambda: [1e-3, 1e-2])  # log-uniform per adapter
    checkpoint_steps: list[int] = field(default_factory=lambda: [25, 50, 75, 100])
    # the stored factors' gauge (models.lowrank.canonical_factors): "init" = closest to the
    # shared LoRA init (continuous in the adapter), "svd" = singular vectors with fixed signs
    canonical: str = "init"
    seed: int = 0
    shard_size: int = 4096
    name: str | None = None

    def validate(self, where: str = "LoRA zoo config") -> LoraZooConfig:
        def bad(msg: str) -> LoraZooConfigError:
            return LoraZooConfigError(f"{where}: {msg}")

        if self.rank < 1 or self.steps < 1 or self.batch_size < 1 or self.adapters_per_part < 1:
            raise bad("'rank', 'steps', 'batch_size' and 'adapters_per_part' must be >= 1")
        if self.parts < 2 or not self.zoo_parts:
            raise bad("'parts' must be >= 2 and 'zoo_parts' must list at least one part")
        if any(not 0 <= k < self.parts for k in self.zoo_parts):
            raise bad(f"'zoo_parts' {self.zoo_parts} must lie in [0, {self.parts})")
        c = self.checkpoint_steps
        if not c or sorted(set(c)) != c or c[0] < 1 or c[-1] != self.steps:
            raise bad(f"'checkpoint_steps' must increase from >= 1 and end at 'steps', got {c}")
        if len(self.lr) != 2 or not 0 < self.lr[0] <= self.lr[1]:
            raise bad(f"'lr' must be [lo, hi] with 0 < lo <= hi, got {self.lr}")
        if self.canonical not in ("init", "svd"):
            raise bad(f"'canonical' must be 'init' or 'svd', got {self.canonical!r}")
        if self.base.steps < 0:
            raise bad("'base.steps' must be >= 0")
        return self


def load_lora_config(path: str | Path) -> LoraZooConfig:
    path = Path(path)
    data = read_yaml(path, LoraZooConfigError, "LoRA zoo config")
    where = f"LoRA zoo config {str(path)!r}"
    cfg = build(LoraZooConfig, data, LoraZooConfigError, where).validate(where)
    cfg.name = cfg.name or path.stem
    return cfg


def train_base(task, cfg: BaseTraining, progress: bool = True) -> torch.Tensor:
    """Adam on the task's whole training data; returns the `(n,)` genome."""
    from torch.func import functional_call

    gen = torch.Generator().manual_seed(cfg.seed)
    genome = task.init_genomes(1, gen)[0].clone().requires_grad_(True)
    opt = torch.optim.Adam([genome], lr=cfg.lr)
    warm = max(cfg.steps // 20, 1)
    sched = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up, cosine decay to 10 %
        opt, lambda s: min(1.0, (s + 1) / warm) * (0.55 + 0.45 * math.cos(math.pi * s / cfg.steps))
    )
    bar = tqdm(range(cfg.steps), desc="base network (Adam)", unit="step", disable=not progress)
    for _ in bar:
        x, y = task.sample_batch(gen, cfg.batch_size)
        logits = functional_call(task.model, task.spec.unflatten(genome), (x,))
        loss = task.loss_fn(logits, y).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(bits=f"{float(loss.detach()):.3f}", refresh=False)
    return genome.detach()


def _part_windows(cfg: LoraZooConfig, part: int, seq_len: int) -> tuple[torch.Tensor, ...]:
    from latent_evo.tasks.registry import load_dataset, text_windows

    data_kwargs = {**cfg.base_overrides.get("data", {}), "part": [part, cfg.parts]}
    data = load_dataset("text", **data_kwargs)
    return (*text_windows(data.train, seq_len), *text_windows(data.val, seq_len))


def _eval_bpc(model, factors, windows: list[torch.Tensor], chunk: int = 32) -> torch.Tensor:
    """`(P,)` bits per char of member p on its own windows `windows[p]` (same count for all)."""
    x = torch.stack([w[0] for w in windows])  # (P, m, T)
    y = torch.stack([w[1] for w in windows])
    P, m = x.shape[:2]
    total = torch.zeros(P)
    with torch.no_grad(), low_rank_population(model, factors):
        for s in range(0, m, chunk):
            xb, yb = x[:, s : s + chunk], y[:, s : s + chunk]  # (P, c, T)
            logits = model(xb.reshape(-1, xb.shape[-1]))  # (P * c, T, V) member-major
            per = torch.nn.functional.cross_entropy(
                logits.flatten(0, 1), yb.reshape(-1), reduction="none"
            ).view(P, -1)  # (P, c * T) nats
            total += per.sum(1) / math.log(2)
    return total / (m * x.shape[-1])


def generate_lora_zoo(
    config: LoraZooConfig | str | Path, out: str | Path | None = None, progress: bool = True
) -> Path:
    """Train the base (or reuse `OUT/base.safetensors`) and the adapters; write the zoo. A
    killed run, started again, keeps the stored base and redoes the adapters (same seeds, same
    result); a finished zoo is never overwritten."""
    from safetensors.torch import load_file, save_file

    from latent_evo.tasks import get_task
    from latent_evo.tasks.lora import LoRATask

    cfg = config if isinstance(config, LoraZooConfig) else load_lora_config(config)
    cfg.validate()
    out = Path(out) if out is not None else Path("zoos") / (cfg.name or "lora")
    resume = (out / "zoo.json").exists()
    if resume and read_card(out).get("complete"):
        raise ZooError(f"{out} already holds a finished zoo; remove it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    task = get_task(cfg.base_task, seed=cfg.base.seed, **cfg.base_overrides)
    base_path = out / BASE_FILE
    if base_path.is_file():  # a killed run resumes after its expensive part
        genome = task.spec.flatten(load_file(str(base_path)))
    else:
        genome = train_base(task, cfg.base, progress)
        save_file({k: v.contiguous() for k, v in task.spec.unflatten(genome).items()},
                  str(base_path), metadata={"format": "latent-evo-base"})  # fmt: skip
    base_seconds = time.perf_counter() - t0
    overrides = {"base": cfg.base_task, "base_weights": BASE_FILE, "rank": cfg.rank,
                 "include": cfg.include, "init_scale": cfg.init_scale, **cfg.base_overrides}  # fmt: skip
    lt = LoRATask(task, cfg.rank, _layers(task, cfg.include), cfg.init_scale, genome)
    model = lt.model.base.requires_grad_(False)  # only the factors train

    # the population: adapters_per_part members per zoo part, member-major
    parts = [k for k in cfg.zoo_parts for _ in range(cfg.adapters_per_part)]
    P = len(parts)
    gen = torch.Generator().manual_seed(cfg.seed)
    lo, hi = cfg.lr
    lr = torch.exp(math.log(lo) + torch.rand(P, generator=gen, dtype=torch.float64)
                   * (math.log(hi) - math.log(lo)))  # fmt: skip
    seq_len = task.train_data[0].shape[1]
    windows = {k: _part_windows(cfg, k, seq_len) for k in sorted(set(parts))}
    n_val = min(len(w[2]) for w in windows.values())
    init = lt.init_genomes(1, gen).expand(P, -1)  # shared LoRA init: the cohorts share it
    save_file({"genome": init[0].contiguous()}, str(out / INIT_FILE))
    opt = StackedOptimizer(lt.spec.unflatten(init.clone()), lr, torch.zeros(P))
    writer = ZooWriter(out, lt.spec, "lora", overrides, asdict(cfg), cfg.name, cfg.shard_size)
    writer.start(resume=resume)  # a killed run redoes the adapters, the base is kept
    genomes, rows = [], []
    bar = tqdm(range(1, cfg.steps + 1), desc=f"LoRA zoo ({P} adapters)", unit="step",
               disable=not progress)  # fmt: skip
    for step in bar:
        idx = [torch.randint(len(windows[k][0]), (cfg.batch_size,), generator=gen) for k in parts]
        x = torch.cat([windows[k][0][i] for k, i in zip(parts, idx, strict=True)])  # (P * b, T)
        y = torch.cat([windows[k][1][i] for k, i in zip(parts, idx, strict=True)])
        params = {k: v.detach().requires_grad_(True) for k, v in opt.params().items()}
        factors = lt.factors_of(params)  # {layer: (A (P, out, r), B (P, in, r))}
        with low_rank_population(model, factors):
            logits = model(x)  # (P * b, T, V)
        per = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.reshape(-1),
                                                reduction="none").view(P, -1)  # fmt: skip
        loss = per.mean(1).sum()  # each member's gradient is its own loss's
        grads = torch.autograd.grad(loss, list(params.values()))
        opt.step(dict(zip(params, grads, strict=True)))
        bar.set_postfix(nats=f"{float(loss.detach()) / P:.3f}", refresh=False)
        if step in cfg.checkpoint_steps:
            flat = lt.spec.flatten_batch(opt.params()).clone()  # (P, d)
            canon = canonical_genomes(lt, flat, init[0] if cfg.canonical == "init" else None)
            val = [(w[2][:n_val], w[3][:n_val]) for w in (windows[k] for k in parts)]
            bpc = _eval_bpc(model, lt.factors(canon), val)
            for p in range(P):
                hp = {"part": parts[p], "parts": cfg.parts, "lr": float(lr[p]), "step": step}
                rows.append({"model_id": p, "cohort": parts[p], "shared_init": True,
                             "init_id": 0, "epoch": cfg.checkpoint_steps.index(step) + 1,
                             "step": step, "test_loss": float(bpc[p]), "lr": float(lr[p]),
                             "order_seed": cfg.seed, "hparams": json.dumps(hp)})  # fmt: skip
            genomes.append(canon)
    writer.write_part("adapters", torch.cat(genomes), rows)
    writer.finalize({"generation_seconds": round(time.perf_counter() - t0, 2),
                     "base_seconds": round(base_seconds, 2)})  # fmt: skip
    return out


def _layers(task, include: str) -> list[str]:
    from latent_evo.models.lowrank import linear_layers

    layers = linear_layers(task.model, include)
    if not layers:
        raise LoraZooConfigError(f"no linear layer of {task.name} has {include!r} in its name")
    return layers


def canonical_genomes(
    lt, genomes: torch.Tensor, reference: torch.Tensor | None = None
) -> torch.Tensor:
    """`(P, d)` adapter genomes of LoRATask `lt` with every layer's factors canonicalised:
    in the gauge closest to the B factors of the `(d,)` genome `reference`, or (None) SVD."""
    sd = lt.spec.unflatten(genomes.clone())  # {name: (P, r, out) / (P, r, in)}
    ref = lt.spec.unflatten(reference[None]) if reference is not None else None
    for i in range(len(lt.layers)):
        b_ref = ref[f"adapters.B.{i}"][0].mT if ref is not None else None  # (in, r)
        a, b = canonical_factors(sd[f"adapters.A.{i}"].mT, sd[f"adapters.B.{i}"].mT, b_ref)
        sd[f"adapters.A.{i}"], sd[f"adapters.B.{i}"] = a.mT, b.mT  # rows: rank components
    return lt.spec.flatten_batch(sd)
