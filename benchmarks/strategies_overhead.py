"""Per-generation ask+tell overhead of every registry strategy (fitness evaluation excluded).

    .venv/bin/python -m latent_evo.benchmarks.strategies_overhead [--popsize 256] [--dims 128 1000000] [--threads 2]

Prints a markdown table (median over repeats, after warm-up) and writes it to
``benchmarks/results/strategies.md``. If ``evotorch`` is importable, its SNES and CMA-ES are
timed the same way, side by side. Skipped on purpose at d = 1e6: full CMA-ES (a 1e6 x 1e6
covariance is 8 TB) and default MAP-Elites (a 32 x 32 grid of 1e6-wide elites is 4 GB; an
8 x 8 grid is timed instead).
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from latent_evo.strategies import get_strategy, list_strategies

RESULTS = Path(__file__).parent / "results" / "strategies.md"


def time_strategy(make, dim: int, repeats: int, warmup: int = 2) -> float:
    """Median seconds of one ``ask`` + ``tell``; the fitness is computed outside the timer."""
    s = make()
    times = []
    for i in range(warmup + repeats):
        t0 = time.perf_counter()
        x = s.ask()
        t1 = time.perf_counter()
        f = x.square().sum(1)
        t2 = time.perf_counter()
        s.tell(f)
        t3 = time.perf_counter()
        if i >= warmup:
            times.append((t1 - t0) + (t3 - t2))
        del x, f
    del s
    gc.collect()
    return statistics.median(times)


def time_evotorch(algo: str, dim: int, popsize: int, repeats: int, warmup: int = 2) -> float | None:
    try:
        from evotorch import Problem
        from evotorch.algorithms import CMAES, SNES
    except Exception:  # evotorch is an optional extra
        return None

    # ask/tell-style: the problem's evaluation is a vectorised sphere, timed separately below
    prob = Problem("min", lambda x: x.square().sum(-1), solution_length=dim,
                   initial_bounds=(-1, 1), vectorized=True)  # fmt: skip
    if algo == "snes":
        searcher = SNES(prob, stdev_init=0.1, popsize=popsize)
    else:
        searcher = CMAES(prob, stdev_init=0.1, popsize=popsize)
    times = []
    for i in range(warmup + repeats):
        t0 = time.perf_counter()
        searcher.step()  # sample + evaluate + update
        t1 = time.perf_counter()
        if i >= warmup:
            times.append(t1 - t0)
    # subtract the sphere evaluation itself so the numbers compare with ours
    x = torch.randn(popsize, dim)
    t0 = time.perf_counter()
    for _ in range(5):
        x.square().sum(1)
    evalt = (time.perf_counter() - t0) / 5
    return max(statistics.median(times) - evalt, 0.0)


def fmt(t: float | None) -> str:
    if t is None:
        return "—"
    return f"{t * 1e3:.2f} ms" if t < 1 else f"{t:.2f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--popsize", type=int, default=256)
    ap.add_argument("--dims", type=int, nargs="+", default=[128, 1_000_000])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats-small", type=int, default=30)
    ap.add_argument("--repeats-large", type=int, default=5)
    ap.add_argument(
        "--only", nargs="+", default=None, help="strategy names (or evotorch) to time; default all"
    )
    ap.add_argument("--no-evotorch", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    p = args.popsize

    rows: list[tuple[str, dict[int, str]]] = []
    cases: list[tuple[str, str, dict]] = [(n, n, {}) for n in list_strategies()]
    cases.append(("eggroll (1000×1000, r=1)", "eggroll", {"shapes": "square"}))
    if args.only:
        cases = [c for c in cases if c[1] in args.only]
    for label, name, hp in cases:
        cells: dict[int, str] = {}
        for d in args.dims:
            big = d >= 100_000
            hp_d = dict(hp)
            if hp_d.get("shapes") == "square":
                side = int(round(d**0.5))
                if side * side != d:
                    cells[d] = "n/a (d not square)"
                    continue
                hp_d["shapes"] = [(side, side)]
            if big and name == "cma_es":
                cells[d] = "skipped: d×d covariance (8 TB)"
                continue
            if big and name == "map_elites":
                hp_d["grid_shape"] = (8, 8)
            reps = args.repeats_large if big else args.repeats_small
            t = time_strategy(lambda n=name, d=d, h=hp_d: get_strategy(n, d, p, **h), d, reps)
            cells[d] = fmt(t) + (" (8×8 grid)" if big and name == "map_elites" else "")
            print(f"{label:28s} d={d:>8d}  {cells[d]}", flush=True)
        rows.append((label, cells))
    use_evotorch = not args.no_evotorch and (not args.only or "evotorch" in args.only)
    for algo in ("snes", "cma_es") if use_evotorch else ():
        cells = {}
        for d in args.dims:
            if algo == "cma_es" and d >= 100_000:
                cells[d] = "skipped"
                continue
            reps = args.repeats_large if d >= 100_000 else args.repeats_small
            t = time_evotorch(algo, d, p, reps)
            if t is None:
                break
            cells[d] = fmt(t) + " (step − eval)"
            print(f"evotorch {algo:19s} d={d:>8d}  {cells[d]}", flush=True)
        if cells:
            rows.append((f"evotorch {algo}", cells))

    head = "| strategy | " + " | ".join(f"d = {d:,}" for d in args.dims) + " |"
    sep = "|---|" + "---|" * len(args.dims)
    body = [
        f"| {label} | " + " | ".join(c.get(d, "—") for d in args.dims) + " |" for label, c in rows
    ]
    table = "\n".join([head, sep, *body])
    print("\n" + table)
    cmd = "python " + " ".join([sys.argv[0], *sys.argv[1:]])
    text = (
        "# Strategy overhead: ask + tell per generation\n\n"
        f"Population P = {p}; median over {args.repeats_small} (small d) / {args.repeats_large} "
        "(d = 1e6) generations after 2 warm-up generations; the fitness evaluation is not "
        "timed. float32.\n\n"
        f"- machine: {args.threads}-core CPU ({platform.processor() or platform.machine()}), "
        f"torch.set_num_threads({args.threads}), shared with other jobs (timings are noisy)\n"
        f"- command: `{cmd}`\n- torch {torch.__version__}, Python {platform.python_version()}\n\n"
        f"{table}\n"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
