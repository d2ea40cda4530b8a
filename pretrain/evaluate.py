"""Held-out evaluation of a genome compressor on the models of a zoo split.

`evaluate_compressor(compressor, zoo, task, split="test")` reports
  * reconstruction R^2 in weight space (and in the tokenizer's normalised space),
  * test accuracy (or loss) of every reconstructed network vs its original: retention ratios and a
    scatter plot,
  * R^2 of the fitness head against the zoo's recorded fitness,
  * best / mean accuracy of networks decoded from prior samples vs fresh random initialisations.
Everything runs without gradients; populations are evaluated vmapped by `Task.metrics`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch


def _r2(
    pred: torch.Tensor, target: torch.Tensor, baseline: torch.Tensor | None = None
) -> float | None:
    """1 - SSE / SST, SST around `baseline` (default: the per-coordinate mean over the rows, which
    needs at least two rows; None otherwise)."""
    if baseline is None:
        if len(target) < 2:
            return None
        baseline = target.mean(0, keepdim=True)
    sse = ((pred - target) ** 2).sum()
    sst = ((target - baseline) ** 2).sum()
    return float(1 - sse / sst.clamp(min=1e-12))


def _select(ds, max_models: int, which: str) -> list[int]:
    """Item indices: the last checkpoint of each model ('final') or every checkpoint ('all'), at
    most `max_models` of them spread evenly over the split."""
    if which == "final":
        last: dict[int, tuple[int, int]] = {}
        for i, (mid, ep) in enumerate(zip(ds.model_ids.tolist(), ds.epochs.tolist(), strict=True)):
            if mid not in last or ep > last[mid][0]:
                last[mid] = (ep, i)
        idx = sorted(i for _, i in last.values())
    elif which == "all":
        idx = list(range(len(ds)))
    else:
        raise ValueError(f"which must be 'final' or 'all', got {which!r}")
    if len(idx) > max_models:
        keep = torch.linspace(0, len(idx) - 1, max_models).round().long().unique().tolist()
        idx = [idx[k] for k in keep]
    return idx


def _test_metrics(task, genomes: torch.Tensor) -> dict[str, torch.Tensor]:
    """`{loss, accuracy?}: (P,)` over the task's whole test split, in example blocks."""
    x, y = task.test_data
    step = task.eval_batch_size
    sums: dict[str, torch.Tensor] = {}
    params = task.params(genomes.to(task.device, task.spec.dtype))
    for s in range(0, len(x), step):
        m = task.metrics(params, (x[s : s + step], y[s : s + step]))
        for k, v in m.items():
            sums[k] = sums.get(k, 0) + v.double().cpu() * len(x[s : s + step])
    return {k: (v / len(x)).float() for k, v in sums.items()}


