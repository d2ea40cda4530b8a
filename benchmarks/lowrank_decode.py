"""GPT-2-124M in the low-rank decoding mode: decode one code into factors, materialise, search state.

    python -m latent_evo.benchmarks.lowrank_decode [--rank 8] [--repeats 5] [--pop 1024]

One process, one thread (CPU) or the GPU with `--device cuda`:
(a) an attention compressor over rank-r adapters of all 48 block matrices (the configuration of
    configs/pretrain/text-gpt2-mini-lora.yaml: s = 8 x 8, chunks of 256) decodes one code into
    the factors (A_l, B_l) of every matrix: `decode_genomes` + the view as factors; median wall
    time of `--repeats` calls after a warm one. The compressor is untrained: decode costs the
    same whatever its weights;
(b) materialising the full 124M state dict from those factors around the base network;
(c) the search state for a population of `--pop` members: latent CMA-ES (its state + the
    population's codes + one pass of decoded factors, `members_per_pass` members at a time) and
    direct EGGROLL over the factors (its state + the population it asks for), in bytes.
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


def _nbytes(obj) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_nbytes(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(_nbytes(v) for v in obj)
    return 0


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--pop", type=int, default=1024)
    p.add_argument("--members-per-pass", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    prov = provenance(
        sys.argv[1:] if argv is None else argv, "python -m latent_evo.benchmarks.lowrank_decode"
    )
    from latent_evo.compressor.attention import Compressor
    from latent_evo.compressor.tokenizer import Tokenizer
    from latent_evo.models import GPT2, GPT2Config
    from latent_evo.models.lowrank import linear_layers, materialize
    from latent_evo.strategies import get_strategy
    from latent_evo.tasks.lora import LowRankNetwork

    dev = torch.device(args.device)
    torch.manual_seed(0)
    model = GPT2(GPT2Config()).eval()  # 124M; the values do not change any cost measured here
    layers = linear_layers(model, "transformer.h.")
    net = LowRankNetwork(model, layers, args.rank)
    holder = torch.nn.Module()
    holder.adapters = net.adapters
    from latent_evo.genome import GenomeSpec

    spec = GenomeSpec.from_module(holder)
    g = torch.Generator().manual_seed(0)
    sample = 0.02 * torch.randn(4, spec.numel, generator=g)  # for the normalisation statistics
    tok = Tokenizer(spec, 256).fit_normalization(sample)
    comp = Compressor.from_tokenizer(tok, num_latents=8, latent_dim=8).eval().to(dev)
    n_comp = sum(p.numel() for p in comp.parameters())
    z = torch.randn(1, comp.latent_size, generator=g).to(dev)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def factors_of(genome):  # (1, d) -> {layer: (A (1, out, r), B (1, in, r))}
        sd = spec.unflatten(genome)
        return {n: (sd[f"adapters.A.{i}"].mT, sd[f"adapters.B.{i}"].mT)  # stored (r, out) / (r, in)
                for i, n in enumerate(layers)}  # fmt: skip

    times = []
    with torch.no_grad():
        for rep in range(args.repeats + 1):
            sync()
            t0 = time.perf_counter()
            f = factors_of(comp.decode_genomes(z))
            sync()
            if rep:
                times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        sd = materialize(model.to(dev), {k: (a, b) for k, (a, b) in f.items()}, 0)
        sync()
        t_mat = time.perf_counter() - t0
        del sd

    # search state for `pop` members, by what each strategy holds after one ask
    s = comp.latent_size
    cma = get_strategy("cma_es", s, popsize=args.pop, seed=0)
    codes = cma.ask()
    pass_bytes = args.members_per_pass * spec.numel * 4  # one pass of decoded factors
    latent_state = _nbytes(cma.state_dict()) + _nbytes(codes) + pass_bytes
    d = spec.numel
    eggroll_state = None
    try:
        from latent_evo.evolution.spaces import tensor_shapes

        egg = get_strategy("eggroll", d, popsize=args.pop, seed=0, shapes=tensor_shapes(spec))
        population = egg.ask()  # (P, d): what every direct strategy hands to the evaluation
        eggroll_state = _nbytes(egg.state_dict()) + _nbytes(population)
        del population
    except (MemoryError, RuntimeError) as e:  # pragma: no cover - machines with little memory
        eggroll_state = f"not measured: {e}"
    res = {
        "params": sum(p.numel() for p in model.parameters()), "matrices": len(layers),
        "rank": args.rank, "factor_values": d, "compressor_params": n_comp,
        "latent_size": s, "tokens": tok.num_tokens, "device": str(dev), "threads": args.threads,
        "decode_s": statistics.median(times), "decode_times": times, "materialize_s": t_mat,
        "pop": args.pop, "latent_state_bytes": latent_state, "eggroll_state_bytes": eggroll_state,
        "members_per_pass": args.members_per_pass, "provenance": prov,
    }  # fmt: skip
    prov["load_avg_end"] = __import__("os").getloadavg()[0]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"lowrank_decode_gpt2_124m_{dev.type}"
    (out / f"{stem}.json").write_text(json.dumps(res, indent=1))
    (out / f"{stem}.md").write_text(_markdown(res))
    print(json.dumps({k: v for k, v in res.items() if k != "provenance"}, indent=1))
    return res


def _markdown(r: dict) -> str:
    gib = 2**30
    egg = r["eggroll_state_bytes"]
    egg_s = f"{egg / gib:.2f} GiB" if isinstance(egg, int) else egg
    return "\n".join([
        "# GPT-2-124M, low-rank decoding mode: decode, materialise, search state", "",
        *provenance_md(r["provenance"]), "",
        f"Rank-{r['rank']} factors of all {r['matrices']} block matrices ({r['factor_values']:,} "
        f"values per member); attention compressor with s = {r['latent_size']}, "
        f"{r['tokens']:,} tokens of 256 values, {r['compressor_params']:,} parameters; "
        f"{r['device']}, {r['threads']} thread(s).", "",
        "| what | measured | target |", "|---|---:|---:|",
        f"| decode one code into all factors (median of {len(r['decode_times'])}) | "
        f"{r['decode_s']:.3f} s | <= 1 s |",
        f"| materialise the full genome from them | {r['materialize_s']:.2f} s | <= 5 s |",
        f"| search state, latent CMA-ES, P = {r['pop']:,} (state + codes + one pass of "
        f"{r['members_per_pass']} members' factors) | {r['latent_state_bytes'] / 2**20:.1f} MiB | "
        "< 1 GB |",
        f"| search state, direct EGGROLL over the factors, P = {r['pop']:,} (state + the (P, d) "
        f"population) | {egg_s} | < 1 GB |", "",
    ])  # fmt: skip


if __name__ == "__main__":
    main()
