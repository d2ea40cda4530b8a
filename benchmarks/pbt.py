"""PBT benchmark: does population-based training rescue a strategy whose hyper-parameters are
set badly? Same total budget of true evaluations for every row.

    python -m latent_evo.benchmarks.pbt --seeds 0,1,2 --budget 10000 --out benchmarks/results

Per case (a strategy in a space, on `mnist1d-mlp`): the run with a priori good step sizes (the
search benchmark's), the same strategy with bad ones (each off by about an order of magnitude),
PBT started from the bad ones, and PBT started from the good ones (what PBT costs when nothing
needs fixing). Writes pbt.json, pbt.md and pbt.png.
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

from latent_evo.benchmarks.common import DEFAULT_OUT, provenance, provenance_md

TASK = "mnist1d-mlp"
POP = 32
PBT_OPTIONS = {"members": 4, "every": 10, "spread": 10.0}
# case -> (mode, strategy, good hparams, bad hparams, init)
CASES: dict[str, tuple[str, str, dict, dict, dict]] = {
    "direct OpenAI-ES": (
        "direct", "openai_es", {"sigma_init": 0.02, "lr": 0.01}, {"sigma_init": 0.5, "lr": 0.3},
        {"kind": "task"},
    ),
    "latent OpenAI-ES": (
        "latent", "openai_es", {"sigma_init": 0.1, "lr": 0.05}, {"sigma_init": 0.005, "lr": 0.002},
        {"kind": "prior"},
    ),
}  # fmt: skip


def _config(case: str, hp: dict, budget: int, seed: int, compressor: str | None) -> dict:
    mode, strategy, _, _, init = CASES[case]
    return {
        "task": {"name": TASK}, "mode": mode, "compressor": compressor if mode != "direct" else None,
        "strategy": {"name": strategy, "popsize": POP, "hparams": dict(hp)}, "init": init,
        "generations": None, "evaluations": budget, "eval_every": 0, "seed": seed,
    }  # fmt: skip


def run_one(case: str, row: str, budget: int, seed: int, compressor: str | None) -> dict[str, Any]:
    from latent_evo.evolution import PBT, evolve

    _, _, good, bad, _ = CASES[case]
    hp = bad if "bad" in row else good
    cfg = _config(case, hp, budget, seed, compressor)
    t0 = time.perf_counter()
    if row.startswith("PBT"):
        res = PBT(TASK, config=cfg, **PBT_OPTIONS).run()
        best, evals = res.best, res.evaluations
        tuned = res.hparams[res.best_index]
    else:
        best = evolve(TASK, config=cfg)
        evals, tuned = best.evaluations, hp
    return {
        "case": case, "row": row, "seed": seed, "start_hparams": hp, "final_hparams": tuned,
        "test_accuracy": best.test_metrics["test_accuracy"], "best_fitness": best.best_fitness,
        "evaluations": evals, "wall_s": time.perf_counter() - t0,
    }  # fmt: skip


ROWS = ("good step sizes", "bad step sizes", "PBT from the bad ones", "PBT from the good ones")


def render(runs: list[dict], prov: dict, out: Path) -> str:
    lines = ["# PBT benchmark (`latent_evo.benchmarks.pbt`)", "", *provenance_md(prov)]
    lines += [
        f"- task `{TASK}`, population {POP}, {prov['budget']:,} true evaluations per row (PBT: "
        f"{PBT_OPTIONS['members']} members share them, exploit/explore every "
        f"{PBT_OPTIONS['every']} generations, start values drawn within x/÷ "
        f"{PBT_OPTIONS['spread']:g}, perturb x0.5 or x2); seeds {prov['seeds']}; one process, "
        "one torch thread",
        "",
        "![pbt](pbt.png)",
        "",
        "| case | row | start σ / lr | test acc (mean ± std) | vs good step sizes | "
        "final σ / lr (best member, seed 0) | wall s / run |",
        "|---|---|---|---:|---:|---|---:|",
    ]
    for case in CASES:
        good = [r["test_accuracy"] for r in runs if r["case"] == case and r["row"] == ROWS[0]]
        for row in ROWS:
            rs = [r for r in runs if r["case"] == case and r["row"] == row]
            if not rs:
                continue
            acc = [r["test_accuracy"] for r in rs]
            sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
            ratio = statistics.mean(acc) / statistics.mean(good) if good else float("nan")
            h0, h1 = rs[0]["start_hparams"], rs[0]["final_hparams"]
            lines.append(
                f"| {case} | {row} | {h0['sigma_init']:g} / {h0['lr']:g} | "
                f"{statistics.mean(acc):.3f} ± {sd:.3f} ({len(acc)}) | {ratio:.2f} | "
                f"{h1['sigma_init']:.3g} / {h1['lr']:.3g} | "
                f"{statistics.mean(r['wall_s'] for r in rs):.1f} |"
            )
    _plot(runs, out / "pbt.png")
    return "\n".join(lines) + "\n"


def _plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(CASES), figsize=(5 * len(CASES), 3.6), squeeze=False)
    for ax, case in zip(axes[0], CASES, strict=True):
        means, errs, labels = [], [], []
        for row in ROWS:
            acc = [r["test_accuracy"] for r in runs if r["case"] == case and r["row"] == row]
            if acc:
                means.append(statistics.mean(acc))
                errs.append(statistics.stdev(acc) if len(acc) > 1 else 0.0)
                labels.append(row.replace(" from the ", "\nfrom "))
        ax.bar(range(len(means)), means, yerr=errs, color="C0", capsize=3)
        ax.set_xticks(range(len(means)), labels, fontsize=7)
        ax.set_title(case)
        ax.set_ylabel("test accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m latent_evo.benchmarks.pbt")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--budget", type=int, default=10000)
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--compressor", default=None, help="default: the bundled MNIST-1D compressor")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from latent_evo.compressor.hub import bundled_compressor_path

    compressor = args.compressor or str(bundled_compressor_path("mnist1d-mlp"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    prov = {**provenance(argv, "python -m latent_evo.benchmarks.pbt"), "budget": args.budget,
            "seeds": seeds}  # fmt: skip
    runs: list[dict] = []
    for case in args.cases.split(","):
        for row in ROWS:
            for seed in seeds:
                r = run_one(case, row, args.budget, seed, compressor)
                print(f"{case} / {row} / seed {seed}: acc {r['test_accuracy']:.3f} "
                      f"({r['wall_s']:.0f} s)", flush=True)  # fmt: skip
                runs.append(r)
                prov["load_avg_end"] = os.getloadavg()[0]
                (out / "pbt.json").write_text(
                    json.dumps({"provenance": prov, "runs": runs}, indent=1)
                )
                (out / "pbt.md").write_text(render(runs, prov, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
