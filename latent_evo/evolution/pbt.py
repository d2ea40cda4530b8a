"""Population-based training of a strategy's hyper-parameters (Jaderberg et al. 2017).

    members   N runs of the same config, each with its own seed and its own hyper-parameters
              (member 0 as configured, the others drawn log-uniformly within x/÷ `spread`)
    every k generations of each member:
      exploit   the worst `fraction` of the members (by best fitness so far) each copy the whole
                search state of one of the best `fraction`: strategy, space, best genome
      explore   the copies perturb each tuned hyper-parameter by a factor from `perturb`, and
                draw fresh random streams (a copy that kept its parent's RNG would repeat it)

The total budget of evaluations is split evenly: each member stops at `evaluations / N`, so a
PBT run costs what one run of the same budget costs. A tuned step size (`sigma_init`,
`mutation_sigma`) also rescales the strategy's live σ where it keeps one, so the change acts at
once instead of only at a restart. The tuned strategy is each member's main one (a portfolio's
or a switch's direct strategy keeps its config). Members run in turn in one process.

    pbt = PBT("mnist1d-mlp-tiny", config={"mode": "direct", "strategy": {"name": "openai_es"},
              "evaluations": 8000}, members=4, every=10, hparams=["sigma_init", "lr"])
    res = pbt.run()      # res.best: the best member's EvolveResult; res.hparams: their values
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from latent_evo.config import build
from latent_evo.evolution.checkpoint import load_checkpoint, prefixed, save_checkpoint, unprefixed
from latent_evo.evolution.config import ConfigError, EvolveConfig, PBTConfig
from latent_evo.evolution.loop import EvolveResult, LatentEvolution


@dataclass
class PBTResult:
    best: EvolveResult  # the member with the best fitness at the end
    best_index: int  # which member that is
    members: list[EvolveResult]
    hparams: list[dict[str, float]]  # each member's tuned values at the end
    events: list[dict[str, Any]]  # one record per exploit (who copied whom, new values)
    evaluations: int  # all members together


class PBT:
    """N `LatentEvolution` runs whose strategy hyper-parameters evolve with the search."""

    def __init__(
        self,
        task: Any,
        compressor: Any = None,
        config: EvolveConfig | dict | None = None,
        device: str | torch.device | None = None,
        seed: int | None = None,
        **options: Any,
    ):
        """`config.pbt` holds the PBT options (`PBTConfig`); keyword `options` override them
        (`members=8`, `every=5`, `hparams=["lr"]`...)."""
        cfg = config if isinstance(config, EvolveConfig) else EvolveConfig.from_dict(config or {})
        cfg = copy.deepcopy(cfg)
        if seed is not None:
            cfg.seed = int(seed)
        unknown = sorted(set(options) - {f.name for f in dataclasses.fields(PBTConfig)})
        if unknown:
            raise ConfigError(f"pbt: unknown option(s) {unknown}")
        # the options over the config's pbt section, typed and validated once by the builder
        pbt = build(PBTConfig, {**dataclasses.asdict(cfg.pbt), **options}, ConfigError, "", "pbt")
        cfg = dataclasses.replace(cfg, pbt=dataclasses.replace(pbt, enabled=True))
        opts = cfg.pbt
        members, every, fraction = int(opts.members), int(opts.every), float(opts.fraction)
        hparams, spread, perturb = list(opts.hparams), float(opts.spread), opts.perturb
        self.every, self.fraction, self.perturb = int(every), float(fraction), tuple(perturb)
        self.total_budget = int(cfg.evaluations)
        self.rng = torch.Generator().manual_seed(cfg.seed + 991)  # PBT's own draws
        self.runs: list[LatentEvolution] = []
        for i in range(members):
            mcfg = dataclasses.replace(  # one member: a run of its own share, not a PBT
                copy.deepcopy(cfg), seed=cfg.seed + 1000 * i,
                evaluations=self.total_budget // members,
                pbt=dataclasses.replace(cfg.pbt, enabled=False),
            )  # fmt: skip
            self.runs.append(LatentEvolution(task, compressor, None, mcfg, device=device))
        self.hparams = list(hparams)
        log_spread = math.log(spread)
        for run in self.runs[1:]:  # member 0 keeps the configured values
            for name in self.hparams:
                u = float(torch.rand((), generator=self.rng)) * 2 - 1
                self._scale(run, name, math.exp(u * log_spread))
        self.round = 0
        self.events: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ hyper-parameters
    @staticmethod
    def _scale(run: LatentEvolution, name: str, factor: float) -> None:
        run.strategy.scale_hparam(name, factor)  # a step size moves the live sigma too
        run.cfg.strategy.hparams[name] = run.strategy.hp[name]  # so a checkpoint's config says it

    def member_hparams(self, i: int) -> dict[str, float]:
        return {name: float(self.runs[i].strategy.hp[name]) for name in self.hparams}

    # ------------------------------------------------------------------ exploit / explore
    def _exploit(self) -> None:
        ranked = sorted(range(len(self.runs)), key=lambda i: (self.runs[i].best_fitness, i))
        k = max(1, int(len(ranked) * self.fraction))
        top, bottom = ranked[:k], ranked[-k:]
        for loser in bottom:
            winner = top[int(torch.randint(len(top), (), generator=self.rng))]
            src, dst = self.runs[winner], self.runs[loser]
            tensors, meta = src.state_dict()
            own_evaluations = dst.evaluations  # the budget is per member: it keeps its own count
            dst.load_state_dict(tensors, meta)
            dst.evaluations = own_evaluations
            for name in self.hparams:
                dst.strategy.set_hparam(name, src.strategy.hp[name])  # sigma came with the state
                f = self.perturb[int(torch.randint(len(self.perturb), (), generator=self.rng))]
                self._scale(dst, name, f)
            seed = int(torch.randint(2**62, (), generator=self.rng))
            dst.strategy.generator.manual_seed(seed)
            dst.rng.manual_seed(seed + 1)
            self.events.append(
                {
                    "round": self.round, "member": loser, "copied": winner,
                    "fitness_before": meta["best_fitness"], "hparams": self.member_hparams(loser),
                }
            )  # fmt: skip

    # ------------------------------------------------------------------ running
    @property
    def evaluations(self) -> int:
        return sum(r.evaluations for r in self.runs)

    def done(self) -> bool:
        return all(r.done() for r in self.runs)

    def step(self) -> None:
        """`every` generations of each member (fewer where its budget ends), then exploit."""
        for run in self.runs:
            for _ in range(self.every):
                if run.done():
                    break
                run.step()
        self.round += 1
        if not self.done():
            self._exploit()

    def run(self, checkpoint_dir: str | Path | None = None, progress: bool = False) -> PBTResult:
        with tqdm(total=self.total_budget, initial=self.evaluations, disable=not progress,
                  desc="PBT", unit="eval", dynamic_ncols=True) as bar:  # fmt: skip
            while not self.done():
                before = self.evaluations
                self.step()
                bar.update(self.evaluations - before)
                best = min(r.best_fitness for r in self.runs)
                bar.set_postfix(best=f"{best:.4g}", round=self.round)
                if checkpoint_dir:
                    self.save(checkpoint_dir)
        return self.result()

    def result(self) -> PBTResult:
        results = [r.result() for r in self.runs]
        best = min(range(len(results)), key=lambda i: (results[i].best_fitness, i))
        return PBTResult(
            best=results[best], best_index=best, members=results,
            hparams=[self.member_hparams(i) for i in range(len(self.runs))],
            events=list(self.events), evaluations=self.evaluations,
        )  # fmt: skip

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors: dict[str, torch.Tensor] = {"pbt_rng": self.rng.get_state()}
        metas = []
        for i, run in enumerate(self.runs):
            t, m = run.state_dict()
            tensors.update(prefixed(f"member{i}", t))
            metas.append(m)
        meta = {
            "round": self.round, "events": self.events, "members": metas,
            "hparams": [self.member_hparams(i) for i in range(len(self.runs))],
        }  # fmt: skip
        return tensors, meta

    def load_state_dict(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        if len(meta["members"]) != len(self.runs):
            raise ConfigError(
                f"pbt: the checkpoint has {len(meta['members'])} members, this run {len(self.runs)}"
            )
        self.rng.set_state(tensors["pbt_rng"])
        for i, run in enumerate(self.runs):
            run.load_state_dict(unprefixed(f"member{i}", tensors), meta["members"][i])
            for name, value in meta["hparams"][i].items():
                run.strategy.hp[name] = value
                run.cfg.strategy.hparams[name] = value
        self.round, self.events = meta["round"], meta["events"]

    def save(self, root: str | Path) -> Path:
        tensors, meta = self.state_dict()
        return save_checkpoint(Path(root) / "checkpoints", f"round-{self.round:05d}", tensors, meta)

    def load(self, root: str | Path) -> None:
        path = Path(root) / "checkpoints"
        self.load_state_dict(*load_checkpoint(path if path.exists() else root))
