"""`latent-evo bench speed`: population-evaluation and decode throughput (see `latent_evo.benchmarks.cli`)."""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from latent_evo.benchmarks.common import PeakRSS, median_time, provenance, provenance_md

# ---------------------------------------------------------------------------------- speed
SPEED_TASKS = ("mnist1d-mlp", "digits-resnet8", "text-lstm", "text-gpt2-tiny")
QUICK_SPEED_TASKS = ("mnist1d-mlp", "text-gpt2-tiny")


def _mlp(sizes: tuple[int, ...]) -> nn.Module:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def decode_specs(quick: bool) -> list[tuple[str, Callable[[], Any], list[int | None]]]:
    """(label, spec builder, block sizes) from ~10k to 124M params."""
    from latent_evo.genome import GenomeSpec

    def mlp_spec(sizes):
        return lambda: GenomeSpec.from_module(_mlp(sizes))

    def gpt2():
        from latent_evo.models import GPT2, GPT2Config

        with torch.device("meta"):  # shapes only: no 500 MB of weights to build a spec
            return GenomeSpec.from_module(GPT2(GPT2Config()))

    cases = [
        ("MLP 40-200-10", mlp_spec((40, 200, 10)), [None]),
        ("MLP 40-300-300-10", mlp_spec((40, 300, 300, 10)), [None, 4096]),
        ("MLP 40-1000-1000-10", mlp_spec((40, 1000, 1000, 10)), [None, 4096, 65536]),
    ]
    if not quick:
        cases.insert(3, ("MLP 40-3000-3000-10", mlp_spec((40, 3000, 3000, 10)), [4096, 65536]))
    cases.append(("GPT-2 124M", gpt2, [65536] if quick else [16384, 65536, 262144]))
    return cases


