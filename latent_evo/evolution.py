"""The evolution loop: ask -> decode -> evaluate -> tell -> log -> checkpoint, all on one device.

    from latent_evo import evolve
    res = evolve(task="mnist1d-mlp-tiny", compressor="runs/compressor", strategy="cma_es",
                 generations=50, seed=0)
    res.best_model, res.history, res.evaluations

`LatentEvolution` is the same loop for step-by-step control (`.step()`, `.run()`,
`.state_dict()`). Per generation the population is one `(P, d)` tensor: decoded in blocks by the
compressor, evaluated with the task's vmapped fitness, sharded across `torch.distributed` ranks
when launched by torchrun -- never a per-individual Python loop. Modes:

* latent     the strategy searches the compressor's latent space (genome = decode(z));
* residual   it searches changes around the best genome (see `latent_evo.spaces`), re-based
             every `residual.rebase_every` generations, so the decoder never caps the result;
* direct     no compressor: the strategy searches the flat genome (the baseline).

Options (`EvolveConfig`): automatic switching to direct space when latent progress stalls,
surrogate pre-screening by the fitness head, online fine-tuning with re-encoding, a direct
warm-up phase feeding the fine-tuning archive.
"""

from __future__ import annotations

import copy
import math
import signal
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from latent_evo import checkpoint as ckpt
from latent_evo.distributed import is_main, shard_map
from latent_evo.evolve_config import EvolveConfig, StrategyConfig
from latent_evo.evolve_init import EvolveResult, checked_fitness, genome_to_module, resolve_task
from latent_evo.finetune import Archive, finetune, reencode
from latent_evo.spaces import DirectSpace, LatentSpace, ResidualSpace, SearchSpace
from latent_evo.strategies import Strategy, get_strategy

Callback = Callable[["LatentEvolution", dict[str, Any]], None]
# Offsets of the seeds of the run's independent random streams (strategy / switch / warm-up).
_SEED_STRATEGY, _SEED_DIRECT, _SEED_WARMUP = 1, 2, 3


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _make_strategy(cfg: StrategyConfig, dim: int, device: torch.device, seed: int) -> Strategy:
    return get_strategy(
        cfg.name, dim=dim, popsize=cfg.popsize, device=device, seed=seed, **cfg.hparams
    )


def _strategy_points(strategy: Strategy) -> Tensor:
    """The strategy's current state as points `(k, d)`: a GA's population, an ES's mean."""
    pop = getattr(strategy, "population", None)
    return pop if torch.is_tensor(pop) and pop.ndim == 2 else strategy.mean[None]


