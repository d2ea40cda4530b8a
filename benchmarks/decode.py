"""Decode throughput and FLOPs per emitted parameter of the Compressor's hypernetwork decoder.

    .venv/bin/python -m latent_evo.benchmarks.decode [--quick]

Cases: the MNIST-1D MLP 40-256-256-10 (78,858 params) at P = 64 and 256 (cached queries, the
evolution hot path), and one latent decoded into a 124M-parameter GPT-2 genome, streamed in
blocks (the query cache would exceed its budget, so queries are recomputed per block). The
MLP baseline is timed for comparison. Measured FLOPs come from torch's FlopCounterMode (it counts
matmuls only, and skips SDPA on CPU). Writes benchmarks/results/decode.md.
"""

import argparse
import platform
import time
import tracemalloc
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from latent_evo.compressor.attention import Compressor, CompressorConfig
from latent_evo.compressor.mlp import MLPAutoencoder
from latent_evo.compressor.tokenizer import Tokenizer
from latent_evo.genome import GenomeSpec

OUT = Path(__file__).resolve().parent / "results" / "decode.md"


def mnist1d_spec() -> GenomeSpec:
    try:
        from latent_evo.models import MLP

        return GenomeSpec.from_module(MLP(40, (256, 256), 10))
    except ImportError:
        return GenomeSpec.from_module(
            nn.Sequential(nn.Linear(40, 256), nn.Linear(256, 256), nn.Linear(256, 10))
        )


def gpt2_spec() -> GenomeSpec:
    from latent_evo.models import GPT2, GPT2Config

    with torch.device("meta"):  # shapes only: no 500 MB of weights to build a spec
        return GenomeSpec.from_module(GPT2(GPT2Config()))


def forward_flops_mlp(n_samples: int) -> float:
    return 2 * n_samples * (40 * 256 + 256 * 256 + 256 * 10)


def timed(fn, repeats: int) -> tuple[float, object]:
    out = fn()  # warm-up (and query cache fill)
    t0 = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    return (time.perf_counter() - t0) / repeats, out


def measure(comp, P: int, repeats: int, block_size=None) -> dict:
    comp.eval()
    z = comp.sample(P, torch.Generator().manual_seed(0))
    with torch.no_grad():
        comp.decode(z, block_size=block_size)
        with FlopCounterMode(display=False) as fc:
            comp.decode(z, block_size=block_size)
        tracemalloc.start()
        sec, _ = timed(lambda: comp.decode(z, block_size=block_size), repeats)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    n = comp.spec.numel
    return {
        "sec": sec,
        "gps": P / sec,
        "pps": P * n / sec,
        "measured": fc.get_total_flops() / (P * n),
        "peak": peak,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats, skip GPT-2")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    spec = mnist1d_spec()
    # tokens = rows (chunk 256 >= the longest row), as in configs/pretrain/mnist1d-mlp-wide-attention
    tok = Tokenizer(spec, 256)
    comp = Compressor.from_tokenizer(tok)
    base = MLPAutoencoder.from_tokenizer(tok)
    for P in (64, 256):
        for name, model in (("Compressor", comp), ("MLPAutoencoder (baseline)", base)):
            m = measure(model, P, 3 if args.quick else 10)
            rows.append((name, f"MLP 40-256-256-10 ({spec.numel:,})", P, m))
    if not args.quick:
        g = gpt2_spec()
        # one tokenizer: GBs of indices. No per-token bank: at 2M tokens it would hold 2B weights
        # (per-position capacity at this scale is the low-rank mode's job)
        big = Compressor(CompressorConfig(genome_spec=g.to_dict(), token_bank=False))
        m = measure(big, 1, 1, block_size=65536)
        rows.append(("Compressor (streamed, block 65,536)", f"GPT-2 124M ({g.numel:,})", 1, m))

    lines = [
        "# Decode benchmark",
        "",
        f"Machine: {platform.processor() or platform.machine()}, 2-core CPU "
        f"(torch threads={torch.get_num_threads()}), no GPU; torch {torch.__version__}, Python {platform.python_version()}.",
        f"Command: `.venv/bin/python -m latent_evo.benchmarks.decode{' --quick' if args.quick else ''}"
        f" --threads {args.threads}`. "
        "Default `CompressorConfig` (K=16 latents x 8 = s 128, d_model=64, decoder_dim=32, "
        "decoder_heads=2, one windowed token block, bank of 16 directions per token; MNIST-1D: "
        "chunk 256 = one token per row); weights untrained (cost does not depend on them).",
        "",
        "FLOPs/param: matrix products counted by torch's FlopCounterMode (SDPA is uncounted on "
        "CPU; elementwise work is not counted). Peak memory: Python-side allocations (`tracemalloc`; "
        "torch CPU tensors are not traced by it, so for GPT-2 see the block-size bound instead).",
        "",
        "| model | genome | P | decode ms | genomes/s | params/s | matmul FLOPs/param |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, genome, P, m in rows:
        lines.append(
            f"| {name} | {genome} | {P} | {m['sec'] * 1e3:.1f} | {m['gps']:,.0f} | {m['pps']:.3g} | "
            f"{m['measured']:.0f} |"
        )
    dec = rows[0][3]["measured"] * spec.numel / 1e6
    fwd = forward_flops_mlp(1000) / 1e6
    lines += [
        "",
        f"Per MNIST-1D genome the attention decoder costs {dec:.1f} MFLOP of matrix products; the "
        f"network's own forward pass on 1,000 samples costs {fwd:.0f} MFLOP, so decoding is "
        f"{dec / fwd:.0%} of one fitness evaluation on 1,000 samples.",
    ]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
