"""Accuracy vs trained parameters: searching a small generator network's weights instead of the target's.

    python -m latent_evo.benchmarks.generator --out DIR --seeds 0,1,2 --budget 10000

Per task (default mnist1d-mlp and digits-mlp) and seed, every method trains one network:

    direct-snes   SNES over the target's n weights, from the task's init
    direct-ga     GA over the target's n weights (the search benchmark's step size)
    hyper-snes    SNES over the coordinate generator's d parameters (GeneratorSpace, d <= n / 4)
    hyper-ga      GA over the same d parameters
    hyper-adam    the same generator trained by backprop (Adam on theta through the network)
    direct-adam   Adam on the target's weights (`run_sgd`)
    latent-cma    latent CMA-ES with the bundled pretrained compressor (mnist1d-mlp only: the
                  one task with a compressor); 128 searched numbers, but its decoder was
                  trained on a zoo of 256 networks

The searches use exactly `--budget` true evaluations (popsize 32) on the task's fixed fitness
batch; the test accuracy is the best-by-training-fitness network's. Step sizes are fixed a
priori, not tuned here. Writes generator.json, generator.md and generator.png.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from latent_evo.benchmarks.baselines import Tracker
from latent_evo.benchmarks.common import DEFAULT_OUT, provenance, provenance_md

POP = 32
METHODS = ("direct-snes", "direct-ga", "hyper-snes", "hyper-ga", "hyper-adam", "direct-adam",
           "latent-cma")  # fmt: skip
COMPRESSORS = {"mnist1d-mlp": "mnist1d-mlp"}  # task -> bundled compressor
HPARAMS = {
    "direct-snes": ("snes", {"sigma_init": 0.02}),  # as benchmarks/search.py's direct SNES
    "direct-ga": ("ga", {"mutation_sigma": 0.02}),  # as benchmarks/search.py's direct GA
    "hyper-snes": ("snes", {"sigma_init": 0.1}),  # theta entries are O(0.1-1)
    "hyper-ga": ("ga", {"init_scale": 0.1, "mutation_sigma": 0.05}),
}
LABELS = {
    "direct-snes": "SNES on the target's weights",
    "direct-ga": "GA on the target's weights",
    "latent-cma": "latent CMA-ES, pretrained compressor (decoder trained on a zoo)",
    "hyper-snes": "SNES on the generator",
    "hyper-ga": "GA on the generator",
    "hyper-adam": "Adam on the generator (backprop)",
    "direct-adam": "Adam on the target's weights",
}


def search(task, method: str, cfg, budget: int, seed: int) -> dict[str, Any]:
    """Ask/tell for `budget // POP` generations; every genome evaluated once and counted."""
    from latent_evo.evolution.generator import GeneratorSpace
    from latent_evo.evolution.spaces import DirectSpace
    from latent_evo.strategies import get_strategy

    t0 = time.perf_counter()
    if method.startswith("hyper"):
        space = GeneratorSpace(task, cfg)
        mean = space.initial_mean()
    else:
        space = DirectSpace(task.spec.numel)
        mean = task.init_genomes(1, torch.Generator().manual_seed(seed))[0]
    name, hp = HPARAMS[method]
    strat = get_strategy(name, dim=space.dim, popsize=POP, seed=seed, **hp)
    strat.init(mean=mean)
    tracker = Tracker(task, max(budget // 20 // POP, 1) * POP)
    for _ in range(budget // POP):
        x = strat.ask()
        with torch.no_grad():
            f = tracker.fitness(space.to_genomes(x))
        strat.tell(f)
    return tracker.result(time.perf_counter() - t0, trained_params=space.dim)


def latent(task, budget: int, seed: int) -> dict[str, Any]:
    """The search benchmark's latent CMA-ES (σ 0.5, from a prior sample) with the bundled
    compressor: what a pretrained decoder buys over a generator trained from scratch."""
    from latent_evo.compressor.hub import bundled_compressor_path, load_compressor
    from latent_evo.evolution.evolve import evolve

    comp = load_compressor(bundled_compressor_path(COMPRESSORS[task.name]))
    t0 = time.perf_counter()
    res = evolve(task=task, compressor=comp, mode="latent", strategy="cma_es", popsize=POP,
                 strategy_hparams={"sigma_init": 0.5}, init={"kind": "prior"}, seed=seed,
                 evaluations=budget, generations=None, eval_every=0, device="cpu")  # fmt: skip
    return {"test": res.test_metrics, "wall_s": time.perf_counter() - t0,
            "evaluations": res.evaluations, "trained_params": comp.latent_size}  # fmt: skip


def run_one(task, method: str, cfg, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    from latent_evo.evolution.generator import train_generator_backprop
    from latent_evo.tasks.sgd import run_sgd

    torch.manual_seed(seed)
    if method == "latent-cma":
        return latent(task, args.budget, seed)
    if method in HPARAMS:
        return search(task, method, cfg, args.budget, seed)
    if method == "hyper-adam":
        r = train_generator_backprop(task, cfg, args.sgd_steps, args.hyper_lr, seed)
        r.pop("theta")  # a tensor; the JSON keeps numbers only
    else:
        r = run_sgd(task, args.sgd_steps, lr=1e-3, seed=seed)
        r["trained_params"] = task.spec.numel
    r["note"] = f"{r['steps']} Adam steps on minibatches of 128 (gradients, not evaluations)"
    return r


def _mean_std(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def summarize(runs: dict[str, list[dict]]) -> list[dict[str, Any]]:
    rows = []
    for m, rs in runs.items():
        acc = _mean_std([r["test"]["test_accuracy"] for r in rs])
        rows.append({"method": m, "acc": acc, "params": rs[0]["trained_params"],
                     "evaluations": rs[0].get("evaluations"), "seeds": len(rs),
                     "wall_s": statistics.fmean(r["wall_s"] for r in rs)})  # fmt: skip
    return rows


def report(results: dict[str, Any]) -> str:
    lines = ["# Accuracy vs trained parameters: generator search space", "",
             *provenance_md(results["provenance"]), "",
             f"Budget {results['budget']:,} true evaluations per search (popsize {POP}); "
             f"generator `{results['hyper_config']}`. Test accuracy mean ± std over seeds "
             f"{results['seeds']}.", ""]  # fmt: skip
    for name, st in results["tasks"].items():
        lines += [f"## {name} ({st['params']:,} target params; generator "
                  f"{st['generator_params']:,} = {st['ratio']:.3f} of it)", "",
                  "| method | trained params | evaluations | test accuracy | wall s |",
                  "|---|---:|---:|---:|---:|"]  # fmt: skip
        for r in summarize(st["runs"]):
            ev = f"{r['evaluations']:,}" if r["evaluations"] else "— (gradient steps)"
            lines.append(f"| {LABELS[r['method']]} | {r['params']:,} | {ev} | "
                         f"{r['acc'][0]:.3f} ± {r['acc'][1]:.3f} | {r['wall_s']:.1f} |")  # fmt: skip
        lines.append("")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = results["tasks"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4), squeeze=False)
    for ax, (name, st) in zip(axes[0], tasks.items(), strict=True):
        for i, r in enumerate(summarize(st["runs"])):
            marker = "o" if r["evaluations"] else "s"  # circles: search; squares: gradients
            ax.errorbar(r["params"], r["acc"][0], yerr=r["acc"][1], fmt=marker, color=f"C{i}",
                        capsize=3, label=LABELS[r["method"]])  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel("trained parameters")
        ax.set_ylabel("test accuracy")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(DEFAULT_OUT))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--budget", type=int, default=10000, help="true evaluations per search")
    p.add_argument("--tasks", default="mnist1d-mlp,digits-mlp")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--sgd-steps", type=int, default=2000, help="Adam steps of both backprop rows")
    p.add_argument("--hyper-lr", type=float, default=1e-2, help="Adam lr on the generator")
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--embed", type=int, default=8)
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    args = p.parse_args(argv)

    from latent_evo import get_task
    from latent_evo.evolution.generator import GeneratorConfig, parameter_counts

    torch.set_num_threads(args.threads)
    methods = args.methods.split(",")
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise SystemExit(f"unknown method(s) {bad}; choose from {list(METHODS)}")
    if args.budget < POP:
        raise SystemExit(f"--budget {args.budget} is below one generation ({POP} evaluations)")
    cfg = GeneratorConfig(hidden=args.hidden, layers=args.layers, embed=args.embed)
    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prov = provenance(argv, "python -m latent_evo.benchmarks.generator")
    results: dict[str, Any] = {"provenance": prov, "budget": args.budget, "seeds": seeds,
                               "hyper_config": cfg.__dict__, "tasks": {}}  # fmt: skip
    for name in args.tasks.split(","):
        task = get_task(name)
        counts = parameter_counts(task, cfg)
        st = results["tasks"][name] = {"params": counts["target"], "runs": {},
                                       "generator_params": counts["generator"],
                                       "ratio": counts["ratio"]}  # fmt: skip
        for m in methods:
            if m == "latent-cma" and name not in COMPRESSORS:
                continue  # no pretrained compressor for this task
            st["runs"][m] = []
            for seed in seeds:
                print(f"== {name} / {m} / seed {seed}", flush=True)
                r = run_one(task, m, cfg, args, seed)
                st["runs"][m].append(r)
                print(f"   test acc {r['test']['test_accuracy']:.3f}  wall {r['wall_s']:.1f}s",
                      flush=True)  # fmt: skip
                prov["load_avg_end"] = os.getloadavg()[0]
                (out / "generator.json").write_text(json.dumps(results, indent=1, default=float))
    (out / "generator.md").write_text(report(results))
    plot(results, out / "generator.png")
    print((out / "generator.md").read_text())
    return results


if __name__ == "__main__":
    main()
