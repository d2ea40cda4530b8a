"""Zoo generation speed: vectorised cohort training vs one model at a time, and zoo size on disk.

    .venv/bin/python -m latent_evo.benchmarks.zoo_speed [--models 64] [--sequential 4] [--epochs 1]

Trains MNIST-1D MLP models (the default zoo's task, 40-100-100-10) for `--epochs` epochs with
Adam, batch 128: `--models` at once with `train_cohort` (vmap over the population), and
`--sequential` one after another with `torch.optim.AdamW` (`train_sequential`, the usual loop).
Writes benchmarks/results/zoo.md. Threads are pinned to 2 (the reference machine has 2 cores);
the 1-minute load average is recorded because a shared machine skews every number.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from latent_evo.benchmarks.common import cpu_name
from latent_evo.tasks import get_task
from latent_evo.zoo.format import ZooWriter
from latent_evo.zoo.trainer import train_cohort, train_sequential

RESULTS = Path(__file__).resolve().parent / "results" / "zoo.md"


def _hparams(p: int) -> dict:
    gen = torch.Generator().manual_seed(0)
    return dict(
        lr=torch.exp(torch.empty(p).uniform_(-7, -4.6, generator=gen)),
        weight_decay=torch.full((p,), 1e-4),
        epochs=torch.full((p,), 1, dtype=torch.int64),
        order_seeds=torch.arange(p),
        batch_size=128,
    )


def time_training(task, p: int, epochs: int, vectorised: bool) -> tuple[float, float]:
    """Model-epochs per wall second and per CPU second for `p` models trained `epochs` epochs."""
    init = task.spec.unflatten(task.init_genomes(p, torch.Generator().manual_seed(1)))
    kw = _hparams(p)
    kw["epochs"] = torch.full((p,), epochs, dtype=torch.int64)
    x, y = task.train_data
    fn = train_cohort if vectorised else train_sequential
    if vectorised:  # warm-up: first vmap trace
        small = {k: v[:2] for k, v in init.items()}
        train_cohort(task.model, task.loss_fn, small, x[:256], y[:256], **_hparams(2))
    t0, c0 = time.perf_counter(), time.process_time()
    fn(task.model, task.loss_fn, init, x, y, **kw)
    # wall-clock rate, and rate per CPU-second (robust to other processes sharing the cores)
    return p * epochs / (time.perf_counter() - t0), p * epochs / (time.process_time() - c0)


def disk_per_1000(task) -> tuple[float, float]:
    """MiB on disk of a 1,000-checkpoint zoo (shards + metadata) and of the raw float32 genomes."""
    root = Path(tempfile.mkdtemp(prefix="zoo-size-"))
    try:
        w = ZooWriter(root / "z", task.spec, task.name, shard_size=1024)
        w.start(resume=False)
        g = torch.randn(1000, task.spec.numel, generator=torch.Generator().manual_seed(0)) * 0.1
        rows = [
            {
                "model_id": i // 5,
                "epoch": i % 5,
                "test_loss": 1.0,
                "lr": 1e-3,
                "hparams": '{"lr": 0.001}',
            }
            for i in range(1000)
        ]
        w.write_part("p", g, rows)
        w.finalize()
        size = sum(f.stat().st_size for f in (root / "z").rglob("*") if f.is_file())
        return size / 2**20, g.numel() * 4 / 2**20
    finally:
        shutil.rmtree(root)


def default_zoo_section(root: Path) -> list[str]:
    """Generation time and size of a finished default zoo (from its card), if there is one."""
    card_path = root / "zoo.json"
    if not card_path.is_file():
        return [
            f"(no generated zoo at `{root}`: run `latent-evo zoo generate --config configs/zoo/mnist1d-mlp.yaml`)",
            "",
        ]
    card = json.loads(card_path.read_text())
    size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    return [
        "## The default zoo (`configs/zoo/mnist1d-mlp.yaml`)",
        "",
        "Command: `latent-evo zoo generate --config configs/zoo/mnist1d-mlp.yaml` "
        f"(device {card.get('device', '?')}, 2 threads)",
        "",
        "| models | checkpoints | generation wall time | generation CPU time | size on disk |",
        "|---|---|---|---|---|",
        f"| {card.get('num_models')} | {card.get('num_checkpoints')} | {card.get('generation_seconds', float('nan')):.0f} s "
        f"| {card.get('generation_cpu_seconds', float('nan')):.0f} s | {size / 2**20:.1f} MiB |",
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=64, help="models in the vectorised cohort")
    ap.add_argument("--sequential", type=int, default=4, help="models trained one at a time")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument(
        "--zoo",
        type=Path,
        default=Path("zoos/mnist1d-mlp"),
        help="a generated default zoo to report",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    task = get_task("mnist1d-mlp", device="cpu")
    load0 = os.getloadavg()[0]
    vec = time_training(task, args.models, args.epochs, vectorised=True)
    seq = time_training(task, args.sequential, args.epochs, vectorised=False)
    load1 = os.getloadavg()[0]
    mib, raw = disk_per_1000(task)
    steps = -(-len(task.train_data[0]) // 128)
    lines = [
        "# Zoo generation speed (MNIST-1D MLP 40-100-100-10, 15,210 params)",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, Python {platform.python_version()}. "
        f"1-min load average {load0:.1f} -> {load1:.1f} during the run (the machine is shared; "
        "a load above 2 means other processes took CPU time from these measurements).",
        "",
        f"Command: `{' '.join(['.venv/bin/python', '-m', 'latent_evo.benchmarks.zoo_speed', *sys.argv[1:]])}`",
        "",
        f"Adam, batch 128, {len(task.train_data[0])} training examples ({steps} steps per epoch).",
        "",
        "| training | models | model-epochs / s (wall) | model-epochs / CPU-s | models / s, 10-epoch models (wall) "
        "| speed-up (CPU-s) |",
        "|---|---|---|---|---|---|",
        f"| vectorised cohort (`train_cohort`, vmap) | {args.models} | {vec[0]:.2f} | {vec[1]:.2f} | {vec[0] / 10:.3f} "
        f"| {vec[1] / seq[1]:.1f}x |",
        f"| one model at a time (`torch.optim.AdamW`) | {args.sequential} | {seq[0]:.2f} | {seq[1]:.2f} "
        f"| {seq[0] / 10:.3f} | 1.0x |",
        "",
        "Model-epochs per CPU-second is CPU time of this process (both threads); on an idle 2-core",
        "machine the wall rate approaches it.",
        "",
        "| zoo size on disk | MiB |",
        "|---|---|",
        f"| per 1,000 checkpoints (shards + metadata + card + stats) | {mib:.1f} |",
        f"| of which raw float32 genomes | {raw:.1f} |",
        "",
    ]
    lines += default_zoo_section(args.zoo)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
