"""Population-evaluation throughput: chunked `vmap(functional_call)` vs a loop over `nn.Module`s.

    .venv/bin/python -m latent_evo.benchmarks.tasks_throughput [--repeats 5] [--quick]

Writes benchmarks/results/tasks.md: genomes/s (median over repeats) for `mnist1d-mlp` on a
1000-sample batch and `text-gpt2-tiny`, at P = 64, 256, 1024, plus a chunk-size sweep that backs
the chunking rule in `SupervisedTask.auto_chunk_size`. Both paths run under `torch.no_grad()`; the loop's
modules are built and loaded before timing, so it measures forward + loss only.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from latent_evo.tasks import SupervisedTask, get_task


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up: allocator, vmap tracing of shapes
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def loop_models(task: SupervisedTask, genomes: torch.Tensor) -> list[torch.nn.Module]:
    models = []
    for g in genomes:
        m = copy.deepcopy(task.model)
        m.load_state_dict(task.spec.unflatten(g), strict=False)
        models.append(m.eval())
    return models


def bench_task(task: SupervisedTask, batch, populations, repeats: int, rows: list, write):
    gen = torch.Generator().manual_seed(0)
    for p in populations:
        genomes = task.init_genomes(p, gen)
        models = loop_models(task, genomes)
        x, y = batch

        def run_loop(models=models, x=x, y=y):
            return torch.stack([task.loss_fn(m(x), y) for m in models])

        def run_vmap(genomes=genomes):
            return task.fitness_genomes(genomes, batch)

        with torch.no_grad():
            torch.testing.assert_close(run_vmap(), run_loop(), rtol=1e-4, atol=1e-5)
            t_loop = median_time(run_loop, repeats)
            t_vmap = median_time(run_vmap, repeats)
        chunk = task.chunk_size or task.auto_chunk_size(p, len(x))
        rows.append((task.name, p, chunk, p / t_vmap, p / t_loop, t_loop / t_vmap))
        print(rows[-1], flush=True)
        write()


def sweep(task: SupervisedTask, batch, p: int, chunks, repeats: int, out: list, write):
    genomes = task.init_genomes(p, torch.Generator().manual_seed(0))
    auto = task.auto_chunk_size(p, len(batch[0]))
    for c in [*chunks, auto]:
        task.chunk_size = c
        with torch.no_grad():
            t = median_time(lambda: task.fitness_genomes(genomes, batch), repeats)
        out.append((c, c == auto, p / t))
        print(out[-1], flush=True)
        write()
    task.chunk_size = None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="fewer populations (smoke test)")
    ap.add_argument("--gpt-pops", default="64,256,1024", help="populations for text-gpt2-tiny")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "tasks.md"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    pops = (64, 256) if args.quick else (64, 256, 1024)
    load0 = os.getloadavg()[0]

    rows: list = []
    sweep_rows: list = []
    out = Path(args.out)

    def write():  # after every row, so an interrupted run still leaves its results
        load1 = os.getloadavg()[0]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report(args, rows, sweep_rows, load0, load1))

    mlp = get_task("mnist1d-mlp")
    mlp_batch = mlp.sample_batch(torch.Generator().manual_seed(0), batch_size=1000)
    bench_task(mlp, mlp_batch, pops, args.repeats, rows, write)
    gpt = get_task("text-gpt2-tiny")
    gpt_batch = gpt.sample_batch(torch.Generator().manual_seed(0), batch_size=16)  # 16 x 64 chars
    gpt_pops = [int(p) for p in args.gpt_pops.split(",")]
    bench_task(gpt, gpt_batch, gpt_pops, args.repeats, rows, write)
    sweep(mlp, mlp_batch, 256, (1, 4, 8, 16, 32, 64, 256), args.repeats, sweep_rows, write)
    print(out.read_text())


def report(args, rows, sweep_rows, load0, load1) -> str:
    cpu = platform.processor() or platform.machine()
    lines = [
        "# Task population-evaluation throughput",
        "",
        f"- command: `.venv/bin/python -m latent_evo.benchmarks.tasks_throughput {' '.join(sys.argv[1:])}`",
        f"- machine: {os.cpu_count()}-core CPU ({cpu}), `torch.set_num_threads(2)`, no GPU",
        f"- torch {torch.__version__}, Python {platform.python_version()}",
        f"- 1-min load average {load0:.1f} at start, {load1:.1f} at end (other jobs shared the "
        "2 cores: absolute numbers are noisy, ratios are from the same run)",
        "- vmap = `SupervisedTask.fitness_genomes` (chunked `vmap(functional_call)`); loop = one prebuilt "
        "`nn.Module` per genome; median over repeats; genomes/s, higher is better",
        "- batches: mnist1d-mlp 1000 samples; text-gpt2-tiny 16 windows x 64 chars",
        "",
        "| task | P | chunk | vmap genomes/s | loop genomes/s | vmap / loop |",
        "|---|---:|---:|---:|---:|---:|",
        *(f"| {n} | {p} | {c} | {v:,.0f} | {lp:,.0f} | {r:.2f}x |" for n, p, c, v, lp, r in rows),
        "",
        "## Chunk-size sweep (mnist1d-mlp, P = 256, 1000-sample batch)",
        "",
        "| chunk | genomes/s |",
        "|---:|---:|",
        *(f"| {c}{' (auto)' if a else ''} | {g:,.0f} |" for c, a, g in sweep_rows),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
