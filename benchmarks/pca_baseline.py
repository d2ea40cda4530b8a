"""The linear baseline every learned compressor must beat: PCA of a zoo's training genomes.

    .venv/bin/python -m latent_evo.benchmarks.pca_baseline [--zoo zoos/mnist1d-mlp-wide] [--k 0 128]

PCA with k components, fitted on the zoo's training split (every checkpoint) in the tokenizer's
normalised space (per-tensor mean / std, the space the compressors' reconstruction loss uses), is
wrapped as a compressor (encode = projection onto the components, decode = mean + components) and
evaluated by the same `evaluate_compressor` as a pretraining run, on the same held-out models:
weight R², accuracy retention, prior samples. k = 0 is the training mean genome alone (what a
residual decoder starts from). Prints a markdown table; `--out DIR` also writes the JSON.
"""

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn

from latent_evo.compressor.tokenizer import Tokenizer


class PCACompressor(nn.Module):
    """k principal directions of normalised genomes, with the API `evaluate_compressor` uses."""

    def __init__(self, tokenizer: Tokenizer, genomes: torch.Tensor, k: int):
        super().__init__()
        self.tokenizer, self.spec = tokenizer, tokenizer.spec
        x = tokenizer.tokenize(genomes).flatten(1)[:, tokenizer.mask.reshape(-1)]  # (N, n)
        self.register_buffer("mean", x.mean(0))  # (n,)
        xc = (x - self.mean).double()
        # exact PCA through the (N, N) Gram matrix: N checkpoints << n weights
        evals, evecs = torch.linalg.eigh(xc @ xc.T)  # ascending
        evals, evecs = evals.flip(0)[:k].clamp(min=1e-12), evecs.flip(1)[:, :k]  # (k,), (N, k)
        comps = (xc.T @ evecs) / evals.sqrt()  # (n, k) orthonormal columns
        self.register_buffer("components", comps.float())
        codes = (xc @ comps).float()  # (N, k)
        self.register_buffer("code_std", codes.std(0) if k else torch.zeros(0))
        self.explained = float(evals.sum() / (xc**2).sum()) if k else 0.0

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        x = tokens.flatten(1)[:, self.tokenizer.mask.reshape(-1)]  # (P, n)
        return (x - self.mean) @ self.components  # (P, k)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        tok = self.tokenizer
        x = self.mean + z @ self.components.T  # (P, n) normalised values
        out = x.new_zeros(x.shape[0], tok.num_tokens * tok.chunk_size)
        out[:, tok.mask.reshape(-1)] = x
        return out.view(x.shape[0], tok.num_tokens, tok.chunk_size)  # (P, T, C)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        eps = torch.randn(n, len(self.code_std), generator=generator)
        return eps * self.code_std  # the Gaussian of the training codes (diagonal)

    def parameters(self, recurse: bool = True):  # evaluate_compressor reads the device from it
        yield self.mean


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", default="zoos/mnist1d-mlp-wide")
    ap.add_argument("--k", type=int, nargs="+", default=[0, 128])
    ap.add_argument("--chunk-size", type=int, default=256)
    ap.add_argument("--out", default=None, help="write pca_baseline.json here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from latent_evo.pretrain.evaluate import evaluate_compressor
    from latent_evo.zoo.dataset import ZooDataset

    train = ZooDataset(args.zoo, "train")
    genomes = train.genomes().float()  # (N, n) every training checkpoint
    tok = Tokenizer(train.spec, args.chunk_size).fit_normalization(genomes)
    rows, results = [], {}
    for k in args.k:
        t0 = time.perf_counter()
        pca = PCACompressor(tok, genomes, k)
        fit_s = time.perf_counter() - t0
        res = {
            split: evaluate_compressor(pca, args.zoo, split=split, prior_samples=64)
            for split in ("test", "train")
        }
        results[k] = {"fit_seconds": fit_s, "explained_variance": pca.explained, **res}
        te, tr = res["test"], res["train"]
        rows.append(
            f"| PCA k = {k} | {te['recon_r2']:.3f} / {tr['recon_r2']:.3f} | "
            f"{te['retention_mean']:.3f} ({te['retention_min']:.3f}) | "
            f"{te['acc_original_mean']:.3f} -> {te['acc_recon_mean']:.3f} | "
            f"{te['prior_acc_best']:.3f} / {te['prior_acc_mean']:.3f} | {fit_s:.1f} |"
        )
    print(f"zoo {args.zoo}: {len(genomes)} training checkpoints, n = {train.spec.numel:,}")
    print("| baseline | weight R² test / train | retention mean (min), test | acc orig -> decoded "
          "| prior acc best / mean | fit s |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "pca_baseline.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
