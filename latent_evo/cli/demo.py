"""`latent-evo demo`: latent evolution vs direct-space GA and OpenAI-ES vs SGD, on MNIST-1D
(`--family gpt2`: adapting a GPT-2 to unseen text, `latent_evo.cli.demo_gpt2`).

Every evolutionary method gets the same budget of true fitness evaluations (one evaluation = the
training loss of one network on the task's fixed 4,000-sample training batch); SGD (Adam) on the
same architecture is the gradient-based reference, and the best network of the zoo the compressor
was pretrained on (shipped beside it, `best_zoo_network.safetensors`) is the memorisation
reference: latent search is worth its evaluations only where it beats both. The latent method
uses the compressor bundled with the package (pretrained offline by `make compressor`), so the
demo needs no network. Whatever the numbers are, they are printed as measured.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

TASK = "mnist1d-mlp"


def _methods(budget: int, popsize: int) -> dict[str, dict[str, Any]]:
    """Each method's `evolve` options. Step sizes were chosen on MNIST-1D and are kept fixed.

    The latent method is the default search (`latent_evo.evolution.portfolio`): latent CMA-ES
    and direct OpenAI-ES share the budget by the progress each makes, so on this task (the
    compressor's own) latent space gets most of it, and on a task where latent space does not
    help direct space does (BENCHMARKS.md, "The default search")."""
    direct_es = {
        "name": "openai_es",
        "popsize": popsize,
        "hparams": {"sigma_init": 0.02, "lr": 0.01},
    }
    return {
        "default search: latent CMA-ES + direct OpenAI-ES portfolio": dict(
            mode="latent", strategy="cma_es", popsize=popsize, strategy_hparams={"sigma_init": 0.5},
            init={"kind": "prior", "samples": min(256, budget // 40)},
            portfolio={"enabled": True, "strategy": direct_es},
        ),
        "direct GA": dict(
            mode="direct", strategy="ga", popsize=popsize, strategy_hparams={"mutation_sigma": 0.02},
            init={"kind": "task"},
        ),
        "direct OpenAI-ES": dict(
            mode="direct", strategy="openai_es", popsize=popsize,
            strategy_hparams={"sigma_init": 0.02, "lr": 0.01}, init={"kind": "task"},
        ),
    }  # fmt: skip


def _plot(
    results: dict[str, Any],
    sgd: dict[str, Any] | None,
    zoo: dict[str, float] | None,
    path: Path,
    budget: int,
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    for name, r in results.items():
        pts = [(h["evaluations"], h["test_accuracy"]) for h in r["history"] if "test_accuracy" in h]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", ms=3, label=name)
    if sgd is not None:
        acc = sgd["test"]["test_accuracy"]
        ax.axhline(acc, color="k", ls=":", label=f"SGD (Adam), {sgd['steps']} steps: {acc:.3f}")
    if zoo is not None:
        acc = zoo["test_accuracy"]
        ax.axhline(
            acc, color="0.5", ls="--", label=f"best zoo checkpoint (memorisation): {acc:.3f}"
        )
    ax.set_xlabel("true fitness evaluations")
    ax.set_ylabel("test accuracy of the best network")
    ax.set_xlim(0, budget)
    ax.set_title("MNIST-1D MLP: latent vs direct search, same evaluation budget")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _best_zoo_network(task, compressor_dir: Path) -> dict[str, float] | None:
    """Test metrics of the zoo's best network, when the compressor folder ships one."""
    path = compressor_dir / "best_zoo_network.safetensors"
    if not path.is_file():
        return None
    from latent_evo.evolution.sources import load_network_genome

    return task.evaluate(load_network_genome(path, task.spec).to(task.device))


def run_demo(
    budget: int = 10000,
    popsize: int = 32,
    seed: int = 0,
    out: str | Path = "runs/demo",
    compressor: str | Path | None = None,
    sgd_steps: int = 1500,
    device: str = "auto",
) -> dict[str, Any]:
    from latent_evo.cli.tables import results_table
    from latent_evo.compressor.hub import bundled_compressor_path, load_compressor
    from latent_evo.evolution.evolve import evolve
    from latent_evo.tasks import get_task
    from latent_evo.tasks.sgd import run_sgd

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    comp_path = compressor or bundled_compressor_path()
    comp = load_compressor(comp_path).eval()
    task = get_task(TASK)
    print(
        f"task {TASK}: {task.spec.numel:,} weights; compressor {comp_path} (latent size {comp.latent_size})"
    )
    print(f"budget: {budget:,} true evaluations per method, population {popsize}, seed {seed}\n")
    results: dict[str, Any] = {}
    rows = []
    eval_every = max(budget // popsize // 15, 1)
    for name, opts in _methods(budget, popsize).items():
        print(f"== {name}")
        t0 = time.perf_counter()
        res = evolve(
            task=task, compressor=comp if opts["mode"] != "direct" else None, evaluations=budget,
            generations=None, seed=seed, device=device, progress=True, eval_every=eval_every, **opts,
        )  # fmt: skip
        wall = time.perf_counter() - t0
        if res.interrupted:  # SIGINT / SIGTERM stop the demo, not just this method
            raise KeyboardInterrupt(f"{name}: stopped by a signal")
        results[name] = {
            "history": res.history, "events": res.events, "evaluations": res.evaluations,
            "best_fitness": res.best_fitness, "test": res.test_metrics, "wall_s": wall,
        }  # fmt: skip
        rows.append(
            {"method": name, "evaluations": res.evaluations, "wall_s": wall, **res.test_metrics}
        )
    print("== SGD (Adam), same architecture")
    sgd = run_sgd(task, sgd_steps, lr=1e-3, seed=seed)
    rows.append({
        "method": f"SGD (Adam, {sgd_steps} steps of 128)", "evaluations": "-", "wall_s": sgd["wall_s"],
        **sgd["test"],
    })  # fmt: skip
    rows[-1]["evaluations"] = "n/a (gradients)"
    zoo = _best_zoo_network(task, Path(comp_path))
    if zoo is not None:
        rows.append({"method": "best zoo checkpoint (memorisation)", "evaluations": "0 (zoo)",
                     "wall_s": 0.0, **zoo})  # fmt: skip
    table = results_table(rows)
    plot = _plot(results, sgd, zoo, out / "accuracy.png", budget)
    summary = {
        "task": TASK, "budget": budget, "popsize": popsize, "seed": seed, "compressor": str(comp_path),
        "methods": results, "sgd": sgd, "best_zoo_network": zoo, "table": rows, "plot": str(plot),
        "torch": torch.__version__, "device": str(device),
    }  # fmt: skip
    (out / "results.json").write_text(json.dumps(summary, indent=1, default=float))
    (out / "summary.md").write_text(table + "\n")
    print("\n" + table)
    print(f"\nplot: {plot}\nresults: {out / 'results.json'}")
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="latent-evo demo", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--family",
        choices=("mlp", "gpt2"),
        default="mlp",
        help="mlp: an MNIST-1D MLP from scratch; gpt2: LoRA adapters of a GPT-2 'mini'",
    )
    p.add_argument(
        "--budget",
        type=int,
        default=None,
        help="true fitness evaluations per method (default 10,000; gpt2: 512)",
    )
    p.add_argument("--popsize", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--out",
        default=None,
        help="run directory (results.json, a plot; default runs/demo, runs/demo-gpt2)",
    )
    p.add_argument("--compressor", default=None, help="local folder or Hub id (default: bundled)")
    p.add_argument("--sgd-steps", type=int, default=1500, help="mlp: Adam steps of the reference")
    p.add_argument(
        "--part",
        type=int,
        default=14,
        help="gpt2: the corpus part to adapt to (the bundled base saw 0-7, its zoo 8-13)",
    )
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    try:
        if args.family == "gpt2":
            from latent_evo.cli.demo_gpt2 import run_gpt2_demo

            run_gpt2_demo(
                args.budget or 512, args.popsize, args.seed, args.out or "runs/demo-gpt2",
                args.compressor, args.part, device=args.device,
            )  # fmt: skip
        else:
            run_demo(
                args.budget or 10000, args.popsize, args.seed, args.out or "runs/demo",
                args.compressor, args.sgd_steps, args.device,
            )  # fmt: skip
    except (FileNotFoundError, ValueError) as e:
        print(f"latent-evo demo: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