def _sync(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def speed_throughput(
    task_name: str,
    pops: list[int],
    repeats: int,
    device: torch.device,
    rows: list,
    write,
    compressor: str | None = None,
) -> None:
    from latent_evo.compressor.attention import Compressor
    from latent_evo.compressor.tokenizer import Tokenizer
    from latent_evo.tasks import get_task

    task = get_task(task_name).to(device) if device.type != "cpu" else get_task(task_name)
    task.to(device)
    gen = torch.Generator().manual_seed(0)
    bs = 16 if task.kind == "lm" else 1000
    x, y = task.sample_batch(gen, bs)
    batch = (x.to(device), y.to(device))
    torch.manual_seed(0)
    comp = Compressor.from_tokenizer(Tokenizer(task.spec, 64))
    if compressor is not None:
        from latent_evo.compressor.hub import load_compressor

        saved = load_compressor(compressor)
        if saved.spec == task.spec:
            comp = saved
    comp = comp.to(device).eval()
    label = compressor if comp.spec == task.spec and compressor is not None else "untrained default"
    model = copy.deepcopy(task.model).to(device).eval()
    sync = _sync(device)
    for P in pops:
        z = comp.sample(P, torch.Generator(device).manual_seed(0)).to(device)
        genomes = task.init_genomes(P, gen).to(device)

        def latent(z=z):
            return task.fitness_genomes(comp.decode_genomes(z), batch)

        def direct(genomes=genomes):
            return task.fitness_genomes(genomes, batch)

        def loop(genomes=genomes):  # what a per-module evolution loop does each generation
            out = []
            for g in genomes:
                model.load_state_dict(task.spec.unflatten(g), strict=False)
                out.append(task.loss_fn(model(x.to(device)), y.to(device)))
            return torch.stack(out)

        with torch.no_grad():
            torch.testing.assert_close(direct(), loop(), rtol=1e-3, atol=1e-4)
            t_dec = median_time(lambda z=z: comp.decode_genomes(z), repeats, sync)
            t_lat = median_time(latent, repeats, sync)
            t_dir = median_time(direct, repeats, sync)
            t_loop = median_time(loop, repeats, sync)
        rows.append(
            {
                "task": task_name,
                "params": task.spec.numel,
                "P": P,
                "batch": bs,
                "latent_gps": P / t_lat,
                "decode_gps": P / t_dec,
                "direct_gps": P / t_dir,
                "loop_gps": P / t_loop,
                "device": str(device),
                "compressor": f"{label} ({type(comp).__name__})",
            }
        )
        print(rows[-1], flush=True)
        write()


def speed_decode(
    quick: bool, repeats: int, device: torch.device, rows: list, write, max_params: float
) -> None:
    from latent_evo.compressor.attention import Compressor, CompressorConfig

    sync = _sync(device)
    for label, build, blocks in decode_specs(quick):
        spec = build()
        if spec.numel > max_params:
            continue
        torch.manual_seed(0)
        comp = Compressor(CompressorConfig(genome_spec=spec.to_dict())).to(device).eval()
        z = comp.sample(1, torch.Generator(device).manual_seed(0)).to(device)
        big = spec.numel > 5_000_000
        for block in blocks:
            reps = 1 if big else repeats
            with torch.no_grad():
                with PeakRSS(device) as mem:  # the first call at this block size (cold)
                    t = time.perf_counter()
                    out = comp.decode_genomes(z, block_size=block)
                    sync()
                    times = [time.perf_counter() - t]
                    del out
                if not big:  # timed repeats after the warm-up call above
                    times = []
                    for _ in range(reps):
                        t = time.perf_counter()
                        out = comp.decode_genomes(z, block_size=block)
                        sync()
                        times.append(time.perf_counter() - t)
                        del out
            sec = statistics.median(times)
            rows.append(
                {
                    "spec": label,
                    "params": spec.numel,
                    "block": block,
                    "sec": sec,
                    "params_per_s": spec.numel / sec,
                    "peak_bytes": mem.peak,
                    "output_bytes": spec.numel * 4,
                    "repeats": reps,
                    "device": str(device),
                }
            )
            print(rows[-1], flush=True)
            write()
        del comp


def speed_report(prov: dict, thr_rows: list, dec_rows: list) -> str:
    lines = [
        "# Speed benchmark (`latent-evo bench speed`)",
        "",
        *provenance_md(prov),
        "- population throughput: genomes/s (median over repeats, higher is better), each "
        "population's three paths timed in the same process on the same batch (MNIST-1D and "
        "digits tasks: 1,000 samples; text tasks: 16 windows). *latent* = "
        "`Compressor.decode_genomes(z)` + `Task.fitness_genomes` (chunked `vmap(functional_call)`); "
        "*direct* = `Task.fitness_genomes` on the flat genomes; *loop* = one `nn.Module`, "
        "`load_state_dict` + forward per genome (the per-module Python loop). The compressor is "
        "the default `CompressorConfig` at chunk 64 with untrained weights (cost does not depend "
        "on them), unless the row's compressor column names a saved one (`--compressor`).",
        "",
        "| task | params | P | latent genomes/s | (decode only) | direct vmapped genomes/s "
        "| per-module loop genomes/s | direct / loop | latent / direct | compressor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in thr_rows:
        lines.append(
            f"| {r['task']} | {r['params']:,} | {r['P']} | {r['latent_gps']:,.0f} | "
            f"{r['decode_gps']:,.0f} | {r['direct_gps']:,.0f} | {r['loop_gps']:,.0f} | "
            f"{r['direct_gps'] / r['loop_gps']:.2f}x | {r['latent_gps'] / r['direct_gps']:.2f}x | "
            f"{r.get('compressor', 'untrained default')} |"
        )
    lines += [
        "",
        "## Decode throughput and peak memory (one latent, default `CompressorConfig`)",
        "",
        "Decode time: median of the repeats after one warm-up call (GPT-2 124M: the single cold "
        "call). Peak memory = growth of the process's resident set during the first (cold) "
        "decode call at that block size, sampled every 2 ms from `/proc/self/statm` (CPU; on "
        "CUDA: `max_memory_allocated` growth); it includes the emitted genome itself (output "
        "column) and the decoder's query cache when it is filled; memory the allocator kept "
        "from an earlier call of the same spec is not counted, so later block sizes of one spec "
        "can read low. Block = tokens decoded at once (`decode_genomes(block_size=...)`; default "
        "= the compressor's). GPT-2 124M's spec is built on the `meta` device (no weights "
        "allocated).",
        "",
        "| genome | params | block (tokens) | decode s | params/s | peak memory | output |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in dec_rows:
        lines.append(
            f"| {r['spec']} | {r['params']:,} | {r['block'] or 'default'} | {r['sec']:.3f} | "
            f"{r['params_per_s']:.3g} | {r['peak_bytes'] / 2**20:,.1f} MiB | "
            f"{r['output_bytes'] / 2**20:,.1f} MiB |"
        )
    return "\n".join(lines) + "\n"


def run_speed(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    device = torch.device(args.device if args.device != "auto" else
                          ("cuda" if torch.cuda.is_available() else "cpu"))  # fmt: skip
    prov = provenance(argv, "latent-evo bench speed")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tasks = args.tasks.split(",") if args.tasks else list(
        QUICK_SPEED_TASKS if args.quick else SPEED_TASKS
    )  # fmt: skip
    pops = [int(p) for p in args.pops.split(",")] if args.pops else (
        [64, 256] if args.quick else [64, 256, 1024]
    )  # fmt: skip
    thr: list = []
    dec: list = []
    md, js = out / f"speed{args.suffix}.md", out / f"speed{args.suffix}.json"

    def write() -> None:
        prov["load_avg_end"] = os.getloadavg()[0]
        md.write_text(speed_report(prov, thr, dec))
        js.write_text(json.dumps({"provenance": prov, "throughput": thr, "decode": dec}, indent=1))

    if "throughput" not in args.parts and js.exists():  # re-running one part keeps the other
        old = json.loads(js.read_text())
        thr.extend(old.get("throughput", []))
        prov["command"] += f" (throughput rows from: {old['provenance']['command']}, " + (
            f"commit {old['provenance']['commit']}, started {old['provenance']['started']})"
        )
    if "throughput" in args.parts:
        for t in tasks:
            speed_throughput(
                t, pops, args.repeats, device, thr, write, getattr(args, "compressor", None)
            )
    if "decode" in args.parts:
        speed_decode(args.quick, args.repeats, device, dec, write, args.max_decode_params)
    write()
    print(md.read_text())
    return {"throughput": thr, "decode": dec}
