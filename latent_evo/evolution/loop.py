"""The evolution loop: ask -> decode -> evaluate -> tell -> log -> checkpoint, all on one device.

`LatentEvolution` is the run behind `evolve()` (evolve.py), for step-by-step control (`.step()`, `.run()`,
`.state_dict()`). Per generation the population is one `(P, d)` tensor: decoded in blocks by the
compressor, evaluated with the task's vmapped fitness, sharded across `torch.distributed` ranks
when launched by torchrun -- never a per-individual Python loop. Modes:

* latent     the strategy searches the compressor's latent space (genome = decode(z));
* residual   it searches changes around the best genome (see `latent_evo.evolution.spaces`), re-based
             every `residual.rebase_every` generations, so the decoder never caps the result;
* decoder    it searches the code and chosen decoder parameters together (`DecoderSpace`);
* generator    no compressor: it searches a small generator's weights (`evolution/generator.py`);
* direct     no compressor: the strategy searches the flat genome (the baseline).

Options (`EvolveConfig`), each in the room named after it: switching to direct space when
latent progress stalls (`switch.Switcher`) or the portfolio over spaces (`portfolio.Portfolio`),
surrogate pre-screening (`surrogate.screen`), residual re-basing (`rebase`), and online
fine-tuning with re-encoding and its direct warm-up (`finetune`). The factories of spaces and
strategies are in `factory`.
The run owns its parts; `state_dict()` asks each part for its own state.
"""

from __future__ import annotations

import copy
import dataclasses
import signal
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from latent_evo.compressor.protocol import CompressorProtocol
from latent_evo.evolution import spaces as S
from latent_evo.evolution.config import ConfigError, EvolveConfig
from latent_evo.evolution.distributed import shard_map
from latent_evo.evolution.factory import (
    SEED_STRATEGY,
    RunContext,
    make_compressor,
    make_space,
    make_strategy,
)
from latent_evo.evolution.finetune import Archive, Warmup, finetune_and_reencode
from latent_evo.evolution.incumbent import Incumbent, ValidationGate
from latent_evo.evolution.minibatch import BatchSchedule
from latent_evo.evolution.portfolio import Portfolio
from latent_evo.evolution.progress import RunProgress
from latent_evo.evolution.rebase import maybe_rebase
from latent_evo.evolution.result import EvolveResult, resolve_device
from latent_evo.evolution.run_state import RunState
from latent_evo.evolution.sources import decoding_loss, load_network_genome, starting_points
from latent_evo.evolution.spaces import SearchSpace
from latent_evo.evolution.surrogate import screen
from latent_evo.evolution.switch import Switcher
from latent_evo.strategies import PopulationStrategy, Strategy
from latent_evo.tasks.function import (
    NonFiniteFitnessError,
    checked_fitness,
    explain_non_finite,
    genome_to_module,
    resolve_task,
)
from latent_evo.tasks.protocol import (
    CountingTask,
    MinibatchTask,
    Task,
    ValidatedTask,
)

Callback = Callable[["LatentEvolution", dict[str, Any]], None]


