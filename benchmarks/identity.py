"""Results-identity check: a digest of one small run of every mode, to compare before and after a
refactoring that must not change results (issue 28's check).

    python -m latent_evo.benchmarks.identity > before.txt     # on the old commit
    python -m latent_evo.benchmarks.identity > after.txt      # on the new one
    diff before.txt after.txt                                  # no output: bit-identical

Each line: the mode, its best fitness, evaluations, and hashes of the best genome and of the
history (wall-clock fields left out), plus the test metrics. One thread; about a minute.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Callable
from typing import Any

import torch

import latent_evo
from latent_evo.compressor import bundled_compressor_path
from latent_evo.config import read_yaml


def digest(res: Any) -> str:
    genome = hashlib.sha256(res.best_genome.detach().cpu().float().numpy().tobytes())
    rows = [{k: v for k, v in r.items() if "time" not in k} for r in res.history]
    history = hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode())
    return (f"best={res.best_fitness:.10g} evals={res.evaluations} "
            f"genome={genome.hexdigest()[:16]} hist={history.hexdigest()[:16]} "
            f"test={json.dumps(res.test_metrics, sort_keys=True)}")  # fmt: skip


def _config(path: str, **overrides: Any) -> dict[str, Any]:
    return {**read_yaml(path), **overrides}


def cases() -> dict[str, Callable[[], Any]]:
    comp = lambda: latent_evo.load_compressor(bundled_compressor_path())  # noqa: E731
    direct_es = {"name": "openai_es", "popsize": 16, "hparams": {"sigma_init": 0.02, "lr": 0.01}}
    evolve = latent_evo.evolve
    return {
        "direct_ga": lambda: evolve(task="mnist1d-mlp", strategy="ga", generations=4, popsize=16,
                                    seed=0),
        "direct_openai_step": lambda: evolve(task="mnist1d-mlp", mode="direct",
                                             strategy="openai_es", generations=4, popsize=16,
                                             seed=0, fitness_batch="step"),
        "latent_cma": lambda: evolve(task="mnist1d-mlp", compressor=comp(), config=_config(
            "configs/evolve/mnist1d-latent-cma.yaml", generations=4, evaluations=None,
            compressor=None)),
        "residual_hybrid": lambda: evolve(task="mnist1d-mlp", compressor=comp(), config=_config(
            "configs/evolve/mnist1d-residual-hybrid.yaml", generations=12, eval_every=0,
            switch={"enabled": True, "window": 3, "tol": 0.001, "back": True,
                    "final_direct_generations": 3, "strategy": direct_es},
            finetune={"enabled": True, "every": 5, "steps": 3, "reencode_steps": 3,
                      "batch_size": 16})),
        "surrogate_warmup": lambda: evolve(task="mnist1d-mlp", compressor=comp(), config=_config(
            "configs/evolve/mnist1d-surrogate-warmup.yaml", generations=6, eval_every=0,
            finetune={"enabled": True, "every": 3, "steps": 3, "warmup": {
                "enabled": True, "threshold": 0.1, "strategy": {**direct_es, "popsize": 8}}})),
        "decoder": lambda: evolve(task="mnist1d-mlp", compressor=comp(), config=_config(
            "configs/evolve/mnist1d-decoder-snes.yaml", task={"name": "mnist1d-mlp"},
            evaluations=None, generations=3, init={"kind": "prior", "samples": 32})),
        "generator": lambda: evolve(task="mnist1d-mlp-tiny", mode="generator", strategy="snes",
                                    strategy_hparams={"sigma_init": 0.1}, generations=4, seed=0),
        "portfolio": lambda: evolve(task="mnist1d-mlp", compressor=comp(), strategy="cma_es",
                                    evaluations=320, popsize=16,
                                    strategy_hparams={"sigma_init": 0.5},
                                    init={"kind": "prior", "samples": 32},
                                    portfolio={"enabled": True}, seed=0),
        "pbt": _pbt,
    }  # fmt: skip


def _pbt() -> Any:
    from latent_evo.evolution import PBT

    bad = {"mode": "direct", "evaluations": 640, "generations": None,
           "strategy": {"name": "openai_es", "popsize": 16,
                        "hparams": {"sigma_init": 0.5, "lr": 0.3}}}  # fmt: skip
    return PBT("mnist1d-mlp-tiny", config=bad, members=4, every=2, spread=10.0).run().best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cases", nargs="*", help="which cases (default: all)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    table = cases()
    for name in args.cases or list(table):
        print(name, digest(table[name]()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
