"""Test accuracy of networks decoded from prior samples: N(0, I) vs the compressor's fitted prior.

    .venv/bin/python -m latent_evo.benchmarks.prior_samples mnist1d-mlp-wide runs/wide-mlp-v1/version_0/compressor
    .venv/bin/python -m latent_evo.benchmarks.prior_samples mnist1d-mlp latent_evo/assets/compressors/mnist1d-mlp

A compressor exported before fitted priors existed has N(0, I) in both rows; refit it first with
`latent-evo zoo fit-prior ZOO COMPRESSOR --out DIR`.
"""

import argparse

import torch

from latent_evo.compressor.hub import load_compressor
from latent_evo.tasks import get_task


def accuracies(comp, task, z: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        genomes = comp.decode_genomes(z)
    return torch.tensor([task.evaluate(g)["test_accuracy"] for g in genomes])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("task")
    p.add_argument("compressors", nargs="+")
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    task = get_task(args.task)
    print("| compressor | prior | best | mean | median |\n|---|---|---:|---:|---:|")
    for path in args.compressors:
        comp = load_compressor(path).eval()
        n, s = args.samples, comp.latent_size
        codes = {  # the same noise draws for both priors
            "N(0, I)": torch.randn(n, s, generator=torch.Generator().manual_seed(args.seed)),
            "fitted": comp.sample(n, torch.Generator().manual_seed(args.seed)),
        }
        for name, z in codes.items():
            acc = accuracies(comp, task, z)
            print(
                f"| `{path}` | {name} | {acc.max():.3f} | {acc.mean():.3f} | {acc.median():.3f} |"
            )


if __name__ == "__main__":
    main()