def _scatter(orig: torch.Tensor, recon: torch.Tensor, label: str, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=120)
    ax.scatter(orig.numpy(), recon.numpy(), s=10, alpha=0.6)
    lo = float(min(orig.min(), recon.min()))
    hi = float(max(orig.max(), recon.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="y = x")
    ax.set_xlabel(f"original {label}")
    ax.set_ylabel(f"reconstructed {label}")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


@torch.no_grad()
def evaluate_compressor(
    compressor,
    zoo,
    task=None,
    split: str = "test",
    *,
    max_models: int = 256,
    which: str = "final",
    prior_samples: int = 64,
    batch_size: int = 64,
    seed: int = 0,
    out_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Evaluate `compressor` on the models of `zoo`'s `split` (a zoo path or a `ZooDataset`).

    `task` is a `Task` or a task name (default: the zoo's own task). With `out_dir`, writes
    `evaluation.json` and `retention.png` there. Returns a flat dict of numbers.
    """
    from latent_evo.pretrain.data import check_compressor_spec, open_zoo, zoo_task

    ds = open_zoo(zoo, split) if isinstance(zoo, str | Path) else zoo
    zoo_name = str(getattr(ds, "root", zoo))
    if task is None:
        task = zoo_task(ds)
    elif isinstance(task, str):
        from latent_evo.tasks import get_task

        task = get_task(task)
    tok = compressor.tokenizer
    check_compressor_spec(compressor, ds.spec, zoo_name, "compressor")
    was_training = compressor.training
    compressor.eval()
    device = next(compressor.parameters()).device
    tok.to(device)
    task = task.to(device)

    idx = _select(ds, max_models, which)
    genomes = ds.genomes(idx).float().to(device)  # (N, n)
    fitness = ds.fitness[idx].float()  # (N,) the zoo's recorded fitness (test loss)

    # ---- reconstruction -------------------------------------------------------------------------
    recon_tok, z_all = [], []
    for s in range(0, len(genomes), batch_size):
        tokens = tok.tokenize(genomes[s : s + batch_size])
        z = compressor.encode(tokens)  # (b, s) deterministic code (the posterior mean)
        recon_tok.append(compressor.decode(z).float())
        z_all.append(z)
    recon_tok, z = torch.cat(recon_tok), torch.cat(z_all)  # (N, T, C), (N, s)
    tokens = tok.tokenize(genomes)
    m = tok.mask
    recon = tok.detokenize(recon_tok, dtype=torch.float32)  # (N, n)
    res: dict[str, Any] = {
        "zoo": zoo_name,
        "task": task.name,
        "split": split,
        "which": which,
        "num_models": len(idx),
        "latent_size": int(z.shape[1]),
        # weight space, baseline = each tensor's mean over the training zoo (well defined for any
        # number of models); "_vs_mean_model" uses the evaluated models' mean network instead
        "recon_r2": _r2(
            recon, genomes, tok.detokenize(torch.zeros_like(recon_tok[:1]), dtype=torch.float32)
        ),
        "recon_r2_vs_mean_model": _r2(recon, genomes),
        # normalised tokens (every tensor weighs by its size, not by its weights' scale)
        "recon_r2_normalized": _r2(recon_tok[:, m], tokens[:, m], torch.zeros(())),
        "recon_mse_normalized": float(((recon_tok - tokens)[:, m] ** 2).mean()),
    }

    # ---- function: accuracy (or loss) of reconstructed vs original networks -----------------------
    orig_m, rec_m = _test_metrics(task, genomes), _test_metrics(task, recon)
    key = "accuracy" if "accuracy" in orig_m else "loss"
    o, r = orig_m[key], rec_m[key]
    # retention = recon / original for accuracy (higher is better); original / recon for a loss
    ratio = r / o.clamp(min=1e-12) if key == "accuracy" else o / r.clamp(min=1e-12)
    res.update(
        {
            "metric": key,
            f"{_short(key)}_original_mean": float(o.mean()),
            f"{_short(key)}_recon_mean": float(r.mean()),
            "retention_mean": float(ratio.mean()),
            "retention_median": float(ratio.median()),
            "retention_min": float(ratio.min()),
            "frac_retention_ge_95": float((ratio >= 0.95).float().mean()),
            "loss_original_mean": float(orig_m["loss"].mean()),
            "loss_recon_mean": float(rec_m["loss"].mean()),
        }
    )

    # ---- fitness head -------------------------------------------------------------------------------
    head = getattr(compressor, "predict_fitness", None)
    pred = head(z) if callable(head) else None
    res["head_r2"] = (
        _r2(pred.float().cpu().reshape(-1, 1), fitness.reshape(-1, 1)) if pred is not None else None
    )

    # ---- prior samples vs random initialisation -------------------------------------------------------
    if prior_samples > 0:
        gen = torch.Generator(device=device).manual_seed(seed)
        z_prior = compressor.sample(prior_samples, generator=gen)  # (S, s) from its prior
        w_prior = tok.detokenize(compressor.decode(z_prior).float(), dtype=torch.float32)
        w_init = task.init_genomes(prior_samples, torch.Generator().manual_seed(seed)).float()
        for name, w in (("prior", w_prior), ("init", w_init)):
            mm = _test_metrics(task, w)[key]
            res[f"{name}_{_short(key)}_best"] = float(mm.max() if key == "accuracy" else mm.min())
            res[f"{name}_{_short(key)}_mean"] = float(mm.mean())

    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        title = (
            f"{task.name} {split} ({len(idx)} models): retention {res['retention_mean']:.3f}, "
            f"R2 {res['recon_r2']:.3f}"
        )
        _scatter(o, r, f"test {key}", title, out / "retention.png")
        (out / "evaluation.json").write_text(json.dumps(res, indent=1))
        res["files"] = [str(out / "evaluation.json"), str(out / "retention.png")]
    if was_training:
        compressor.train()
    return res


def _short(key: str) -> str:
    return "acc" if key == "accuracy" else key
