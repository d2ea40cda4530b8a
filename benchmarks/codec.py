"""Codec speed: flatten -> tokenize -> detokenize -> unflatten of torchvision resnet18.

Times each stage over repeats (median) for a single genome and a small population, at chunk sizes
64 and 1024, with fitted (non-identity) normalisation so the affine step is real. Prints a markdown
table and writes it to benchmarks/results/codec.md (recorded, not asserted).

    .venv/bin/python -m latent_evo.benchmarks.codec [--repeats 7] [--pop 1 8] [--chunks 64 1024]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision

from latent_evo.benchmarks.common import cpu_name
from latent_evo.compressor.tokenizer import Tokenizer
from latent_evo.genome import GenomeSpec

RESULTS = Path(__file__).resolve().parent / "results" / "codec.md"


def median_time(
    fn: Callable[[], object], repeats: int, device: torch.device
) -> tuple[float, float]:
    """Median wall time and median process CPU time of `fn`, in seconds, after a warm-up call.
    CPU time (all threads) is the figure to trust when other jobs share the cores."""
    fn()
    walls, cpus = [], []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--pop", type=int, nargs="+", default=[1, 8], help="population sizes P")
    ap.add_argument("--chunks", type=int, nargs="+", default=[64, 1024], help="chunk sizes")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's)"
    )
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)

    model = torchvision.models.resnet18().eval().to(device)
    spec = GenomeSpec.from_module(model)
    genome = spec.flatten(model.state_dict())  # (n,)
    n = spec.numel
    mb = n * genome.element_size() / 1e6  # one genome in MB
    print(f"resnet18: {spec}, {mb:.1f} MB per genome", flush=True)

    rows = []
    for chunk in args.chunks:
        t0 = time.perf_counter()
        tok = Tokenizer(spec, chunk).to(device)
        build_s = time.perf_counter() - t0
        zoo = genome + 0.01 * torch.randn(4, n, device=device)  # (4, n) stand-in for a model zoo
        t0 = time.perf_counter()
        tok.fit_normalization(zoo)
        fit_s = time.perf_counter() - t0
        fill = n / (tok.num_tokens * chunk)
        for P in args.pop:
            pop = genome + 0.01 * torch.randn(P, n, device=device)  # (P, n)
            state = spec.unflatten(pop)  # {name: (P, *shape)}, what a batched model would hold
            tokens = tok.tokenize(pop)  # (P, T, C)

            def flatten(state=state):
                return spec.flatten_batch(state)

            def tokenize(pop=pop, tok=tok):
                return tok.tokenize(pop)

            def detokenize(tokens=tokens, tok=tok):
                return tok.detokenize(tokens)

            def unflatten(pop=pop):
                return spec.unflatten(pop)

            def round_trip(state=state, tok=tok):
                return spec.unflatten(tok.detokenize(tok.tokenize(spec.flatten_batch(state))))

            err = float((tok.detokenize(tokens) - pop).abs().max())
            stage = {
                f.__name__: median_time(f, args.repeats, device)[0]
                for f in (flatten, tokenize, detokenize, unflatten)
            }
            total, total_cpu = median_time(round_trip, args.repeats, device)
            row = {
                "chunk": chunk,
                "P": P,
                "tokens": tok.num_tokens,
                "fill": fill,
                **stage,
                "total": total,
                "cpu": total_cpu,
                "mbps": P * mb / total,
                "err": err,
                "build": build_s,
                "fit": fit_s,
            }
            rows.append(row)
            print(
                f"chunk {chunk:5d} P {P:2d}: round trip {total * 1e3:8.1f} ms, {row['mbps']:7.0f} MB/s",
                flush=True,
            )

    header = (
        "| chunk | P | tokens T | fill | flatten ms | tokenize ms | detokenize ms | unflatten ms "
        "| round trip ms (median) | MB/s | round trip CPU ms | max abs err | tokenizer build s | fit (4 genomes) s |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    body = "".join(
        f"| {r['chunk']} | {r['P']} | {r['tokens']:,} | {r['fill']:.2%} | {r['flatten'] * 1e3:.1f} "
        f"| {r['tokenize'] * 1e3:.1f} | {r['detokenize'] * 1e3:.1f} | {r['unflatten'] * 1e3:.3f} "
        f"| **{r['total'] * 1e3:.1f}** | {r['mbps']:.0f} | {r['cpu'] * 1e3:.0f} | {r['err']:.1e} | {r['build']:.2f} | {r['fit']:.2f} |\n"
        for r in rows
    )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    hw = (
        f"{torch.cuda.get_device_name(device)}"
        if device.type == "cuda"
        else f"{os.cpu_count()}-core CPU ({cpu_name()}), no GPU, torch threads {torch.get_num_threads()}"
    )
    report = (
        "# Codec benchmark: resnet18 genome round trip\n\n"
        f"flatten (state dict -> genome) -> tokenize (normalised, fitted stats) -> detokenize -> "
        f"unflatten (zero-copy views), torchvision resnet18 with BatchNorm buffers: "
        f"n = {n:,} values ({mb:.1f} MB float32 per genome). Times are medians over "
        f"{args.repeats} repeats after a warm-up; MB/s = P x genome MB / round-trip time; CPU ms is process CPU time (all threads) per round trip. "
        "'fill' is the share of token slots holding values (the rest is per-row padding).\n\n"
        + header
        + body
        + "\n"
        f"- machine: {hw}; load average during the run: {load} (other jobs shared the cores)\n"
        f"- torch {torch.__version__}, torchvision {torchvision.__version__}, Python {platform.python_version()}\n"
        f"- reproduce: `.venv/bin/python -m latent_evo.benchmarks.codec --repeats {args.repeats} "
        f"--pop {' '.join(map(str, args.pop))} --chunks {' '.join(map(str, args.chunks))} --device {args.device}"
        + (f" --threads {args.threads}" if args.threads else "")
        + "`\n"
    )
    print("\n" + report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
