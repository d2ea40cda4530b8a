"""GPT-2 population with low-rank deltas vs the base model's plain batched inference.

    python -m latent_evo.benchmarks.lowrank_gpt2 [--preset 124m] [--pop 16] [--seqs 4] [--tokens 128]
        [--rank 8] [--repeats 3] [--weights gpt2/model.safetensors] [--device cpu|cuda]

Side by side in one process, on the same token batch: (a) the base model on b = pop * seqs
sequences (plain batched inference), (b) a population of `pop` members, each the base with a
rank-r delta on all 4 projections of every block (48 matrices for 124M), each member on the
same `seqs` sequences, through `latent_evo.models.lowrank` (no member's weights are built), and
(c) materialising one member's full state dict from its factors. Reports median wall times,
throughput ratio (b)/(a) in tokens/s, and peak resident memory growth per path (CPU; CUDA:
max_memory_allocated). Weights: the public GPT-2 safetensors when `--weights` names a local
file, else a seeded random init with GPT-2's shapes (the cost does not depend on the values).
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from pathlib import Path

import torch

from latent_evo.benchmarks.common import provenance


class PeakRSS:
    """Peak growth of the process's resident set while the block runs (sampled every 2 ms)."""

    def __enter__(self):
        self.base = self._rss()
        self.peak = self.base
        self._stop = False
        self._t = threading.Thread(target=self._watch, daemon=True)
        self._t.start()
        return self

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    def _watch(self):
        while not self._stop:
            self.peak = max(self.peak, self._rss())
            time.sleep(0.002)

    def __exit__(self, *exc):
        self._stop = True
        self._t.join()
        self.growth_mb = (self.peak - self.base) / 2**20


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="124m", help="124m, or a GPT2_PRESETS name (tiny, small)")
    p.add_argument("--pop", type=int, default=16)
    p.add_argument("--seqs", type=int, default=4, help="sequences per member")
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--weights", default=None, help="local GPT-2 safetensors (public names)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--chunk", type=int, default=0, help="members per forward (0 = all at once)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    import sys

    prov = provenance(
        sys.argv[1:] if argv is None else argv, "python -m latent_evo.benchmarks.lowrank_gpt2"
    )
    from latent_evo.models import GPT2, GPT2Config
    from latent_evo.models.lowrank import (
        layer_dims,
        linear_layers,
        low_rank_population,
        materialize,
    )

    dev = torch.device(args.device)
    cfg = GPT2Config() if args.preset == "124m" else GPT2Config.preset(args.preset)
    torch.manual_seed(0)
    model = GPT2(cfg).eval()
    if args.weights:
        from latent_evo.models import load_gpt2_state_dict

        model.load_state_dict(load_gpt2_state_dict(args.weights), strict=False)
    dtype = getattr(torch, args.dtype)
    model.to(dev, dtype)
    names = linear_layers(model, include="transformer.h.")
    g = torch.Generator().manual_seed(1)
    factors = {}
    for name in names:
        n_in, n_out = layer_dims(model, name)
        a = 0.01 * torch.randn(args.pop, n_out, args.rank, generator=g)
        b = 0.01 * torch.randn(args.pop, n_in, args.rank, generator=g)
        factors[name] = (a.to(dev, dtype), b.to(dev, dtype))
    factor_mb = sum(a.numel() + b.numel() for a, b in factors.values()) * 4 / 2**20
    idx = torch.randint(0, cfg.vocab_size, (args.seqs, args.tokens), generator=g).to(dev)
    chunk = args.chunk or args.pop  # members per forward: bounds the logits' memory
    base_idx = idx.repeat(chunk, 1)  # the same chunk * seqs sequences for both paths

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def run_base():  # plain batched inference over the same pop * seqs sequences
        return [model(base_idx[: (min(c + chunk, args.pop) - c) * args.seqs]).float().mean()
                for c in range(0, args.pop, chunk)]  # fmt: skip

    def run_pop():
        out = []
        for c in range(0, args.pop, chunk):
            part = {k: (a[c : c + chunk], b[c : c + chunk]) for k, (a, b) in factors.items()}
            n = min(c + chunk, args.pop) - c
            with low_rank_population(model, part):
                out.append(model(base_idx[: n * args.seqs]).float().mean())
        return out

    times = {"base": [], "population": []}
    mem = {}
    with torch.no_grad():
        for rep in range(args.repeats + 1):
            for key, fn in (("base", run_base), ("population", run_pop)):
                if dev.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(dev)
                    m0 = torch.cuda.memory_allocated(dev)
                with PeakRSS() as rss:
                    sync()
                    t0 = time.perf_counter()
                    out = fn()
                    sync()
                    dt = time.perf_counter() - t0
                del out
                if rep == 0:  # the cold call: its memory growth is the path's peak
                    mem[key] = (
                        (torch.cuda.max_memory_allocated(dev) - m0) / 2**20
                        if dev.type == "cuda"
                        else rss.growth_mb
                    )
                else:
                    times[key].append(dt)
        t0 = time.perf_counter()
        sd = materialize(model, factors, 0)
        t_mat = time.perf_counter() - t0
        del sd
    tokens = args.pop * args.seqs * args.tokens
    med = {k: statistics.median(v) for k, v in times.items()}
    res = {
        "preset": args.preset, "params": sum(p.numel() for p in model.parameters()),
        "matrices": len(names), "pop": args.pop, "seqs": args.seqs, "tokens": args.tokens,
        "rank": args.rank, "device": str(dev), "threads": args.threads, "chunk": chunk,
        "dtype": args.dtype,
        "base_s": med["base"], "population_s": med["population"],
        "base_tokens_per_s": tokens / med["base"], "population_tokens_per_s": tokens / med["population"],
        "ratio": med["base"] / med["population"], "materialize_one_s": t_mat,
        "peak_mb": mem, "factors_mb_all_members": factor_mb,
        "model_mb": sum(p.numel() for p in model.parameters()) * 4 / 2**20,
        "times": times, "provenance": prov,
    }  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"lowrank_gpt2_{args.preset}_{dev.type}" + (f"_p{args.pop}" if args.pop != 16 else "")
    prov["load_avg_end"] = __import__("os").getloadavg()[0]
    (out / f"{stem}.json").write_text(json.dumps(res, indent=1))
    (out / f"{stem}.md").write_text(_markdown(res))
    print(json.dumps({k: v for k, v in res.items() if k not in ("times", "provenance")}, indent=1))
    return res


