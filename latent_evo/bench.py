"""`latent-evo bench speed|search`: the speed and search-efficiency benchmarks (issue 9).

    latent-evo bench speed  [--quick] [--repeats 5] [--out benchmarks/results]
    latent-evo bench search [--quick] [--seeds 0,1,2] [--budget 20000] [--methods all]
                            [--settings family,transfer] [--out benchmarks/results]

`benchmarks/speed.py` and `benchmarks/search.py` are thin wrappers around this module (all the
logic lives here). Every result file names the machine, the command and the git commit; timings
are medians over repeats and every ratio is measured within one process.

speed   population-evaluation throughput (genomes/s) of latent search (decode + vmapped forward)
        vs direct vmapped forward vs a per-module Python loop, per task and population size;
        decode throughput (params/s) and peak memory for genome specs from 10k to 124M params
        (GPT-2 124M built on the `meta` device: no weights allocated), with streaming blocks.
search  test accuracy vs true fitness evaluations of latent / direct strategies, SGD (Adam) and
        memorisation baselines, >= 3 seeds each, on the compressor's task family (`family`) and
        on a task the compressor never saw (`transfer`); table, curves (PNG) and JSON.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results"


# ---------------------------------------------------------------------------------- provenance
def provenance(argv: list[str], script: str) -> dict[str, Any]:
    def git(*a: str) -> str:
        try:
            return subprocess.run(
                ["git", *a], cwd=ROOT, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "unknown"

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "command": f"{script} {' '.join(argv)}".strip(),
        "commit": git("rev-parse", "--short", "HEAD") or "unknown",
        "dirty_files_of_others": bool(git("status", "--porcelain", "--untracked-files=no")),
        "machine": f"{os.cpu_count()}-core CPU ({platform.processor() or platform.machine()})"
        + (f", GPU {gpu}" if gpu else ", no GPU"),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_avg_start": os.getloadavg()[0],
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }


def provenance_md(prov: dict[str, Any]) -> list[str]:
    return [
        f"- command: `{prov['command']}`",
        f"- commit: `{prov['commit']}` (working tree shared with other engineers)",
        f"- machine: {prov['machine']}; torch {prov['torch']} with "
        f"`torch.set_num_threads({prov['torch_threads']})`, Python {prov['python']}",
        *([f"- merged: {prov['merged']}"] if "merged" in prov else []),
        *(
            [f"- tables re-rendered from the JSON by `{prov['rendered_by']}`"]
            if "rendered_by" in prov
            else []
        ),
        f"- started {prov['started']}; 1-min load average {prov['load_avg_start']:.1f} at start, "
        f"{prov.get('load_avg_end', float('nan')):.1f} at end",
    ]


def median_time(fn: Callable[[], Any], repeats: int, sync: Callable[[], None]) -> float:
    fn()  # warm-up: allocator, vmap tracing, decoder query cache
    sync()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


class PeakRSS:
    """Peak resident-set growth (bytes) over the block, sampled every 2 ms from /proc (CPU);
    on CUDA, `torch.cuda.max_memory_allocated` growth instead."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak = 0

    @staticmethod
    def _rss() -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            return 0

    def __enter__(self) -> PeakRSS:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
            return self
        self.base = self._rss()
        self._stop = threading.Event()
        self._max = self.base

        def sample() -> None:
            while not self._stop.is_set():
                self._max = max(self._max, self._rss())
                time.sleep(0.002)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.base
            return
        self._stop.set()
        self._thread.join()
        self.peak = max(self._max, self._rss()) - self.base


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
    task_name: str, pops: list[int], repeats: int, device: torch.device, rows: list, write
) -> None:
    from latent_evo.compressor import Compressor
    from latent_evo.tasks import get_task
    from latent_evo.tokenizer import Tokenizer

    task = get_task(task_name).to(device) if device.type != "cpu" else get_task(task_name)
    task.to(device)
    gen = torch.Generator().manual_seed(0)
    bs = 16 if task.kind == "lm" else 1000
    x, y = task.sample_batch(gen, bs)
    batch = (x.to(device), y.to(device))
    torch.manual_seed(0)
    comp = Compressor.from_tokenizer(Tokenizer(task.spec, 64)).to(device).eval()
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
            }
        )
        print(rows[-1], flush=True)
        write()


