"""`latent-evo demo --family gpt2`: adapt a GPT-2 to text it never saw, by latent evolution.

The bundled compressor (`make compressor-gpt2`) decodes a 64-value code into rank-4 LoRA factors
of all 20 block matrices of a GPT-2 'mini' (2.3M parameters), whose weights ship beside it
(`base.safetensors`). The base was trained on the first half of the package's text corpus (the
pydoc text of the standard library, cut into 16 parts), the compressor on adapters for parts 8-13;
the demo adapts the base to a later part (14 by default) that neither saw. Every method gets the
same budget of true evaluations (bits per char of a member on a fixed sample of the part's
training windows); the score is the held-out bits per char on the same part. References: the base
network unadapted, and Adam on the same adapters (gradients, not counted in the budget). Direct
EGGROLL searches the same factors without the compressor. No network is needed; whatever the
numbers are, they are printed as measured.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

WINDOWS = 16  # windows of 64 characters in the fixed fitness sample (and in Adam's minibatches)


def adam_on_adapters(task, steps: int, lr: float, seed: int) -> tuple[float, float]:
    """Adam on a `lora` task's adapters from the LoRA init, one minibatch of the task's training
    windows per step: the gradient reference (held-out bits/char, wall seconds)."""
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    g = task.init_genomes(1, torch.Generator().manual_seed(seed))[0].clone().requires_grad_(True)
    opt = torch.optim.Adam([g], lr=lr)
    for step in tqdm(range(steps), desc="Adam", leave=False):
        loss = task.fitness(g[None], task.batch(step)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(task.evaluate(g.detach())["test_bpc"]), time.perf_counter() - t0


def _plot(results: dict[str, Any], refs: dict[str, float], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for name, r in results.items():
        curve = [(h["evaluations"], h["best_fitness"]) for h in r["history"]]
        axes[0].plot(*zip(*curve, strict=True), label=name)
    axes[0].set(xlabel="true evaluations", ylabel="best training bits/char", title=title)
    names = [*results, *refs]
    scores = [r["test_bpc"] for r in results.values()] + list(refs.values())
    axes[1].barh(names, scores, color=[f"C{i}" for i in range(len(names))])
    axes[1].set(xlabel="held-out bits/char (lower is better)", xlim=(min(scores) - 0.1, None))
    axes[0].legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_gpt2_demo(
    budget: int = 512,
    popsize: int = 32,
    seed: int = 0,
    out: str | Path = "runs/demo-gpt2",
    compressor: str | Path | None = None,
    part: int = 14,
    adam_lr: float = 3e-3,
    device: str = "auto",
) -> dict[str, Any]:
    from latent_evo.cli.tables import results_table
    from latent_evo.compressor.hub import (
        BUNDLED_GPT2,
        bundled_compressor_path,
        load_compressor,
    )
    from latent_evo.evolution.evolve import evolve
    from latent_evo.evolution.loop import resolve_device
    from latent_evo.tasks.lora import lora_task_for

    folder = Path(compressor) if compressor is not None else bundled_compressor_path(BUNDLED_GPT2)
    if not folder.is_dir():
        raise FileNotFoundError(f"--compressor {folder}: not a local compressor folder")
    dev = str(resolve_device(device))
    # a bad folder, part or base network is an error here, before any work
    task, zoo_cfg = lora_task_for(folder, part, batch_size=WINDOWS, device=dev)
    comp = load_compressor(folder).eval()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"base: {task.base_task.name}, {task.base_task.spec.numel:,} weights; "
          f"adapters: rank {task.rank} on {len(task.layers)} matrices, {task.spec.numel:,} values; "
          f"compressor {folder} (latent size {comp.latent_size}, zoo parts "
          f"{zoo_cfg.get('zoo_parts')})")  # fmt: skip
    print(f"corpus part {part} of {zoo_cfg.get('parts', 16)}; budget {budget:,} true evaluations "
          f"per method, population {popsize}, seed {seed}\n")  # fmt: skip
    common = {"evaluations": budget, "popsize": popsize, "seed": seed, "device": dev,
              "fitness_batch": "fixed", "eval_every": 0, "progress": True}  # fmt: skip
    methods = {
        "latent CMA-ES (bundled compressor)": dict(
            compressor=comp, mode="latent", strategy="cma_es", strategy_hparams={"sigma_init": 0.5},
            init={"kind": "prior"}),
        "direct EGGROLL over the factors": dict(
            mode="direct", strategy="eggroll", init={"kind": "task"},
            strategy_hparams={"sigma_init": 0.02, "lr": 0.02, "rank": 1}),
    }  # fmt: skip
    results: dict[str, Any] = {}
    rows = []
    for name, opts in methods.items():
        print(f"== {name}")
        t0 = time.perf_counter()
        res = evolve(task=task, **opts, **common)
        if res.interrupted:
            raise KeyboardInterrupt(f"{name}: stopped by a signal")
        wall = time.perf_counter() - t0
        results[name] = {"history": res.history, "evaluations": res.evaluations, "wall_s": wall,
                         "best_fitness": res.best_fitness, "test_bpc": res.test_metrics["test_bpc"]}  # fmt: skip
        rows.append({"method": name, "evaluations": res.evaluations, "wall_s": wall,
                     "test_bpc": res.test_metrics["test_bpc"]})  # fmt: skip
    steps = max(budget // popsize, 1)
    print(f"== Adam on the same adapters ({steps} steps)")
    adam_bpc, adam_wall = adam_on_adapters(task, steps, adam_lr, seed)
    base_bpc = float(task.evaluate(task.init_genomes(1)[0])["test_bpc"])
    rows.append({"method": f"Adam, {steps} steps of {WINDOWS} windows", "evaluations": "n/a (gradients)",
                 "wall_s": adam_wall, "test_bpc": adam_bpc})  # fmt: skip
    rows.append({"method": "the base network, unadapted", "evaluations": "0", "wall_s": 0.0,
                 "test_bpc": base_bpc})  # fmt: skip
    refs = {"Adam (gradients)": adam_bpc, "base, unadapted": base_bpc}
    plot = _plot(results, refs, out / "bits_per_char.png", f"GPT-2 'mini', corpus part {part}")
    table = results_table(rows, ("test bits/char", "test_bpc"))
    summary = {"task": task.name, "part": part, "budget": budget, "popsize": popsize, "seed": seed,
               "compressor": str(folder), "methods": results, "table": rows, "plot": str(plot),
               "torch": torch.__version__, "device": dev}  # fmt: skip
    (out / "results.json").write_text(json.dumps(summary, indent=1, default=float))
    (out / "summary.md").write_text(table + "\n")
    print("\n" + table)
    print(f"\nplot: {plot}\nresults: {out / 'results.json'}")
    return summary
