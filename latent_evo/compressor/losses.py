"""The combined compressor loss, as pure functions of tensors (+ a fitness callable).

    L = MSE(w_hat, w)                          normalised, mask-weighted tokens
      + lambda_fit  * (F(w_hat) - F(w))^2      the decoded network must *behave* like the original
      + lambda_head * (head(z) - F(w))^2       a fitness surrogate in latent space
      + beta        * KL(q(z|w) || N(0, I))    per latent dim; 0 for "noise"/"none" regularisers

The one copy of the loss: `CompressorModule._common_step` (pretraining) and online fine-tuning
during evolution both call `compressor_loss`, so nothing
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


def token_r2(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """R^2 of normalised tokens over the real slots: 1 = perfect, 0 = each tensor's zoo mean
    (the tokens are standardised per tensor, so predicting 0 everywhere scores 0)."""
    m = mask.to(target.dtype)  # (T, C)
    sse = (((pred.float() - target) * m) ** 2).sum()
    return 1 - sse / (target**2 * m).sum().clamp(min=1e-12)


def compressor_loss(
    compressor,
    tokens: torch.Tensor,
    *,
    fitness_fn: FitnessFn | None = None,
    batch: Any = None,
    fitness: torch.Tensor | None = None,
    head_target: torch.Tensor | None = None,
    lambda_fit: float = 1.0,
    lambda_head: float = 1.0,
    beta: float | None = None,
) -> dict[str, torch.Tensor]:
    """One forward pass of `compressor` on `tokens` (P, T, C) and every term of the loss. The one
    loss of the project: Lightning pretraining and online fine-tuning both call it.

    fitness_fn, batch: the functional term F(w_hat) vs F(w) on `batch` (skipped when fitness_fn is
        None or lambda_fit == 0). `fitness_fn(params {name: (P, *shape)}, batch) -> (P,)` may
        route genomes to different tasks itself (pretraining on several zoos does).
    fitness: (P,) F(w) of the original genomes on `batch` if already known; else computed with
        fitness_fn (no grad) when a term needs it.
    head_target: (P,) what the fitness head regresses (pretraining: the zoo's test loss);
        default `fitness`. NaN entries (imported zoos without a fitness) are left out.
    beta: weight of the KL term; default `compressor.config.beta`.

    Returns {"loss", "recon", "fit", "head", "kl"} (scalars; skipped terms are 0), "r2" (token
    R^2, no grad) and "out" (the compressor's forward dict) for logging.
    """
    tok = compressor.tokenizer
    tokens = tokens[None] if tokens.dim() == 2 else tokens  # (P, T, C)
    P = tokens.shape[0]
    out = compressor(tokens)
    zero = tokens.new_zeros(())
    terms = {"recon": masked_mse(out["recon"], tokens, tok.mask), "fit": zero, "head": zero}
    # float(): under bf16 autocast the small terms would lose their precision
    logvar = out["logvar"].float() if out["logvar"] is not None else None
    terms["kl"] = kl_divergence(out["mu"].float(), logvar)

    need_f = fitness_fn is not None and (lambda_fit or (lambda_head and head_target is None))
    if fitness is None and need_f:
        with torch.no_grad():
            fitness = fitness_fn(compressor.spec.unflatten(tok.detokenize(tokens)), batch)  # (P,)
    for name, t in (("fitness", fitness), ("head_target", head_target)):
        if t is not None and t.numel() != P:
            raise ValueError(f"{name} has {t.numel()} entries for {P} genomes")
    if fitness is not None:
        fitness = fitness.detach().to(tokens.device).reshape(-1)  # (P,)
    if fitness_fn is not None and lambda_fit:
        genomes_hat = tok.detokenize(out["recon"], dtype=torch.float32)  # (P, n), differentiable
        fitness_hat = fitness_fn(compressor.spec.unflatten(genomes_hat), batch)  # (P,)
        terms["fit"] = fitness_gap(fitness_hat.float(), fitness)
    target = fitness if head_target is None else head_target.detach().to(tokens.device).reshape(-1)
    if target is not None and lambda_head:
        known = torch.isfinite(target)  # (P,)
        if bool(known.any()):
            terms["head"] = fitness_gap(out["fitness_pred"].float()[known], target[known])

    beta = compressor.config.beta if beta is None else beta
    terms["loss"] = (
        terms["recon"]
        + lambda_fit * terms["fit"]
        + lambda_head * terms["head"]
        + beta * terms["kl"]
    )
    with torch.no_grad():
        terms["r2"] = token_r2(out["recon"], tokens, tok.mask)
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
