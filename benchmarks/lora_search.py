"""Search over LoRA adapters of a trained GPT-2 'mini': latent vs direct EGGROLL vs Adam.

    python -m latent_evo.benchmarks.lora_search --zoo zoos/text-gpt2-mini-lora \
        --compressor runs/text-gpt2-mini-lora/version_0/compressor [--parts 12 15] [--seeds 0 1 2]
        [--evaluations 2048] [--methods latent-cma eggroll openai-es adam zoo-best]

Each setting adapts the zoo's base network to one corpus part the zoo never saw (part 12 lies in
the base's training text, part 15 beyond it, in its validation tail): the genome is rank-r
factors of every block matrix (`lora` task), fitness the bits per char on a fixed sample of the
part's training windows, the score the bits per char of the search's best adapters on the part's
held-out windows. Every member is evaluated unbuilt (shared base matmuls
plus per-member low-rank corrections). Methods, same population and budget for the searches:

    latent-cma  CMA-ES on the compressor's codes (decoded into the factors), from its prior
    eggroll     direct EGGROLL over the factors, each factor's matrix shape given (LoRA init)
    openai-es   direct OpenAI-ES over the factors (LoRA init)
    adam        Adam on the same adapters (LoRA init), the gradient reference, steps = budget / pop
    zoo-best    memorisation: the zoo adapter with the best training fitness on the part
    zoo-noise   memorisation: the best of `budget` noisy copies of zoo adapters (tuned scale)
    base        the base network alone (no adapter)

Results: `lora_search.{json,md,png}` in `--out`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from latent_evo.benchmarks.common import provenance, provenance_md
from latent_evo.cli.demo_gpt2 import adam_on_adapters

METHODS = ("latent-cma", "eggroll", "openai-es", "adam", "zoo-best", "zoo-noise", "base")


def part_task(zoo: Path, part: int, batch_size: int):
    """The zoo's `lora` task, its base's data cut to corpus part `part`."""
    from latent_evo.pretrain.data import zoo_task
    from latent_evo.zoo import ZooDataset

    ds = ZooDataset(zoo, split="all")
    parts = json.loads(ds.metadata.to_pandas()["hparams"].iloc[0])["parts"]
    # validation: every 10th block of 1,024 characters of the part, so it shares the training
    # text's topics (the part's tail is often another topic, which no adaptation helps with)
    ds.task_overrides = {**ds.task_overrides, "data": {"part": [part, parts], "part_val": "blocks"},
                         "batch_size": batch_size, "fitness_batch_size": batch_size}  # fmt: skip
    return zoo_task(ds), ds


def run_search(method: str, task, compressor: str, evaluations: int, pop: int, seed: int):
    from latent_evo.evolution.evolve import evolve

    # a fixed sample of the part's training windows: with a fresh minibatch per generation the
    # run's best genome is whichever member met the easiest minibatch, and stays that forever
    common = {"evaluations": evaluations, "popsize": pop, "seed": seed,
              "fitness_batch": "fixed", "eval_every": 0}  # fmt: skip
    if method == "latent-cma":
        res = evolve(task=task, compressor=compressor, strategy="cma_es", mode="latent",
                     strategy_hparams={"sigma_init": 0.5}, init={"kind": "prior"}, **common)  # fmt: skip
    elif method == "eggroll":
        res = evolve(task=task, strategy="eggroll", mode="direct", init={"kind": "task"},
                     strategy_hparams={"sigma_init": 0.02, "lr": 0.02, "rank": 1}, **common)  # fmt: skip
    else:
        res = evolve(task=task, strategy="openai_es", mode="direct", init={"kind": "task"},
                     strategy_hparams={"sigma_init": 0.02, "lr": 0.02}, **common)  # fmt: skip
    curve = [(h["evaluations"], h["best_fitness"]) for h in res.history]
    return float(res.test_metrics["test_bpc"]), curve


def memorisation(task, ds, evaluations: int, seed: int) -> dict[str, float]:
    """Best zoo adapter by training fitness; best of `evaluations` noisy copies of the best
    eight, the noise scale tuned over four values (a quarter of the budget each)."""
    finals = ds.genomes()
    with torch.no_grad():
        f = torch.cat([task.fitness_genomes(finals[i : i + 32])
                       for i in range(0, len(finals), 32)])  # fmt: skip
    best = finals[int(f.argmin())]
    out = {"zoo-best": float(task.evaluate(best)["test_bpc"])}
    top = finals[f.argsort()[:8]]
    gen = torch.Generator().manual_seed(seed)
    std = finals.std(0)  # per-value spread over the zoo
    per = evaluations // 4
    cand, cand_f = None, float("inf")
    with torch.no_grad():
        for scale in (0.05, 0.1, 0.2, 0.4):
            idx = torch.randint(len(top), (per,), generator=gen)
            x = top[idx] + scale * std * torch.randn(per, finals.shape[1], generator=gen)
            fx = torch.cat([task.fitness_genomes(x[i : i + 32]) for i in range(0, per, 32)])
            if float(fx.min()) < cand_f:
                cand, cand_f = x[int(fx.argmin())], float(fx.min())
    out["zoo-noise"] = float(task.evaluate(cand)["test_bpc"])
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--zoo", default="zoos/text-gpt2-mini-lora")
    p.add_argument("--compressor", default="runs/text-gpt2-mini-lora/version_0/compressor")
    p.add_argument("--parts", type=int, nargs="+", default=[12, 15])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--evaluations", type=int, default=2048)
    p.add_argument("--pop", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=16,
                   help="windows in the fixed fitness sample (and in Adam's minibatches)")  # fmt: skip
    p.add_argument("--adam-lr", type=float, default=3e-3)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--merge", nargs="+", default=None,
                   help="lora_search.json files of runs over other parts/seeds: combine, no run")  # fmt: skip
    args = p.parse_args(argv)
    if args.merge:
        return _merge([Path(f) for f in args.merge], Path(args.out))
    torch.set_num_threads(args.threads)
    prov = provenance(sys.argv[1:] if argv is None else argv,
                      "python -m latent_evo.benchmarks.lora_search")  # fmt: skip
    zoo = Path(args.zoo)
    rows, curves = [], {}
    for part in args.parts:
        task, ds = part_task(zoo, part, args.batch_size)
        for seed in args.seeds:
            mem = None
            for method in args.methods:
                t0 = time.perf_counter()
                curve = None
                if method in ("latent-cma", "eggroll", "openai-es"):
                    bpc, curve = run_search(method, task, args.compressor, args.evaluations,
                                            args.pop, seed)  # fmt: skip
                elif method == "adam":
                    bpc = adam_on_adapters(task, args.evaluations // args.pop, args.adam_lr, seed)[
                        0
                    ]
                elif method == "base":
                    bpc = float(task.evaluate(task.init_genomes(1)[0])["test_bpc"])
                else:
                    mem = mem or memorisation(task, ds, args.evaluations, seed)
                    bpc = mem[method]
                row = {"part": part, "seed": seed, "method": method, "test_bpc": bpc,
                       "wall_s": time.perf_counter() - t0}  # fmt: skip
                rows.append(row)
                if curve:
                    curves[f"{part}/{method}/{seed}"] = curve
                print(json.dumps(row), flush=True)
    prov["load_avg_end"] = __import__("os").getloadavg()[0]
    res = {"rows": rows, "curves": curves, "args": vars(args), "provenance": prov}
    return _write(res, Path(args.out))


def _merge(files: list[Path], out: Path) -> dict:
    parts = [json.loads(f.read_text()) for f in files]
    res = {**parts[0], "rows": [r for p in parts for r in p["rows"]],
           "curves": {k: v for p in parts for k, v in p["curves"].items()},
           "merged_provenance": [p["provenance"] for p in parts[1:]]}  # fmt: skip
    res["args"] = {**parts[0]["args"], "parts": sorted({r["part"] for r in res["rows"]})}
    return _write(res, out)


def _write(res: dict, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    (out / "lora_search.json").write_text(json.dumps(res, indent=1))
    (out / "lora_search.md").write_text(_markdown(res))
    _plot(res, out / "lora_search.png")
    return res


def _table(rows: list[dict]) -> dict[tuple[int, str], tuple[float, float, int]]:
    cells: dict[tuple[int, str], list[float]] = {}
    for r in rows:
        cells.setdefault((r["part"], r["method"]), []).append(r["test_bpc"])
    return {k: (statistics.mean(v), statistics.pstdev(v), len(v)) for k, v in cells.items()}


def _markdown(res: dict) -> str:
    a, t = res["args"], _table(res["rows"])
    parts = a["parts"]
    merged = [f"- merged: `{p['command']}` (commit {p['commit']})"
              for p in res.get("merged_provenance", [])]  # fmt: skip
    lines = ["# LoRA adapters of GPT-2 'mini': latent search vs direct EGGROLL vs Adam", "",
             *provenance_md(res["provenance"]), *merged, "",
             f"Held-out bits per char on each unseen corpus part (lower is better), mean ± sd "
             f"over seeds {a['seeds']}; searches: {a['evaluations']:,} evaluations, population "
             f"{a['pop']}, fitness on a fixed sample of {a['batch_size']} training windows of 64 "
             f"characters; Adam: {a['evaluations'] // a['pop']} steps on minibatches of "
             f"{a['batch_size']} windows.", "",
             "| method | " + " | ".join(f"part {k}" for k in parts) + " |",
             "|---|" + "---:|" * len(parts)]  # fmt: skip
    for m in a["methods"]:
        cells = [f"{t[(k, m)][0]:.4f} ± {t[(k, m)][1]:.4f}" if (k, m) in t else "" for k in parts]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join([*lines, ""])


def _plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = res["args"]["parts"]
    fig, axes = plt.subplots(1, len(parts), figsize=(5 * len(parts), 4), dpi=110, squeeze=False)
    for ax, part in zip(axes[0], parts, strict=True):
        for key, curve in res["curves"].items():
            k, method, seed = key.split("/")
            if int(k) != part:
                continue
            color = {"latent-cma": "C0", "eggroll": "C1", "openai-es": "C2"}[method]
            ax.plot(*zip(*curve, strict=True), color=color, alpha=0.7,
                    label=method if seed == str(res["args"]["seeds"][0]) else None)  # fmt: skip
        ax.set(title=f"part {part}", xlabel="evaluations", ylabel="best training bits/char")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