def speed_decode(
    quick: bool, repeats: int, device: torch.device, rows: list, write, max_params: float
) -> None:
    from latent_evo.compressor import Compressor, CompressorConfig

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
        "on them).",
        "",
        "| task | params | P | latent genomes/s | (decode only) | direct vmapped genomes/s "
        "| per-module loop genomes/s | direct / loop | latent / direct |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in thr_rows:
        lines.append(
            f"| {r['task']} | {r['params']:,} | {r['P']} | {r['latent_gps']:,.0f} | "
            f"{r['decode_gps']:,.0f} | {r['direct_gps']:,.0f} | {r['loop_gps']:,.0f} | "
            f"{r['direct_gps'] / r['loop_gps']:.2f}x | {r['latent_gps'] / r['direct_gps']:.2f}x |"
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
            speed_throughput(t, pops, args.repeats, device, thr, write)
    if "decode" in args.parts:
        speed_decode(args.quick, args.repeats, device, dec, write, args.max_decode_params)
    write()
    print(md.read_text())
    return {"throughput": thr, "decode": dec}


# ---------------------------------------------------------------------------------- search
SETTINGS = {
    "family": ("mnist1d-mlp", "the compressor's pretraining task family (fresh search seeds)"),
    "transfer": ("mnist1d-shift-mlp", "unseen task: MNIST-1D generated with different settings"),
}
POP = 32
SWITCH = {
    "enabled": True,
    "window": 8,
    "tol": 2e-3,
    "strategy": {"name": "openai_es", "popsize": POP, "hparams": {"sigma_init": 0.02, "lr": 0.01}},
}
DIRECT_CMA_MAX_DIM = 2000  # full-covariance CMA-ES: d x d matrix and O(d^2)+ work per generation


def evolve_methods() -> dict[str, dict[str, Any]]:
    """Every evolutionary method's `evolve` options (step sizes fixed a priori, not tuned here)."""
    cma = dict(mode="latent", strategy="cma_es", popsize=POP, strategy_hparams={"sigma_init": 0.5},
               init={"kind": "prior"})  # fmt: skip
    return {
        "latent-cma": cma,
        "latent-cma-switch": {**cma, "switch": SWITCH},
        "latent-ga": dict(mode="latent", strategy="ga", popsize=POP,
                          strategy_hparams={"mutation_sigma": 0.2}, init={"kind": "prior"}),
        "latent-openai-es": dict(mode="latent", strategy="openai_es", popsize=POP,
                                 strategy_hparams={"sigma_init": 0.1, "lr": 0.05},
                                 init={"kind": "prior"}),
        "latent-finetune": {**cma, "finetune": {"enabled": True, "every": 10, "steps": 10}},
        "latent-surrogate": {**cma, "popsize": 2 * POP,
                             "surrogate": {"enabled": True, "fraction": 0.5}},
        "direct-ga": dict(mode="direct", strategy="ga", popsize=POP,
                          strategy_hparams={"mutation_sigma": 0.02}, init={"kind": "task"}),
        "direct-snes": dict(mode="direct", strategy="snes", popsize=POP,
                            strategy_hparams={"sigma_init": 0.02}, init={"kind": "task"}),
        "direct-openai-es": dict(mode="direct", strategy="openai_es", popsize=POP,
                                 strategy_hparams={"sigma_init": 0.02, "lr": 0.01},
                                 init={"kind": "task"}),
        "direct-cma": dict(mode="direct", strategy="cma_es", popsize=POP,
                           strategy_hparams={"sigma_init": 0.02}, init={"kind": "task"}),
    }  # fmt: skip


BASELINES = ("sgd", "zoo-best", "zoo-best-noise", "zoo-avg-top", "prior-best-of-n")
ALL_METHODS = (*evolve_methods(), *BASELINES)
TRANSFER_QUICK = ("latent-cma-switch", "direct-openai-es", "sgd", "zoo-best")
LABELS = {
    "latent-cma": "latent CMA-ES",
    "latent-cma-switch": "latent CMA-ES + switch",
    "latent-ga": "latent GA",
    "latent-openai-es": "latent OpenAI-ES",
    "latent-finetune": "latent CMA-ES + online fine-tuning",
    "latent-surrogate": "latent CMA-ES + surrogate pre-screening",
    "direct-ga": "direct GA",
    "direct-snes": "direct SNES",
    "direct-openai-es": "direct OpenAI-ES",
    "direct-cma": "direct CMA-ES",
    "sgd": "SGD (Adam)",
    "zoo-best": "best zoo checkpoint",
    "zoo-best-noise": "best zoo checkpoint + Gaussian noise (σ tuned)",
    "zoo-avg-top": "average of top-k zoo checkpoints",
    "prior-best-of-n": "best of N prior samples",
}


def find_compressor(path: str | None) -> Path:
    if path:
        return Path(path)
    bundled = ROOT / "latent_evo" / "assets" / "compressors" / "mnist1d-mlp"
    if (bundled / "model.safetensors").is_file():
        return bundled
    cands = sorted(
        (ROOT / "runs" / "bench-default").glob("version_*/compressor/model.safetensors"),
        key=lambda p: p.stat().st_mtime,
    )
    if not cands:
        raise FileNotFoundError("no compressor: pass --compressor (bundled one missing)")
    return cands[-1].parent


class Tracker:
    """Best-so-far (by training fitness) over a stream of evaluated genomes -> a curve of
    (evaluations, test accuracy of the current best), for the non-`evolve` baselines."""

    def __init__(self, task, log_every: int):
        self.task, self.log_every = task, log_every
        self.evaluations, self.best_f, self.best_g = 0, math.inf, None
        self.history: list[dict[str, float]] = []
        self._next = log_every

    def add(self, genomes: torch.Tensor, force_log: bool = False) -> float:
        """Evaluate (counted), update the best; returns the batch's best training loss."""
        batch_best = math.inf
        for s in range(0, len(genomes), 256):
            g = genomes[s : s + 256]
            with torch.no_grad():
                f = self.task.fitness_genomes(g)
            self.evaluations += len(g)
            i = int(torch.argmin(f))
            batch_best = min(batch_best, float(f[i]))
            if float(f[i]) < self.best_f:
                self.best_f, self.best_g = float(f[i]), g[i].clone()
            if self.evaluations >= self._next or force_log:
                self.log()
                while self._next <= self.evaluations:
                    self._next += self.log_every
        return batch_best

    def log(self) -> None:
        m = self.task.evaluate(self.best_g)
        self.history.append({"evaluations": self.evaluations, "best_fitness": self.best_f, **m})

    def result(self, wall: float, **extra: Any) -> dict[str, Any]:
        if not self.history or self.history[-1]["evaluations"] != self.evaluations:
            self.log()
        return {
            "history": self.history,
            "evaluations": self.evaluations,
            "best_fitness": self.best_f,
            "test": self.task.evaluate(self.best_g),
            "wall_s": wall,
            **extra,
        }


def zoo_genomes(zoo: Path, spec) -> tuple[torch.Tensor, str]:
    """The zoo's last checkpoint of every trained network (networks stop at different epochs)."""
    sys.path.insert(0, str(ROOT))
    from zoo.dataset import ZooDataset

    ds = ZooDataset(zoo, split="all")
    ep, mid = torch.as_tensor(ds.epochs), torch.as_tensor(ds.model_ids)
    last: dict[int, int] = {}
    for i in torch.argsort(ep, stable=True).tolist():  # later epochs overwrite earlier ones
        last[int(mid[i])] = i
    idx = torch.tensor(sorted(last.values()))
    g = ds.genomes(idx).to(spec.dtype)
    return (
        g,
        f"the last checkpoint of each of the {len(idx)} networks of {zoo.name} ({len(ds)} checkpoints in all)",
    )


def run_baseline(
    name: str, task, comp, zoo: Path, budget: int, seed: int, log_every: int, sgd_steps: int
) -> dict[str, Any]:
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    if name == "sgd":
        from latent_evo.demo import run_sgd

        torch.manual_seed(seed)
        r = run_sgd(task, sgd_steps, lr=1e-3, seed=seed)
        return {
            "history": [], "evaluations": None, "test": r["test"], "wall_s": r["wall_s"],
            "note": f"{sgd_steps} Adam steps (lr 1e-3) on minibatches of 128; gradient "
                    "evaluations, not counted in the budget",
            "sgd_history": r["history"],
        }  # fmt: skip
    tr = Tracker(task, log_every)
    if name == "prior-best-of-n":
        for s in range(0, budget, 256):
            n = min(256, budget - s)
            with torch.no_grad():
                z = comp.sample(n, gen)
                tr.add(comp.decode_genomes(z))
        return tr.result(time.perf_counter() - t0, note=f"N = {budget} samples z ~ prior")
    zg, desc = zoo_genomes(zoo, task.spec)
    with torch.no_grad():
        fz = torch.cat([task.fitness_genomes(zg[s : s + 256]) for s in range(0, len(zg), 256)])
    order = torch.argsort(fz)
    if name == "zoo-best":
        tr.add(zg, force_log=True)  # every checkpoint's training fitness is a true evaluation
        return tr.result(time.perf_counter() - t0, note=f"argmin training loss over {desc}")
    if name == "zoo-avg-top":
        tr.add(zg, force_log=True)
        ks = [k for k in (2, 4, 8, 16, 32) if k <= len(zg)]
        tr.add(torch.stack([zg[order[:k]].mean(0) for k in ks]), force_log=True)
        return tr.result(
            time.perf_counter() - t0,
            note=f"mean weights of the top k by training loss, k in {ks}; best kept ({desc})",
        )
    if name == "zoo-best-noise":
        tr.add(zg, force_log=True)
        best = zg[order[0]]
        sigmas = (0.001, 0.003, 0.01, 0.03, 0.1)
        per = max((budget - len(zg)) // len(sigmas), 1)
        per_sigma = {}
        for sigma in sigmas:  # σ tuned by spending the remaining budget on a grid
            g = best + sigma * torch.randn(per, best.numel(), generator=gen)
            per_sigma[sigma] = tr.add(g)
        best_sigma = min(per_sigma, key=per_sigma.get)
        return tr.result(
            time.perf_counter() - t0,
            note=f"{per} noisy copies per σ in {sigmas}; best σ {best_sigma} ({desc})",
            best_sigma=best_sigma,
        )
    raise ValueError(f"unknown baseline {name!r}")


def run_method(
    name: str, task, comp, zoo: Path, budget: int, seed: int, eval_every: int, sgd_steps: int,
    progress: bool,
) -> dict[str, Any]:  # fmt: skip
    from latent_evo.evolution import evolve

    # every run gets its own copy: online fine-tuning updates the compressor in place, and a
    # fine-tuned compressor must not leak into the next run
    comp = copy.deepcopy(comp) if comp is not None else None
    if name in BASELINES:
        return run_baseline(name, task, comp, zoo, budget, seed, eval_every * POP, sgd_steps)
    opts = copy.deepcopy(evolve_methods()[name])
    if name == "direct-cma" and task.spec.numel > DIRECT_CMA_MAX_DIM:
        return {"skipped": f"d = {task.spec.numel:,} > {DIRECT_CMA_MAX_DIM}: full-covariance "
                           "CMA-ES needs a d x d matrix and O(d^2) work per sample"}  # fmt: skip
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    res = evolve(
        task=task, compressor=comp if opts["mode"] != "direct" else None, evaluations=budget,
        generations=None, seed=seed, device="cpu", progress=progress, eval_every=eval_every,
        **opts,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    hist = [
        {k: h[k] for k in ("evaluations", "best_fitness", "test_accuracy", "test_loss") if k in h}
        for h in res.history
        if "test_accuracy" in h
    ]
    return {
        "history": hist, "events": res.events, "evaluations": res.evaluations,
        "best_fitness": res.best_fitness, "test": res.test_metrics, "wall_s": wall,
        "options": opts,
    }  # fmt: skip


def curve(history: list[dict], grid: list[int]) -> list[float]:
    """Test accuracy of the best-so-far network at each grid point (step function; NaN before
    the first logged point)."""
    out = []
    for e in grid:
        pts = [h["test_accuracy"] for h in history if h["evaluations"] <= e]
        out.append(pts[-1] if pts else float("nan"))
    return out


def evals_to(history: list[dict], thr: float) -> int | None:
    for h in history:
        if h["test_accuracy"] >= thr:
            return int(h["evaluations"])
    return None


def _mean_std(xs: list[float]) -> tuple[float, float]:
    xs = [x for x in xs if x == x]
    if not xs:
        return float("nan"), float("nan")
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def summarize(setting: dict[str, Any], thresholds: list[float]) -> list[dict[str, Any]]:
    rows = []
    sgd_acc = _mean_std([r["test"]["test_accuracy"] for r in setting["runs"].get("sgd", [])])[0]
    thr_all = list(thresholds) + ([0.9 * sgd_acc] if sgd_acc == sgd_acc else [])
    for name, runs in setting["runs"].items():
        if runs and "skipped" in runs[0]:
            rows.append({"method": name, "skipped": runs[0]["skipped"]})
            continue
        accs = [r["test"]["test_accuracy"] for r in runs]
        m, s = _mean_std(accs)
        reach = {}
        for t in thr_all:
            hits = [evals_to(r["history"], t) for r in runs] if name != "sgd" else []
            ok = [h for h in hits if h is not None]
            reach[f"{t:.3f}"] = (statistics.median(ok) if ok else None, len(ok), len(runs))
        rows.append({
            "method": name, "acc_mean": m, "acc_std": s, "seeds": len(runs),
            "evaluations": runs[0].get("evaluations"),
            "wall_s": statistics.fmean(r["wall_s"] for r in runs), "reach": reach,
            "note": runs[0].get("note", ""),
        })  # fmt: skip
    return rows


def plot_setting(setting: dict[str, Any], path: Path, budget: int, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = list(range(0, budget + 1, max(budget // 100, 1)))[1:]
    fig, ax = plt.subplots(figsize=(8.5, 5), constrained_layout=True)
    ax.set_prop_cycle(color=[plt.get_cmap("tab20")(i) for i in range(0, 20, 1)][::2]
                      + [plt.get_cmap("tab20")(i) for i in range(1, 20, 2)])  # fmt: skip
    for name, runs in setting["runs"].items():
        if not runs or "skipped" in runs[0]:
            continue
        if name == "sgd":
            m, s = _mean_std([r["test"]["test_accuracy"] for r in runs])
            ax.axhline(m, color="k", ls=":", label=f"SGD (Adam), mean {m:.3f}")
            continue
        cs = torch.tensor([curve(r["history"], grid) for r in runs])
        mean = cs.nanmean(0)
        std = torch.nan_to_num(cs, nan=0.0).std(0) if len(cs) > 1 else torch.zeros_like(mean)
        ls = "--" if name.startswith("direct") else ("-." if name in BASELINES else "-")
        (line,) = ax.plot(grid, mean.tolist(), ls=ls, label=LABELS.get(name, name))
        ax.fill_between(grid, (mean - std).tolist(), (mean + std).tolist(), alpha=0.15,
                        color=line.get_color())  # fmt: skip
    ax.set_xlabel("true fitness evaluations")
    ax.set_ylabel("test accuracy of the best network (mean ± std over seeds)")
    ax.set_xlim(0, budget)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def search_report(prov: dict, results: dict[str, Any], thresholds: list[float]) -> str:
    lines = [
        "# Search-efficiency benchmark (`latent-evo bench search`)",
        "",
        *provenance_md(prov),
        f"- compressor: `{results['compressor']}` (latent size {results['latent_size']}); zoo for "
        f"the memorisation baselines: `{results['zoo']}`",
        f"- budget: {results['budget']:,} true fitness evaluations per run (one evaluation = the "
        "training loss of one network on the task's fixed training batch), seeds "
        f"{results['seeds']}, population {POP}; test accuracy of the best network (by training "
        "loss) is logged along the way. Evolution methods and σ/learning rates are fixed a "
        "priori (`latent_evo/bench.py: evolve_methods`), not tuned per task.",
        "",
    ]
    for key, setting in results["settings"].items():
        rows = summarize(setting, thresholds)
        sgd = [r for r in rows if r["method"] == "sgd"]
        sgd_acc = sgd[0]["acc_mean"] if sgd else float("nan")
        thr_keys = [f"{t:.3f}" for t in thresholds] + (
            [f"{0.9 * sgd_acc:.3f}"] if sgd_acc == sgd_acc else []
        )
        lines += [
            f"## Setting `{key}`: task `{setting['task']}` — {setting['description']}",
            "",
            f"![curves]({setting['plot']})",
            "",
            "Evaluations to reach a test accuracy: median over the seeds that reached it (k/n "
            "reached); the last column is 90 % of SGD's mean accuracy.",
            "",
            "| method | test acc (mean ± std) | evals used | wall s / run | "
            + " | ".join(f"evals to {k}" for k in thr_keys)
            + " |",
            "|---|---:|---:|---:|" + "---:|" * len(thr_keys),
        ]
        for r in rows:
            label = LABELS.get(r["method"], r["method"])
            if "skipped" in r:
                lines.append(f"| {label} | skipped: {r['skipped']} |" + " |" * (2 + len(thr_keys)))
                continue
            cells = []
            for k in thr_keys:
                med, ok, n = r["reach"].get(k, (None, 0, 0))
                cells.append("—" if r["method"] == "sgd" else
                             (f"{med:,.0f} ({ok}/{n})" if med is not None else f"not ({ok}/{n})"))  # fmt: skip
            ev = "gradients" if r["evaluations"] is None else f"{r['evaluations']:,}"
            lines.append(
                f"| {label} | {r['acc_mean']:.3f} ± {r['acc_std']:.3f} ({r['seeds']}) | {ev} | "
                f"{r['wall_s']:.1f} | " + " | ".join(cells) + " |"
            )
        notes = [(LABELS.get(r["method"], r["method"]), r.get("note")) for r in rows]
        lines += ["", *(f"- {lab}: {n}" for lab, n in notes if n), ""]
    return "\n".join(lines) + "\n"


def run_search(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    from latent_evo.hub import load_compressor
    from latent_evo.tasks import get_task

    torch.set_num_threads(args.threads)
    if args.from_json:  # re-render tables and plots of an earlier run (e.g. other thresholds)
        return render_search(args, argv)
    prov = provenance(argv, "latent-evo bench search")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = list(ALL_METHODS) if args.methods == "all" else args.methods.split(",")
    bad = [m for m in methods if m not in ALL_METHODS]
    if bad:
        raise ValueError(f"unknown method(s) {bad}; choose from {list(ALL_METHODS)}")
    settings = args.settings.split(",")
    comp_path = find_compressor(args.compressor)
    comp = load_compressor(comp_path).eval()
    zoo = Path(args.zoo)
    thresholds = [float(t) for t in args.thresholds.split(",")]
    results: dict[str, Any] = {
        "provenance": prov, "compressor": str(comp_path), "latent_size": comp.latent_size,
        "zoo": str(zoo), "budget": args.budget, "seeds": seeds, "settings": {},
    }  # fmt: skip
    md, js = out / f"search{args.suffix}.md", out / f"search{args.suffix}.json"
    eval_every = max(args.budget // POP // 40, 1)

    def write(plots: bool = True) -> None:
        prov["load_avg_end"] = os.getloadavg()[0]
        for key, st in results["settings"].items() if plots else ():
            plot_setting(st, out / st["plot"], args.budget,
                         f"{st['task']} ({key}): test accuracy vs true evaluations")  # fmt: skip
        md.write_text(search_report(prov, results, thresholds))
        js.write_text(json.dumps(results, indent=1, default=float))

    for key in settings:
        task_name, desc = SETTINGS[key]
        if args.task:
            task_name = args.task
        task = get_task(task_name)
        ms = methods if key == "family" or args.transfer_methods == "all" else [
            m for m in methods if m in args.transfer_methods.split(",")
        ]  # fmt: skip
        st = results["settings"][key] = {
            "task": task_name, "description": desc, "params": task.spec.numel, "runs": {},
            "plot": f"search{args.suffix}_{key}.png",
        }  # fmt: skip
        for m in ms:
            st["runs"][m] = []
            for seed in seeds:
                print(f"== {key} / {m} / seed {seed}", flush=True)
                r = run_method(m, task, comp, zoo, args.budget, seed, eval_every,
                               args.sgd_steps, args.progress)  # fmt: skip
                st["runs"][m].append(r)
                if "skipped" in r:
                    break
                print(f"   test acc {r['test']['test_accuracy']:.3f}  wall {r['wall_s']:.1f}s",
                      flush=True)  # fmt: skip
                write(plots=False)  # tables and JSON after every run, plots per method
            write()
    write()
    print(md.read_text())
    return results


def render_search(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    results = json.loads(Path(args.from_json).read_text())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    thresholds = [float(t) for t in args.thresholds.split(",")]
    prov = results["provenance"]
    prov["rendered_by"] = f"latent-evo bench search {' '.join(argv)}"
    for key, st in results["settings"].items():
        plot_setting(st, out / st["plot"], results["budget"],
                     f"{st['task']} ({key}): test accuracy vs true evaluations")  # fmt: skip
    md = out / f"search{args.suffix}.md"
    md.write_text(search_report(prov, results, thresholds))
    print(md.read_text())
    return results


# ---------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="latent-evo bench", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="which", required=True)
    sp = sub.add_parser("speed", help="population and decode throughput, peak memory")
    sp.add_argument("--quick", action="store_true",
                    help="mnist1d-mlp + text-gpt2-tiny at P=64,256; decode up to 1M + GPT-2")  # fmt: skip
    sp.add_argument("--repeats", type=int, default=5)
    sp.add_argument("--tasks", default=None, help=f"comma list (default {','.join(SPEED_TASKS)})")
    sp.add_argument("--pops", default=None, help="comma list of populations (default 64,256,1024)")
    sp.add_argument("--parts", default="throughput,decode")
    sp.add_argument("--max-decode-params", type=float, default=math.inf,
                    help="skip decode specs larger than this")  # fmt: skip
    sp.add_argument("--device", default="auto")
    sp.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    sp.add_argument("--out", default=str(DEFAULT_OUT), help="folder for speed.md / speed.json")
    sp.add_argument("--suffix", default="", help="file name suffix (speed<suffix>.md)")
    # seeds/budget/methods accepted for a uniform interface; speed ignores them
    for a in ("--seeds", "--budget", "--methods"):
        sp.add_argument(a, default=None, help=argparse.SUPPRESS)

    ss = sub.add_parser("search", help="search efficiency: accuracy vs true evaluations")
    ss.add_argument("--seeds", default="0,1,2")
    ss.add_argument("--budget", type=int, default=20000, help="true evaluations per run")
    ss.add_argument("--methods", default="all", help=f"comma list from {','.join(ALL_METHODS)}")
    ss.add_argument("--settings", default="family,transfer")
    ss.add_argument("--transfer-methods", default="all",
                    help=f"methods run in the transfer setting (e.g. {','.join(TRANSFER_QUICK)})")  # fmt: skip
    ss.add_argument("--quick", action="store_true",
                    help="budget 3000, all methods but plain latent CMA-ES; on the transfer task only "
                    + ",".join(TRANSFER_QUICK))  # fmt: skip
    ss.add_argument("--task", default=None, help="override the settings' task (e.g. smoke tests)")
    ss.add_argument("--compressor", default=None, help="default: bundled, else runs/bench-default")
    ss.add_argument("--zoo", default=str(ROOT / "zoos" / "mnist1d-mlp"))
    ss.add_argument("--sgd-steps", type=int, default=1500)
    ss.add_argument("--thresholds", default="0.2,0.25,0.3,0.4,0.5,0.6")
    ss.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    ss.add_argument("--progress", action="store_true", help="tqdm bar per run")
    ss.add_argument("--out", default=str(DEFAULT_OUT), help="folder for search.md/.json/.png")
    ss.add_argument("--suffix", default="")
    ss.add_argument("--from-json", default=None,
                    help="only re-render search.md and the plots from this search.json")  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        if args.which == "speed":
            args.parts = args.parts.split(",")
            run_speed(args, argv[1:])
        else:
            if args.quick:
                if "--budget" not in argv:
                    args.budget = 3000
                if "--methods" not in argv:  # plain latent CMA-ES: only with --methods
                    args.methods = ",".join(m for m in ALL_METHODS if m != "latent-cma")
                if "--transfer-methods" not in argv:
                    args.transfer_methods = ",".join(TRANSFER_QUICK)
            run_search(args, argv[1:])
    except (FileNotFoundError, ValueError) as e:
        print(f"latent-evo bench {args.which}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