class LatentEvolution:
    """One evolution run. `strategy` is a registered name or a `Strategy` instance (whose `dim`
    must match the search space); `compressor` a `Compressor`, a path, or None (direct mode)."""

    def __init__(
        self,
        task: Any,
        compressor: Any = None,
        strategy: str | Strategy | None = None,
        config: EvolveConfig | dict | None = None,
        callbacks: Sequence[Callback] = (),
        device: str | torch.device | None = None,
        seed: int | None = None,
        fitness_fn: Callable | None = None,
    ):
        cfg = config if isinstance(config, EvolveConfig) else EvolveConfig.from_dict(config or {})
        cfg = copy.deepcopy(cfg)  # resolved below; the caller's object stays as given
        if isinstance(strategy, str):
            cfg.strategy.name = strategy
        if seed is not None:
            cfg.seed = int(seed)
        has_compressor = compressor is not None or cfg.compressor is not None
        if cfg.mode == "auto":
            cfg.mode = "latent" if has_compressor else "direct"
        elif cfg.mode != "direct" and not has_compressor:
            raise ValueError(
                f"mode {cfg.mode!r} needs a compressor (a Compressor, a path, or "
                "`compressor:` in the config); use mode='direct' without one"
            )
        self.cfg = cfg.validate()
        self.device = resolve_device(device if device is not None else cfg.device)
        self.task = resolve_task(task, fitness_fn, dict(cfg.task.overrides))
        self.task.to(self.device)
        self.callbacks = list(callbacks)
        self.n = self.task.spec.numel
        self.compressor = self._load_compressor(compressor)
        self.space: SearchSpace = self._make_space()
        self.direct_space = DirectSpace(self.n)
        seed_ = cfg.seed
        if isinstance(strategy, Strategy):
            if strategy.dim != self.space.dim:
                raise ValueError(
                    f"strategy has dim {strategy.dim}, the {self.space.name} space has {self.space.dim}"
                )
            self.strategy = strategy
        else:
            self.strategy = _make_strategy(
                cfg.strategy, self.space.dim, self.device, seed_ + _SEED_STRATEGY
            )
        self.direct_strategy: Strategy | None = None  # created at the first switch
        self.warmup_strategy: Strategy | None = None
        self.rng = torch.Generator().manual_seed(seed_)  # init draws, fine-tune minibatches
        torch.manual_seed(seed_)  # the compressor's training noise comes from the global RNG
        ft = cfg.finetune
        self.archive = (
            Archive(ft.archive_size, self.n, self.device, self.task.spec.dtype)
            if ft.enabled and self.compressor is not None
            else None
        )
        self.warmup_active = bool(ft.enabled and ft.warmup.enabled and self.compressor is not None)
        self.phase = "direct" if cfg.mode == "direct" else "latent"
        self.generation = 0
        self.evaluations = 0
        self.saved_evaluations = 0  # offspring the surrogate screened out
        self.best_genome: Tensor | None = None
        self.best_fitness = math.inf
        self.history: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.last_switch = 0
        self.initialized = False
        self._stop = False

    # ------------------------------------------------------------------ construction helpers
    def _load_compressor(self, compressor: Any) -> Any:
        if self.cfg.mode == "direct":
            return None
        compressor = compressor if compressor is not None else self.cfg.compressor
        if isinstance(compressor, str | Path):
            from latent_evo.hub import load_compressor

            compressor = load_compressor(compressor)
        if hasattr(compressor, "check_spec"):
            compressor.check_spec(self.task.spec)  # a clear error naming the mismatch
        compressor.to(self.device).eval()
        return compressor

    def _make_space(self) -> SearchSpace:
        mode, chunk = self.cfg.mode, self.cfg.decode_chunk
        if mode == "direct":
            return DirectSpace(self.n)
        if mode == "latent":
            return LatentSpace(self.compressor, chunk)
        return ResidualSpace(self.compressor, self.cfg.residual.alpha, chunk)

    @property
    def active(self) -> tuple[Strategy, SearchSpace]:
        if self.phase == "direct" and self.cfg.mode != "direct":
            return self.direct_strategy, self.direct_space
        return self.strategy, self.space

    # ------------------------------------------------------------------ evaluation
    def _batch(self) -> Any:
        if self.cfg.fitness_batch == "step" and hasattr(self.task, "batch"):
            return self.task.batch(self.generation)
        return None

    def _evaluate_genomes(self, genomes: Tensor, batch: Any = None) -> Tensor:
        with torch.no_grad():
            f = self.task.fitness_genomes(genomes, batch)
        return checked_fitness(f, genomes.shape[0], getattr(self.task, "name", "user")).float()

    def _evaluate(self, space: SearchSpace, x: Tensor) -> tuple[Tensor, Tensor]:
        """`(P, d)` -> fitness `(P,)` and genomes `(P, n)`, each rank doing its slice."""
        batch = self._batch()

        def fn(xs: Tensor) -> tuple[Tensor, Tensor]:
            with torch.no_grad():
                g = space.to_genomes(xs)
            return self._evaluate_genomes(g, batch), g

        f, g = shard_map(fn, x)
        self.evaluations += x.shape[0]
        return f, g

    def _record_best(self, f: Tensor, g: Tensor) -> None:
        i = int(torch.argmin(torch.nan_to_num(f, nan=math.inf)))
        if float(f[i]) < self.best_fitness:
            self.best_fitness = float(f[i])
            self.best_genome = g[i].clone()

    # ------------------------------------------------------------------ initialisation
    def initialize(self) -> None:
        """Place the strategy (and residual base) according to `cfg.init`; evaluations spent on
        choosing a starting point (zoo top-k, residual base) are counted."""
        from latent_evo.evolve_init import load_network_genome, load_zoo_genomes

        cfg, strat = self.cfg.init, self.strategy
        P = strat.popsize
        genomes: Tensor | None = None
        codes: Tensor | None = None
        if cfg.kind == "task":
            genomes = self.task.init_genomes(P, self.rng).to(self.device)
        elif cfg.kind == "network":
            genomes = load_network_genome(cfg.path, self.task.spec).to(self.device)[None]
        elif cfg.kind == "zoo":
            zoo = load_zoo_genomes(cfg.path, self.task.spec).to(self.device, self.task.spec.dtype)
            f = self._evaluate_genomes(zoo)
            self.evaluations += len(zoo)
            self._record_best(f, zoo)
            genomes = zoo[torch.argsort(f, stable=True)[: cfg.top_k]]
        elif cfg.kind == "prior":
            if self.compressor is None:
                raise ValueError("init.kind='prior' needs a compressor")
            codes = self.compressor.sample(
                P, torch.Generator(self.device).manual_seed(self.cfg.seed)
            )
        if self.cfg.mode == "residual":
            self._init_residual(genomes, codes)
        elif genomes is not None or codes is not None:
            with torch.no_grad():
                x = codes if codes is not None else self.space.from_genomes(genomes)
            if "population" in strat.state_names and len(x) > 1:
                strat.init(population=x[torch.arange(P, device=x.device) % len(x)])
            else:  # an ES starts at the first (best, for a zoo) point: a mean of codes of
                strat.init(mean=x[0])  # permuted networks would not be a network
        else:
            strat.init()
        self.initialized = True

    def _init_residual(self, genomes: Tensor | None, codes: Tensor | None) -> None:
        from latent_evo.evolve_init import load_network_genome

        space: ResidualSpace = self.space  # type: ignore[assignment]
        if self.cfg.residual.base:
            base = load_network_genome(self.cfg.residual.base, self.task.spec).to(self.device)
            self._record_best(self._evaluate_genomes(base[None]), base[None])
            self.evaluations += 1
        else:
            if genomes is None:
                with torch.no_grad():
                    genomes = self.compressor.decode_genomes(
                        codes if codes is not None else self.compressor.sample(1)
                    )
            f = self._evaluate_genomes(genomes)
            self.evaluations += len(genomes)
            self._record_best(f, genomes)
            base = genomes[int(torch.argmin(f))]
        space.set_base(base.to(self.task.spec.dtype))
        self.strategy.init(mean=torch.zeros(space.dim, device=self.device))

    # ------------------------------------------------------------------ one generation
    def step(self) -> dict[str, Any]:
        """One generation; returns (and appends to `history`) its record."""
        if not self.initialized:
            self.initialize()
        self._maybe_switch()
        strat, space = self.active
        x = strat.ask()  # (P, d)
        record: dict[str, Any] = {}
        if self.cfg.surrogate.enabled and self.phase == "latent" and self.compressor is not None:
            f_all, f_true, g = self._screened_evaluation(space, x, record)
        else:
            f_true, g = self._evaluate(space, x)
            f_all = f_true
        strat.tell(f_all)
        self._record_best(f_true, g)
        if self.archive is not None:
            self.archive.add(g, f_true)
        if self.warmup_active:
            self._warmup_step()
        self.generation += 1
        self._maybe_rebase()
        if self.archive is not None and self.generation % self.cfg.finetune.every == 0:
            self._finetune_and_reencode(record)
        record.update(
            generation=self.generation,
            evaluations=self.evaluations,
            phase=self.phase,
            best_fitness=self.best_fitness,
            gen_best_fitness=float(f_true.min()),
            mean_fitness=float(f_true.mean()),
        )
        every = self.cfg.eval_every
        if every and self.generation % every == 0 and hasattr(self.task, "evaluate"):
            record.update(self.task.evaluate(self.best_genome))
        self.history.append(record)
        for cb in self.callbacks:
            cb(self, record)
        return record

    def _screened_evaluation(self, space, x, record) -> tuple[Tensor, Tensor, Tensor]:
        """Rank the pool by the fitness head; evaluate only the top fraction. Unevaluated
        offspring are told a fitness worse than every evaluated one, in the head's order, so a
        rank-based strategy sees a consistent ranking."""
        P = x.shape[0]
        k = max(1, math.ceil(self.cfg.surrogate.fraction * P))
        z = x + space.anchor if isinstance(space, ResidualSpace) else x
        with torch.no_grad():
            pred = self.compressor.predict_fitness(z).reshape(-1).float()  # (P,)
        order = torch.argsort(pred, stable=True)
        top = order[:k]
        f_top, g = self._evaluate(space, x[top])
        rest = order[k:]
        f_all = torch.empty(P, device=x.device)
        f_all[top] = f_top
        if len(rest):
            worst = torch.nan_to_num(f_top, nan=0.0, posinf=0.0).max()
            f_all[rest] = worst + 1.0 + (pred[rest] - pred[rest].min())
        self.saved_evaluations += P - k
        # agreement: fraction of concordant pairs between head and truth among the evaluated
        dp = pred[top][:, None] - pred[top][None, :]
        dt = f_top[:, None] - f_top[None, :]
        mask = torch.triu(torch.ones(k, k, dtype=torch.bool, device=x.device), 1)
        agree = float(((dp * dt)[mask] > 0).float().mean()) if k > 1 else float("nan")
        record.update(surrogate_agreement=agree, saved_evaluations=self.saved_evaluations)
        return f_all, f_top, g

    def _warmup_step(self) -> None:
        """The direct-space population of the warm-up phase: evolves alongside, feeds the
        archive (and may find the best genome itself: its evaluations are real)."""
        if self.warmup_strategy is None:
            wcfg = self.cfg.finetune.warmup.strategy
            self.warmup_strategy = _make_strategy(
                wcfg, self.n, self.device, self.cfg.seed + _SEED_WARMUP
            )
            self.warmup_strategy.init(mean=self.best_genome)
        xd = self.warmup_strategy.ask()
        fd, gd = self._evaluate(self.direct_space, xd)
        self.warmup_strategy.tell(fd)
        self._record_best(fd, gd)
        self.archive.add(gd, fd)

    # ------------------------------------------------------------------ switching / rebasing
    def _stalled(self) -> bool:
        w = self.cfg.switch.window
        if self.generation - self.last_switch < w or len(self.history) < w:
            return False
        old = self.history[-w]["best_fitness"]
        return old - self.best_fitness < self.cfg.switch.tol

    def _maybe_switch(self) -> None:
        sw = self.cfg.switch
        if not sw.enabled or self.cfg.mode == "direct":
            return
        final = (
            sw.final_direct_generations > 0
            and self.cfg.generations is not None
            and self.generation >= self.cfg.generations - sw.final_direct_generations
        )
        if self.phase == "latent" and (final or self._stalled()):
            reason = (
                "final direct refinement" if final else f"stall: < {sw.tol} in {sw.window} gens"
            )
            if self.direct_strategy is None:
                self.direct_strategy = _make_strategy(
                    sw.strategy, self.n, self.device, self.cfg.seed + _SEED_DIRECT
                )
                self.direct_strategy.init(mean=self.best_genome)
            else:
                self.direct_strategy.set_mean(self.best_genome)
            self._switch("direct", reason)
        elif self.phase == "direct" and sw.back and not final and self._stalled():
            self._recentre_latent(self.best_genome)
            self._switch("latent", f"direct stall: < {sw.tol} in {sw.window} gens")

    def _switch(self, phase: str, reason: str) -> None:
        self.events.append(
            {"generation": self.generation, "event": "switch", "from": self.phase, "to": phase,
             "reason": reason, "best_fitness": self.best_fitness, "evaluations": self.evaluations}
        )  # fmt: skip
        self.phase = phase
        self.last_switch = self.generation

    def _recentre_latent(self, genome: Tensor) -> None:
        """Continue latent search from `genome`: residual re-bases on it exactly; latent mode
        re-centres on its encoding."""
        if isinstance(self.space, ResidualSpace):
            old_anchor = self.space.anchor
            self.space.set_base(genome)
            self.strategy.set_mean(self.strategy.mean + old_anchor - self.space.anchor)
        else:
            with torch.no_grad():
                self.strategy.set_mean(self.space.from_genomes(genome[None])[0])
        self.strategy.reset_best()

    def _maybe_rebase(self) -> None:
        k = self.cfg.residual.rebase_every
        if not isinstance(self.space, ResidualSpace) or self.phase != "latent" or not k:
            return
        if self.generation % k or torch.equal(self.best_genome, self.space.base):
            return
        # keep every candidate's latent point: anchor moves by delta, the strategy by -delta
        old_anchor = self.space.anchor
        self.space.set_base(self.best_genome)
        self.strategy.set_mean(self.strategy.mean + old_anchor - self.space.anchor)
        self.strategy.reset_best()
        self.events.append(
            {"generation": self.generation, "event": "rebase", "best_fitness": self.best_fitness}
        )

    # ------------------------------------------------------------------ online fine-tuning
    def _finetune_and_reencode(self, record: dict[str, Any]) -> None:
        ft, strat = self.cfg.finetune, self.strategy
        with torch.no_grad():
            points = _strategy_points(strat)  # (k, d)
            targets = self.space.to_genomes(points)  # phenotypes before the fine-tune
            f_before = self._evaluate_genomes(targets)
        stats = finetune(
            self.compressor, self.task, self.archive, ft.steps, ft.lr, ft.batch_size, self.rng,
            batch_fn=lambda s: self.task.batch(s) if hasattr(self.task, "batch") else None,
            fitness_weight=ft.fitness_weight, head_weight=ft.head_weight,
        )  # fmt: skip
        if isinstance(self.space, ResidualSpace):  # the anchor's decoding changed
            self.space.set_base(self.space.base, self.space.anchor)
        x_new, err = reencode(self.space, targets, ft.reencode_steps, ft.reencode_lr)
        if "population" in strat.state_names and len(x_new) > 1:
            strat.init(population=x_new)
        else:
            strat.set_mean(x_new[0])
        strat.reset_best()
        with torch.no_grad():
            f_after = self._evaluate_genomes(self.space.to_genomes(x_new))
        self.evaluations += 2 * len(x_new)  # the drift check is real evaluations
        drift = float((f_after - f_before).abs().mean())
        event = {"generation": self.generation, "event": "finetune", **stats,
                 "reencode_error": err, "fitness_drift": drift,
                 "fitness_before": float(f_before.mean()), "fitness_after": float(f_after.mean())}  # fmt: skip
        if self.warmup_active and stats["loss_after"] < ft.warmup.threshold:
            self.warmup_active = False
            event["warmup_ended"] = True
        self.events.append(event)
        record.update(finetune_loss=stats["loss_after"], reencode_error=err, fitness_drift=drift)

    # ------------------------------------------------------------------ running
    def done(self, generations: int | None = None, evaluations: int | None = None) -> bool:
        g = self.cfg.generations if generations is None else generations
        e = self.cfg.evaluations if evaluations is None else evaluations
        return (g is not None and self.generation >= g) or (e is not None and self.evaluations >= e)

    def request_stop(self, *_: Any) -> None:
        """Finish the current generation, checkpoint and return (SIGINT/SIGTERM handler)."""
        self._stop = True

    def run(
        self,
        generations: int | None = None,
        evaluations: int | None = None,
        checkpoint_dir: str | Path | None = None,
        checkpoint_every: int | None = None,
        progress: bool = False,
    ) -> EvolveResult:
        every = self.cfg.checkpoint_every if checkpoint_every is None else checkpoint_every
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                handlers[sig] = signal.signal(sig, self.request_stop)
        bar = _progress_bar(self, generations, progress)
        try:
            while not self.done(generations, evaluations) and not self._stop:
                rec = self.step()
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(
                        evals=rec["evaluations"], best=f"{rec['best_fitness']:.4g}",
                        mean=f"{rec['mean_fitness']:.4g}", phase=rec["phase"],
                        evals_s=f"{rec['evaluations'] / max(bar.format_dict['elapsed'], 1e-9):.0f}",
                    )  # fmt: skip
                if checkpoint_dir and every and self.generation % every == 0:
                    self.save(checkpoint_dir)
        finally:
            for sig, h in handlers.items():
                signal.signal(sig, h)
            if bar is not None:
                bar.close()
        if checkpoint_dir:
            self.save(checkpoint_dir)
        return self.result()

    def result(self) -> EvolveResult:
        test = self.task.evaluate(self.best_genome) if hasattr(self.task, "evaluate") else {}
        return EvolveResult(
            best_genome=self.best_genome, best_fitness=self.best_fitness,
            best_model=genome_to_module(self.task, self.best_genome), history=list(self.history),
            events=list(self.events), evaluations=self.evaluations, generations=self.generation,
            test_metrics=test, interrupted=self._stop,
        )  # fmt: skip

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """(tensors, JSON-able metadata): everything needed to continue bit-identically."""
        t: dict[str, Tensor] = {"rng": self.rng.get_state(), "torch_rng": torch.get_rng_state()}
        t.update(ckpt.prefixed("strategy", self.strategy.state_dict()))
        t.update(ckpt.prefixed("space", self.space.state_dict()))
        for name in ("direct_strategy", "warmup_strategy"):
            s = getattr(self, name)
            if s is not None:
                t.update(ckpt.prefixed(name, s.state_dict()))
        if self.archive is not None:
            t.update(ckpt.prefixed("archive", self.archive.state_dict()))
            t.update(ckpt.prefixed("compressor", self.compressor.state_dict()))
        if self.best_genome is not None:
            t["best_genome"] = self.best_genome
        if self.device.type == "cuda":
            t["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        meta = {
            "generation": self.generation, "evaluations": self.evaluations,
            "saved_evaluations": self.saved_evaluations, "best_fitness": self.best_fitness,
            "phase": self.phase, "last_switch": self.last_switch, "warmup_active": self.warmup_active,
            "initialized": self.initialized, "history": self.history, "events": self.events,
            "config": self.cfg.to_dict(),
        }  # fmt: skip
        return t, meta

    def load_state_dict(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        dev = self.device
        self.rng.set_state(tensors["rng"])
        torch.set_rng_state(tensors["torch_rng"])
        if "cuda_rng" in tensors and dev.type == "cuda":
            torch.cuda.set_rng_state(tensors["cuda_rng"], dev)
        self.strategy.load_state_dict(ckpt.unprefixed("strategy", tensors))
        self.space.load_state_dict(
            {k: v.to(dev) for k, v in ckpt.unprefixed("space", tensors).items()}
        )
        sw, wu = self.cfg.switch.strategy, self.cfg.finetune.warmup.strategy
        for name, scfg, off in (
            ("direct_strategy", sw, _SEED_DIRECT),
            ("warmup_strategy", wu, _SEED_WARMUP),
        ):
            sd = ckpt.unprefixed(name, tensors)
            if sd:
                s = _make_strategy(scfg, self.n, dev, self.cfg.seed + off)
                s.load_state_dict(sd)
                setattr(self, name, s)
        if self.archive is not None:
            self.archive.load_state_dict(ckpt.unprefixed("archive", tensors))
            self.compressor.load_state_dict(ckpt.unprefixed("compressor", tensors))
            self.compressor.eval()
        self.best_genome = tensors["best_genome"].to(dev) if "best_genome" in tensors else None
        for k in ("generation", "evaluations", "saved_evaluations", "best_fitness", "phase",
                  "last_switch", "warmup_active", "initialized", "history", "events"):  # fmt: skip
            setattr(self, k, meta[k])

    def save(self, root: str | Path) -> Path | None:
        """Atomic checkpoint under `root/checkpoints/` (rank 0 only when distributed)."""
        if not is_main():
            return None
        tensors, meta = self.state_dict()
        return ckpt.save_checkpoint(
            Path(root) / "checkpoints", f"gen-{self.generation:06d}", tensors, meta
        )

    def load(self, root: str | Path) -> None:
        path = Path(root) / "checkpoints"
        tensors, meta = ckpt.load_checkpoint(path if path.exists() else root)
        self.load_state_dict(tensors, meta)


def _progress_bar(run: LatentEvolution, generations: int | None, enabled: bool):
    if not enabled or not is_main():
        return None
    from tqdm.auto import tqdm

    total = generations if generations is not None else run.cfg.generations
    return tqdm(total=total, initial=run.generation, unit="gen", dynamic_ncols=True)


def evolve(
    task: Any,
    compressor: Any = None,
    strategy: str | Strategy | None = None,
    generations: int | None = None,
    evaluations: int | None = None,
    callbacks: Sequence[Callback] = (),
    device: str | torch.device | None = None,
    seed: int | None = None,
    fitness_fn: Callable | None = None,
    config: EvolveConfig | dict | None = None,
    progress: bool = False,
    **options: Any,
) -> EvolveResult:
    """Run an evolution and return its `EvolveResult`. `options` are `EvolveConfig` fields
    (`mode="residual"`, `switch={"enabled": True}`, `strategy_hparams={...}`, ...)."""
    cfg = config if isinstance(config, EvolveConfig) else EvolveConfig.from_dict(dict(config or {}))
    hp = options.pop("strategy_hparams", None)
    popsize = options.pop("popsize", None)
    if options:
        cfg = EvolveConfig.from_dict({**cfg.to_dict(), **options})
    if hp is not None:
        cfg.strategy.hparams = dict(hp)
    if popsize is not None:
        cfg.strategy.popsize = int(popsize)
    if generations is not None or evaluations is not None:
        cfg.generations, cfg.evaluations = generations, evaluations
    run = LatentEvolution(task, compressor, strategy, cfg, callbacks, device, seed, fitness_fn)
    return run.run(progress=progress)