def _markdown(r: dict) -> str:
    from latent_evo.benchmarks.common import provenance_md

    per_member = (r["peak_mb"]["population"] - r["peak_mb"]["base"]) / r["pop"]
    return "\n".join([
        "# GPT-2 population with low-rank deltas (`latent_evo.models.lowrank`)", "",
        *provenance_md(r["provenance"]), "",
        f"GPT-2 {r['preset']} ({r['params']:,} parameters), {r['matrices']} block matrices with a "
        f"rank-{r['rank']} delta per member, P = {r['pop']} members x {r['seqs']} sequences x "
        f"{r['tokens']} tokens, {r['device']}, {r['threads']} thread(s), {r.get('dtype', 'float32')}, "
        f"{r.get('chunk', r['pop'])} members per forward; medians of "
        f"{len(r['times']['base'])} repeats after a cold call, both paths alternating in one process.", "",
        "| path | wall s | tokens/s | peak memory growth (cold call) |",
        "|---|---:|---:|---:|",
        f"| base model, plain batched inference ({r['pop'] * r['seqs']} sequences) | {r['base_s']:.2f} | "
        f"{r['base_tokens_per_s']:,.0f} | {r['peak_mb']['base']:,.0f} MiB |",
        f"| population, low-rank deltas applied on the fly | {r['population_s']:.2f} | "
        f"{r['population_tokens_per_s']:,.0f} | {r['peak_mb']['population']:,.0f} MiB |", "",
        f"- throughput ratio population / base: **{r['ratio']:.3f}x**",
        f"- extra peak memory per member over the base pass: {per_member:,.1f} MiB (a negative "
        "value is measurement noise: both passes peak at their activations and logits)",
        f"- what each member costs to hold: its factors, {r['factors_mb_all_members'] / r['pop']:,.1f} "
        f"MiB = {100 * r['factors_mb_all_members'] / r['pop'] / r['model_mb']:.2f} % of the model's "
        f"weights ({r['model_mb']:,.0f} MiB); a materialised member would be a full copy",
        f"- materialising one member's full state dict from its factors: {r['materialize_one_s']:.2f} s",
        "",
    ])  # fmt: skip


if __name__ == "__main__":
    main()
