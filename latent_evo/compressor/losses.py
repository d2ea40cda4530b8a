"""The combined compressor loss, as pure functions of tensors (+ a fitness callable).

    L = MSE(w_hat, w)                          normalised, mask-weighted tokens
      + lambda_fit  * (F(w_hat) - F(w))^2      the decoded network must *behave* like the original
      + lambda_head * (head(z) - F(w))^2       a fitness surrogate in latent space
      + beta        * KL(q(z|w) || N(0, I))    per latent dim; 0 for "noise"/"none" regularisers

Used by the Lightning pretraining module and by online fine-tuning during evolution, so nothing
here knows about trainers or tasks: `fitness_fn(params {name: (P, *shape)}, batch) -> (P,)` is
any differentiable population fitness (e.g. `task.fitness`, which runs `functional_call` under
`vmap`), and the gradient of the fitness term flows through it into the decoder.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

FitnessFn = Callable[[Mapping[str, torch.Tensor], Any], torch.Tensor]


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the real (unpadded) slots: pred/target (P, T, C), mask (T, C)."""
    w = mask.to(pred.dtype)  # (T, C)
    return ((pred - target) ** 2 * w).sum() / (w.sum() * pred.shape[0]).clamp(min=1)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor | None) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) averaged over population and latent dims (nats/dim), so
    beta needs no retuning when the latent size changes. Zero when there is no posterior variance
    (the "noise" and "none" regularisers)."""
    if logvar is None:
        return mu.new_zeros(())
    return 0.5 * (mu**2 + logvar.exp() - 1.0 - logvar).mean()


def fitness_gap(fitness_hat: torch.Tensor, fitness: torch.Tensor) -> torch.Tensor:
    """Mean over the population of (F(w_hat) - F(w))^2."""
    return ((fitness_hat - fitness.to(fitness_hat.dtype)) ** 2).mean()


def compressor_loss(
    compressor,
    tokens: torch.Tensor,
    *,
    fitness_fn: FitnessFn | None = None,
    batch: Any = None,
    fitness: torch.Tensor | None = None,
    lambda_fit: float = 1.0,
    lambda_head: float = 1.0,
    beta: float | None = None,
) -> dict[str, torch.Tensor]:
    """One forward pass of `compressor` on `tokens` (P, T, C) and every term of the loss.

    fitness_fn, batch: the functional term F(w_hat) vs F(w) on `batch` (skipped when fitness_fn is
        None or lambda_fit == 0).
    fitness: (P,) F(w) of the original genomes if already known (zoo metadata); else computed with
        fitness_fn on `batch` (no grad). The head term needs one of the two.
    beta: weight of the KL term; default `compressor.config.beta`.

    Returns {"loss", "recon", "fit", "head", "kl"} (scalars; skipped terms are 0) and "out" (the
    compressor's forward dict) for logging.
    """
    tok = compressor.tokenizer
    tokens = tokens[None] if tokens.dim() == 2 else tokens  # (P, T, C)
    out = compressor(tokens)
    zero = tokens.new_zeros(())
    terms = {"recon": masked_mse(out["recon"], tokens, tok.mask), "fit": zero, "head": zero}
    terms["kl"] = kl_divergence(out["mu"], out["logvar"])

    if fitness is None and fitness_fn is not None and (lambda_fit or lambda_head):
        with torch.no_grad():
            fitness = fitness_fn(compressor.spec.unflatten(tok.detokenize(tokens)), batch)  # (P,)
    if fitness is not None:
        fitness = fitness.detach().to(tokens.device).reshape(-1)
        if fitness.shape[0] != tokens.shape[0]:
            raise ValueError(
                f"fitness has {fitness.shape[0]} entries for {tokens.shape[0]} genomes"
            )
    if fitness_fn is not None and lambda_fit:
        genomes_hat = tok.detokenize(out["recon"])  # (P, n), differentiable
        fitness_hat = fitness_fn(compressor.spec.unflatten(genomes_hat), batch)  # (P,)
        terms["fit"] = fitness_gap(fitness_hat, fitness)
    if fitness is not None and lambda_head:
        terms["head"] = fitness_gap(out["fitness_pred"], fitness)

    beta = compressor.config.beta if beta is None else beta
    terms["loss"] = (
        terms["recon"]
        + lambda_fit * terms["fit"]
        + lambda_head * terms["head"]
        + beta * terms["kl"]
    )
    terms["out"] = out
    return terms


def functional_fitness(model: torch.nn.Module, loss_fn: Callable) -> FitnessFn:
    """A population fitness for any module: `torch.func.functional_call` vmapped over the genomes
    (for tests and for models without a Task); `batch` is `(inputs, targets)`."""
    from torch.func import functional_call, vmap

    def one(params, x, y):
        return loss_fn(functional_call(model, params, (x,)), y)

    def fitness_fn(params: Mapping[str, torch.Tensor], batch) -> torch.Tensor:
        x, y = batch
        return vmap(one, in_dims=(0, None, None))(dict(params), x, y)  # (P,)

    return fitness_fn
