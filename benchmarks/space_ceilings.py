"""What each search space can reach at all: Adam on the true training loss, inside the space.

Evolution cannot beat the best point of the space it searches, so this diagnostic bounds every
search result from above (up to local optima). For a compressor and a task it reports the fixed
training batch's loss and the test accuracy reached by gradient descent over:

    z            the latent code (LatentSpace), from the prior mean
    decoder h    the MLP autoencoder's last hidden layer: its output layer is linear, so every
                 residual step lies in this affine subspace (MLPAutoencoder only)
    <tensors>    one group of tensors of the latent optimum, the others frozen (SubsetSpace)
    all weights  the whole genome from the latent optimum (DirectSpace), and from a fresh init

    .venv/bin/python -m latent_evo.benchmarks.space_ceilings COMPRESSOR TASK [--steps 300] [--out FILE.md]

Gradients are used only here, to measure the spaces; no search method in the benchmarks uses them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

from latent_evo.benchmarks.common import provenance, provenance_md
from latent_evo.compressor.hub import load_compressor
from latent_evo.compressor.mlp import MLPAutoencoder
from latent_evo.evolution.spaces import subset_index
from latent_evo.tasks import get_task


def adam(task, params, to_genome, steps: int, lr: float) -> dict[str, float]:
    """`steps` of Adam on the task's fixed training batch; loss and test accuracy at the end."""
    batch, t0 = task.fitness_batch(), time.perf_counter()
    opt = torch.optim.Adam(params, lr=lr)
    for _ in range(steps):
        loss = task.fitness_genomes(to_genome()[None], batch)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        g = to_genome()
        loss = float(task.fitness_genomes(g[None], batch)[0])
    acc = task.evaluate(g.detach())["test_accuracy"]
    return {"loss": loss, "test_accuracy": acc, "wall_s": time.perf_counter() - t0}


def ceilings(comp, task, steps: int) -> list[dict]:
    for p in comp.parameters():
        p.requires_grad_(False)
    rows = []
    z = comp.prior_mean.clone().requires_grad_(True)
    rows.append({"space": f"latent z (s = {z.numel()})",
                 **adam(task, [z], lambda: comp.decode_genomes(z[None])[0], steps, 0.05)})  # fmt: skip
    z_opt = z.detach()
    with torch.no_grad():
        g_opt = comp.decode_genomes(z_opt[None])[0]
    if isinstance(comp, MLPAutoencoder):
        with torch.no_grad():
            h = comp.decoder[:-1](z_opt[None])[0]  # (hidden,)
        h.requires_grad_(True)

        def from_h():
            y = comp.decoder[-1](h[None])  # (1, n) normalised values
            return comp.tokenizer.detokenize(comp.values_to_tokens(y))[0]  # (n,)

        rows.append({"space": f"decoder hidden h ({h.numel()}; the residual subspace)",
                     **adam(task, [h], from_h, steps, 0.05)})  # fmt: skip
    # one group per module (`layers.0.weight` + `layers.0.bias`), in genome order
    groups: dict[str, list[str]] = {}
    for t in task.spec.tensors:
        groups.setdefault(t.name.rsplit(".", 1)[0], []).append(t.name)
    for m, names in groups.items():
        idx = subset_index(task.spec, names)
        x = g_opt[idx].clone().requires_grad_(True)

        def from_subset(x=x, idx=idx):
            return g_opt.index_put((idx,), x)

        rows.append({"space": f"`{m}.*` of the latent optimum ({len(idx):,})",
                     **adam(task, [x], from_subset, steps, 1e-2)})  # fmt: skip
    g = g_opt.clone().requires_grad_(True)
    rows.append({"space": f"all weights from the latent optimum ({g.numel():,})",
                 **adam(task, [g], lambda: g, steps, 1e-3)})  # fmt: skip
    g0 = task.init_genomes(1, torch.Generator().manual_seed(0))[0].clone().requires_grad_(True)
    rows.append({"space": f"all weights from a fresh init ({g0.numel():,})",
                 **adam(task, [g0], lambda: g0, steps, 1e-3)})  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("compressor")
    ap.add_argument("task")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="append the table to this markdown file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    comp, task = load_compressor(args.compressor).eval(), get_task(args.task)
    rows = ceilings(comp, task, args.steps)
    prov = provenance(
        sys.argv[1:] if argv is None else argv,
        ".venv/bin/python -m latent_evo.benchmarks.space_ceilings",
    )
    prov["load_avg_end"] = os.getloadavg()[0]
    lines = [f"### `{args.task}`, compressor `{args.compressor}`", "", *provenance_md(prov), "",
             f"Adam, {args.steps} steps on the fixed training batch of the task.", "",
             "| search space (dimensions) | training loss | test accuracy |", "|---|---:|---:|",
             *[f"| {r['space']} | {r['loss']:.3f} | {r['test_accuracy']:.3f} |" for r in rows],
             ""]  # fmt: skip
    text = "\n".join(lines)
    print(text)
    if args.out:
        with Path(args.out).open("a") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