class LatentEvolution(RunState):
    """One evolution run. `strategy` is a registered name or a `Strategy` instance (whose `dim`
    must match the search space); `compressor` a `Compressor`, a path, or None (direct mode)."""

    def __init__(
        self,
        task: Task | str | nn.Module,
        compressor: CompressorProtocol | str | Path | None = None,
        strategy: str | Strategy | None = None,
        config: EvolveConfig | dict | None = None,
        callbacks: Sequence[Callback] = (),
        device: str | torch.device | None = None,
        seed: int | None = None,
        fitness_fn: Callable | None = None,
    ):
        # what the arguments resolve: a new config, validated once (the caller's stays as given)
        changes: dict[str, Any] = {}
        if isinstance(config, EvolveConfig):
            cfg = config
            if isinstance(strategy, str):
                changes["strategy"] = dataclasses.replace(cfg.strategy, name=strategy)
        else:
            d = dict(config or {})
            if isinstance(strategy, str):  # hparams are checked against the strategy they are for
                d["strategy"] = {**(d.get("strategy") or {}), "name": strategy}
            cfg = EvolveConfig.from_dict(d)
        if seed is not None:
            changes["seed"] = int(seed)
        has_compressor = compressor is not None or cfg.compressor is not None
        if cfg.mode == "auto":
            changes["mode"] = "latent" if has_compressor else "direct"
        elif cfg.mode not in ("direct", "generator") and not has_compressor:
            raise ValueError(
                f"mode {cfg.mode!r} needs a compressor (a Compressor, a path, or "
                "`compressor:` in the config); use mode='direct' without one"
            )
        cfg = dataclasses.replace(copy.deepcopy(cfg), **changes) if changes else copy.deepcopy(cfg)
        self.cfg = cfg
        self.device = resolve_device(device if device is not None else cfg.device)
        self.task: Task = resolve_task(task, fitness_fn, dict(cfg.task.overrides))
        self.task.to(self.device)
        self.gate: ValidationGate | None = None  # the reported network, gated on validation
        if cfg.validation.enabled:
            if not isinstance(self.task, ValidatedTask):
                raise ConfigError(f"validation.enabled: task {self.task.name!r} cannot hold out "
                                  "data (it lacks hold_out / validation_losses)")  # fmt: skip
            self.task.hold_out(cfg.validation.fraction, cfg.seed)
            self.gate = ValidationGate(cfg.validation, self.task)
        self.callbacks = list(callbacks)
        self.n = self.task.spec.numel
        self.compressor = make_compressor(cfg, compressor, self.task, self.device)
        spent, self.events = 0, []  # switches, re-bases, fine-tunes, early stops...
        tol = cfg.init.lossy_tol
        if cfg.mode == "latent" and cfg.init.kind == "network" and tol is not None:
            genome = load_network_genome(cfg.init.path, self.task.spec).to(self.device)
            f_net, f_copy = decoding_loss(self.compressor, genome, self._evaluate_genomes)
            spent = 2
            if f_copy > f_net + tol * abs(f_net):  # the decoder cannot reproduce the network
                residual = dataclasses.replace(cfg.residual, base=cfg.init.path)
                self.cfg = cfg = dataclasses.replace(cfg, mode="residual", residual=residual)
                self.events.append({"generation": 0, "event": "residual_start", "network":
                                    f_net, "decoded": f_copy})  # fmt: skip
        self.space: SearchSpace = make_space(cfg, self.task, self.compressor)
        seed_ = cfg.seed
        # the phase, and the direct phase's own strategy and space after a switch -- or, with a
        # portfolio, the arm of each generation; fresh minibatches: judged on paired gains
        self.ctx = RunContext(self.task.spec, self.device, seed_, self._fresh_batches)
        self.switcher: Switcher | Portfolio = (
            Portfolio(cfg.portfolio, self.ctx)
            if cfg.portfolio.enabled
            else Switcher(cfg.switch, cfg.mode, cfg.generations, self.ctx)
        )
        if isinstance(strategy, Strategy):
            if strategy.dim != self.space.dim:
                raise ValueError(
                    f"strategy has dim {strategy.dim}, the {self.space.name} space has {self.space.dim}"
                )
            self.strategy = strategy
        else:
            self.strategy = make_strategy(
                cfg.strategy, self.space, self.device, seed_ + SEED_STRATEGY
            )
        self.rng = torch.Generator().manual_seed(seed_)  # init draws, fine-tune minibatches
        torch.manual_seed(seed_)  # the compressor's training noise comes from the global RNG
        ft = cfg.finetune
        self.archive = (
            Archive(ft.archive_size, self.n, self.device, self.task.spec.dtype)
            if ft.enabled and self.compressor is not None
            else None
        )
        self.warmup = (
            Warmup(ft.warmup, self.ctx) if self.archive is not None and ft.warmup.enabled else None
        )
        self.generation = 0
        self.evaluations = spent  # the decoding check, if any
        self.saved_evaluations = 0  # offspring the surrogate screened out
        self.schedule = BatchSchedule(cfg.minibatch)  # fresh minibatches: their size
        batch_of = self._independent_batch if self._fresh_batches else None
        self.incumbent = Incumbent(self._evaluate_genomes, batch_of, seed_)
        self.history: list[dict[str, Any]] = []
        self.initialized = False
        self._stop = False

    # ------------------------------------------------------------------ construction helpers
    best_genome = property(lambda self: self.incumbent.genome, doc="`(n,)` the incumbent")
    best_fitness = property(lambda self: self.incumbent.fitness, doc="the incumbent's fitness")

    @property
    def phase(self) -> str:
        """Which space searches now: "latent" or "direct" (`Switcher`), or a portfolio arm."""
        return self.switcher.phase

    # ------------------------------------------------------------------ evaluation
    def _batch(self) -> Any:
        if self._fresh_batches:
            return self.task.batch(self.generation, self.schedule.size)
        return None

    def _independent_batch(self, generator: torch.Generator) -> Any:
        return self.task.batch(generator, self.schedule.size)  # a challenger's second batch

    @property
    def _fresh_batches(self) -> bool:
        return self.cfg.fitness_batch == "step" and isinstance(self.task, MinibatchTask)

    def _evaluate_genomes(self, genomes: Tensor, batch: Any = None) -> Tensor:
        with torch.no_grad():
            f = self.task.fitness_genomes(genomes, batch)
        return checked_fitness(f, genomes.shape[0], self.task.name).float()

    def _evaluate(self, space: SearchSpace, x: Tensor) -> tuple[Tensor, Tensor]:
        """`(P, d)` -> fitness `(P,)` and genomes `(P, n)`, each rank doing its slice."""
        batch = self._batch()

        def fn(xs: Tensor) -> tuple[Tensor, Tensor]:
            with torch.no_grad():
                g = space.to_genomes(xs)
            return self._evaluate_genomes(g, batch), g

        f, g = shard_map(fn, x)
        self.evaluations += x.shape[0]
        if not bool(torch.isfinite(f).any()):
            source = "the decoder" if self.phase == "latent" else "the search strategy"
            raise NonFiniteFitnessError(
                explain_non_finite(self.task, f, g, self.generation, source)
            )
        return f, g

    def _record_best(self, f: Tensor, g: Tensor, confirm: bool = False) -> None:
        self.evaluations += self.incumbent.offer(f, g, confirm, self.generation)

    # ------------------------------------------------------------------ initialisation
    def initialize(self) -> None:
        """Place the strategy (and residual base) according to `cfg.init`; evaluations spent on
        choosing a starting point (zoo top-k, residual base) are counted."""
        strat, P = self.strategy, self.strategy.popsize
        genomes, codes, scored = starting_points(
            self.cfg.init, self.task, self.space, self.compressor, P, self.rng, self.cfg.seed,
            self._evaluate_genomes,
        )  # fmt: skip
        if scored is not None:  # evaluated to choose the start: counted, and maybe the best
            self.evaluations += len(scored[0])
            self._record_best(*scored)
        if self.cfg.mode == "residual":
            self._init_residual(genomes, codes)
        elif genomes is not None or codes is not None:
            with torch.no_grad():
                x = (
                    self.space.from_genomes(genomes)
                    if codes is None
                    else self.space.from_codes(codes)
                )
            if isinstance(strat, PopulationStrategy) and len(x) > 1:
                strat.init(population=x[torch.arange(P, device=x.device) % len(x)])
            else:  # an ES starts at the first (best, for a zoo) point: a mean of codes of
                strat.init(mean=x[0])  # permuted networks would not be a network
        else:
            strat.init()
        self.initialized = True
        self._challenge()

    def _init_residual(self, genomes: Tensor | None, codes: Tensor | None) -> None:
        space: S.ResidualSpace = self.space  # type: ignore[assignment]
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
        event = self.switcher.maybe_switch(
            self.generation, self.history, self.best_genome, self.best_fitness,
            self.evaluations, latent=(self.strategy, self.space),
        )  # fmt: skip
        if event is not None:
            self.events.append(event)
        strat, space = self.switcher.active(self.strategy, self.space)
        rescored = self.incumbent.rescore(self._batch())
        self.evaluations += rescored
        x = strat.ask()  # (P, d)
        record: dict[str, Any] = {}
        if self.cfg.surrogate.enabled and self.phase == "latent" and self.compressor is not None:
            f_all, f_true, g, saved, agree = screen(
                x, space, self.compressor, self.cfg.surrogate.fraction, self._evaluate
            )
            self.saved_evaluations += saved
            record.update(surrogate_agreement=agree, saved_evaluations=self.saved_evaluations)
        else:
            f_true, g = self._evaluate(space, x)
            f_all = f_true
        strat.tell(f_all)
        best_before = self.best_fitness
        version = self.incumbent.version
        if rescored:  # the incumbent's score on this batch vs the members' spread on it
            grow = self.schedule.observe(self.best_fitness, f_true)
            if grow is not None:
                self.events.append({"generation": self.generation + 1, **grow})
        self._record_best(f_true, g, confirm=True)
        if self.gate is not None:
            self.gate.since += 1
            if self.incumbent.version != version:  # a new best on training fitness
                self._challenge()
            record.update(val_loss=self.gate.loss)
            if self.gate.exhausted:  # the run stops after this generation
                self.events.append({"generation": self.generation + 1, "event": "early_stop",
                                    "val_loss": self.gate.loss})  # fmt: skip
        self.switcher.observe(best_before, f_true, self.best_fitness)
        if self.archive is not None:
            self.archive.add(g, f_true)
        if self.warmup is not None and self.warmup.active:
            fd, gd = self.warmup.step(self.best_genome, self._evaluate)
            self._record_best(fd, gd)
            self.archive.add(gd, fd)
        self.generation += 1
        every = self.cfg.residual.rebase_every
        if self.phase == "latent" and maybe_rebase(
            self.space, self.strategy, self.best_genome, self.generation, every
        ):
            self.events.append(
                {
                    "generation": self.generation,
                    "event": "rebase",
                    "best_fitness": self.best_fitness,
                }
            )
        if self.archive is not None and self.generation % self.cfg.finetune.every == 0:
            self._finetune(record)
        record.update(
            generation=self.generation,
            evaluations=self.evaluations,
            phase=self.phase,
            best_fitness=self.best_fitness,
            gen_best_fitness=float(f_true.min()),
            mean_fitness=float(f_true.mean()),
        )
        if isinstance(self.task, CountingTask):  # episodes, environment steps
            record.update(self.task.counters())
        every = self.cfg.eval_every
        if every and self.generation % every == 0:
            record.update(self.task.evaluate(self.reported[0]))
        self.history.append(record)
        for cb in self.callbacks:
            cb(self, record)
        return record

    # ------------------------------------------------------------------ running
    def done(self, generations: int | None = None, evaluations: int | None = None) -> bool:
        g = self.cfg.generations if generations is None else generations
        e = self.cfg.evaluations if evaluations is None else evaluations
        early = self.gate is not None and self.gate.exhausted  # patience on validation ran out
        return (
            early or (g is not None and self.generation >= g)
            or (e is not None and self.evaluations >= e)
        )  # fmt: skip

    @property
    def reported(self) -> tuple[Tensor, float]:
        """The network the run reports and its training fitness: the validation gate's, else the
        best on training fitness."""
        if self.gate is not None and self.gate.genome is not None:
            return self.gate.genome, self.gate.fitness
        return self.best_genome, self.best_fitness

    def _challenge(self) -> None:
        if self.gate is not None and self.best_genome is not None:
            self.evaluations += self.gate.challenge(self.best_genome, self.best_fitness)

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
        total = generations if generations is not None else self.cfg.generations
        bar = RunProgress(total, self.generation, progress)
        try:
            while not self.done(generations, evaluations) and not self._stop:
                bar.update(self.step())
                if checkpoint_dir and every and self.generation % every == 0:
                    self.save(checkpoint_dir)
        finally:
            for sig, h in handlers.items():
                signal.signal(sig, h)
            bar.close()
        if checkpoint_dir:
            self.save(checkpoint_dir)
        return self.result()

    def result(self) -> EvolveResult:
        if self.best_genome is None:  # stopped before the first generation was evaluated
            raise NonFiniteFitnessError(
                f"no genome was evaluated to a finite fitness in {self.generation} generations"
            )
        genome, fitness = self.reported
        return EvolveResult(
            best_genome=genome, best_fitness=fitness,
            best_model=genome_to_module(self.task, genome), history=list(self.history),
            events=list(self.events), evaluations=self.evaluations, generations=self.generation,
            test_metrics=self.task.evaluate(genome), interrupted=self._stop,
            validation_loss=None if self.gate is None else self.gate.loss,
        )  # fmt: skip

    # ------------------------------------------------------------------ fine-tuning
    def _finetune(self, record: dict[str, Any]) -> None:
        report, spent = finetune_and_reencode(
            self.compressor, self.task, self.archive, self.space, self.strategy, self.cfg.finetune,
            self.rng, self.generation, self._evaluate_genomes,
        )  # fmt: skip
        self.evaluations += spent  # the drift check is real evaluations
        event = {"generation": self.generation, "event": "finetune", **report}
        if self.warmup is not None and self.warmup.end_if_fitted(report["loss_after"]):
            event["warmup_ended"] = True
        self.events.append(event)
        record.update(finetune_loss=report["loss_after"], reencode_error=report["reencode_error"],
                      fitness_drift=report["fitness_drift"])  # fmt: skip
