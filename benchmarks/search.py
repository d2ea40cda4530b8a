"""`latent-evo bench search`: test accuracy vs true evaluations, latent vs direct vs baselines
(see `latent_evo.benchmarks.cli`)."""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from latent_evo.benchmarks.baselines import Tracker, run_baseline
from latent_evo.benchmarks.common import ROOT, provenance, provenance_md
from latent_evo.benchmarks.external import EXTERNAL, run_external
from latent_evo.benchmarks.methods import (  # noqa: F401  (re-exported: cli, tests)
    ALL_METHODS,
    BASELINES,
    DIRECT_CMA_MAX_DIM,
    FINETUNE,
    LABELS,
    MINIBATCH,
    OUTPUT_LAYER,
    POP,
    PORTFOLIO,
    SWITCH,
    TRANSFER_QUICK,
    VALIDATION,
    ZOO_METHODS,
    ZOO_NETWORK,
    evolve_methods,
    output_layer,
    resolve_decoder_head,
)

# ---------------------------------------------------------------------------------- search
SETTINGS = {
    "family": ("mnist1d-mlp", "the compressor's pretraining task family (fresh search seeds)"),
    "transfer": ("mnist1d-shift-mlp", "unseen task: MNIST-1D generated with different settings"),
    "digits40": (
        "digits40-mlp",
        "unseen dataset: sklearn digits on 40 principal components, same MLP 40-100-100-10",
    ),
    # the 40-256-256-10 MLP; pass its compressor and zoo (--compressor, --zoo)
    "wide": (
        "mnist1d-mlp-wide",
        "the compressor's pretraining task family, MLP 40-256-256-10 (fresh search seeds)",
    ),
    "wide-transfer": (
        "mnist1d-shift-mlp-wide",
        "unseen task for the 40-256-256-10 compressor: MNIST-1D generated with different settings",
    ),
    # issue 16's families; pass each family's compressor and zoo (--compressor, --zoo)
    "cnn": ("mnist1d-cnn", "the compressor's task family, 1-d CNN 16-32 (fresh search seeds)"),
    "cnn-transfer": (
        "mnist1d-shift-cnn",
        "unseen task for the CNN compressor: MNIST-1D generated with different settings",
    ),
    # language models: the zoo's text is the corpus' first half (parts 0-7 of 16); a third
    # element gives the setting's task overrides
    "lstm": (
        "text-lstm",
        "the compressor's task family, char-LSTM 64/128 on the corpus' first "
        "half (fresh search seeds)",
        {"data": {"part": [0, 2]}},
    ),
    "lstm-transfer": (
        "text-lstm",
        "unseen text for the LSTM compressor: corpus parts 14-15 of 16",
        {"data": {"part": [7, 8]}},
    ),
    "gpt2": (
        "text-gpt2-tiny",
        "the compressor's task family, GPT-2 'tiny' (95,664 params) on the corpus' first half "
        "(fresh search seeds)",
        {"data": {"part": [0, 2]}},
    ),
    "gpt2-transfer": (
        "text-gpt2-tiny",
        "unseen text for the GPT-2 'tiny' compressor: corpus parts 14-15 of 16",
        {"data": {"part": [7, 8]}},
    ),
    "resnet": (
        "digits-resnet8",
        "the compressor's task family, ResNet-8 on digits (fresh search seeds)",
    ),
    "resnet-transfer": (
        "digits-shift-resnet8",
        "unseen data for the ResNet compressor: digits turned a quarter, moved up to 1 pixel",
    ),
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


def zoo_network(comp) -> Path:
    """The best network of the compressor's zoo, shipped beside it (the bundle's)."""
    from latent_evo.compressor.hub import bundled_compressor_path

    path = Path(getattr(comp, "source_path", None) or bundled_compressor_path())
    return path / "best_zoo_network.safetensors"


def heldout_loss(task, genome: torch.Tensor, seed: int) -> float:
    """Mean loss of `genome` on the validation split a validated run with this seed holds out
    (`VALIDATION`), computed on a copy of the task; a run without validation trained on it."""
    t = copy.deepcopy(task)
    t.hold_out(VALIDATION["fraction"], seed)
    return float(t.validation_losses(genome[None], VALIDATION["chunks"]).mean())


def run_method(
    name: str, task, comp, zoo: Path, budget: int, seed: int, eval_every: int, sgd_steps: int,
    progress: bool,
) -> dict[str, Any]:  # fmt: skip
    from latent_evo.evolution.evolve import evolve

    # every run gets its own copy: online fine-tuning updates the compressor in place, and a
    # fine-tuned compressor must not leak into the next run
    comp = copy.deepcopy(comp) if comp is not None else None
    if name == "zoo-best-network":  # one evaluation: the network the user already has
        from latent_evo.evolution.sources import load_network_genome

        t0, tr = time.perf_counter(), Tracker(task, eval_every * POP)
        tr.add(load_network_genome(zoo_network(comp), task.spec)[None], force_log=True)
        r = tr.result(time.perf_counter() - t0, note=f"`{zoo_network(comp)}`, evaluated once "
                      "(ranking the zoo is not counted, here or in the runs started from it)")  # fmt: skip
        return {**r, "val_loss": heldout_loss(task, tr.best_g, seed)}
    if name in BASELINES:
        return run_baseline(name, task, comp, zoo, budget, seed, eval_every * POP, sgd_steps)
    if name in EXTERNAL:
        t0, tracker = time.perf_counter(), Tracker(task, eval_every * POP)
        r = run_external(name, task, tracker, budget, seed, POP)
        return r if "skipped" in r else tracker.result(time.perf_counter() - t0, **r)
    opts = copy.deepcopy(evolve_methods()[name])
    if name == "direct-cma" and task.spec.numel > DIRECT_CMA_MAX_DIM:
        return {"skipped": f"d = {task.spec.numel:,} > {DIRECT_CMA_MAX_DIM}: full-covariance "
                           "CMA-ES needs a d x d matrix and O(d^2) work per sample"}  # fmt: skip
    if opts.get("switch", {}).get("tensors") == OUTPUT_LAYER:
        opts["switch"]["tensors"] = output_layer(task.spec)
    if "portfolio" in opts:
        arms = opts["portfolio"]["direct"]
        opts["portfolio"]["direct"] = [
            output_layer(task.spec) if a == OUTPUT_LAYER else a for a in arms
        ]
    resolve_decoder_head(opts, comp)
    if opts["init"]["kind"] == "zoo":
        opts["init"]["path"] = str(zoo)
    if opts["init"].get("path") == ZOO_NETWORK:
        opts["init"]["path"] = str(zoo_network(comp))
    # a validated run holds out part of the task's training data: on its own copy, so the
    # runs after it train on the whole split
    run_task = copy.deepcopy(task) if opts.get("validation", {}).get("enabled") else task
    generations = opts.pop("generations", None)  # None: the evaluation budget ends the run
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    if opts.get("compressor") == "fresh":  # the run builds its own
        comp = opts.pop("compressor")
    res = evolve(
        task=run_task, compressor=comp if opts["mode"] != "direct" else None,
        evaluations=budget, generations=generations, seed=seed,
        device="cpu", progress=progress, eval_every=eval_every,
        **opts,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    if res.interrupted:  # SIGINT / SIGTERM: the whole benchmark stops, not just this run
        raise KeyboardInterrupt(f"{name}, seed {seed}: stopped by a signal")
    hist = [
        {
            k: h[k]
            for k in ("evaluations", "best_fitness", "test_accuracy", "test_loss", "val_loss")
            if k in h
        }
        for h in res.history
        if "test_accuracy" in h
    ]
    return {
        "history": hist, "events": res.events, "evaluations": res.evaluations,
        "best_fitness": res.best_fitness, "test": res.test_metrics, "wall_s": wall,
        "options": opts, "validated": res.validation_loss is not None,
        # the reported network's loss on the held-out split (the run's own, where validated)
        "val_loss": res.validation_loss if res.validation_loss is not None
        else heldout_loss(task, res.best_genome, seed),
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
        bpc = [r["test"]["test_bpc"] for r in runs if "test_bpc" in r["test"]]
        val = [r["val_loss"] for r in runs if r.get("val_loss") is not None]
        rows.append({
            "method": name, "acc_mean": m, "acc_std": s, "seeds": len(runs),
            "bpc": _mean_std(bpc) if len(bpc) == len(runs) else None,
            "val": _mean_std(val) if len(val) == len(runs) else None,
            "validated": all(r.get("validated") for r in runs),
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
        direct = name.startswith("direct") or name in EXTERNAL
        ls = "--" if direct else ("-." if name in BASELINES else "-")
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


def _val_cell(r: dict[str, Any]) -> str:
    """Held-out loss of the reported network; `*`: the run never held it out (trained on it)."""
    if not r.get("val"):
        return "— | "
    return f"{r['val'][0]:.4f} ± {r['val'][1]:.4f}{'' if r.get('validated') else ' *'} | "


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
        "priori (`latent_evo.benchmarks.search.evolve_methods`), not tuned per task.",
        "",
    ]
    for key, setting in results["settings"].items():
        rows = summarize(setting, thresholds)
        sgd = [r for r in rows if r["method"] == "sgd"]
        sgd_acc = sgd[0]["acc_mean"] if sgd else float("nan")
        text = any(r.get("bpc") for r in rows)  # language models: bits per char too
        val = any(r.get("val") for r in rows)  # held-out loss of the reported network
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
            "| method | test acc (mean ± std) | "
            + ("test bits/char | " if text else "")
            + ("val loss | " if val else "")
            + "evals used | wall s / run | "
            + " | ".join(f"evals to {k}" for k in thr_keys)
            + " |",
            "|---|---:|---:|---:|" + "---:|" * (len(thr_keys) + text + val),
        ]
        for r in rows:
            label = LABELS.get(r["method"], r["method"])
            if "skipped" in r:
                lines.append(
                    f"| {label} | skipped: {r['skipped']} |"
                    + " |" * (2 + text + val + len(thr_keys))
                )
                continue
            cells = []
            for k in thr_keys:
                med, ok, n = r["reach"].get(k, (None, 0, 0))
                cells.append("—" if r["method"] == "sgd" else
                             (f"{med:,.0f} ({ok}/{n})" if med is not None else f"not ({ok}/{n})"))  # fmt: skip
            ev = "gradients" if r["evaluations"] is None else f"{r['evaluations']:,}"
            lines.append(
                f"| {label} | {r['acc_mean']:.3f} ± {r['acc_std']:.3f} ({r['seeds']}) | "
                + (
                    f"{r['bpc'][0]:.3f} ± {r['bpc'][1]:.3f} | "
                    if r.get("bpc")
                    else "| "
                    if text
                    else ""
                )  # fmt: skip
                + (_val_cell(r) if val else "")
                + f"{ev} | "
                f"{r['wall_s']:.1f} | " + " | ".join(cells) + " |"
            )
        notes = [(LABELS.get(r["method"], r["method"]), r.get("note")) for r in rows]
        if val:
            notes.insert(0, ("val loss", "mean loss of the reported network on the 10 % of the "
                             "training split a validated run with the same seed holds out (8 "
                             "parts); * marks runs without validation, which trained on it"))  # fmt: skip
        lines += ["", *(f"- {lab}: {n}" for lab, n in notes if n), ""]
    return "\n".join(lines) + "\n"


def run_search(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    from latent_evo.compressor.hub import load_compressor
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
    uses_zoo = [m for m in methods if m in ZOO_METHODS]
    if uses_zoo and not (zoo / "zoo.json").is_file():
        hint = (
            f"the zoo {zoo} (for {', '.join(uses_zoo)}) does not exist; make it with `latent-evo "
            "zoo generate --config configs/zoo/mnist1d-mlp-shared.yaml` (the bundle's zoo) or pass --zoo"
        )
        if not getattr(args, "methods_defaulted", False):
            raise FileNotFoundError(hint)
        print(f"note: {hint}; running without those methods", flush=True)
        methods = [m for m in methods if m not in ZOO_METHODS]
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
        task_name, desc, *more = SETTINGS[key]
        overrides = more[0] if more and not args.task else {}
        if args.task:
            task_name = args.task
        task = get_task(task_name, **overrides)
        ms = methods if not key.endswith("transfer") or args.transfer_methods == "all" else [
            m for m in methods if m in args.transfer_methods.split(",")
        ]  # fmt: skip
        st = results["settings"][key] = {
            "task": task_name, "task_overrides": overrides, "description": desc,
            "params": task.spec.numel, "runs": {},
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
    """Re-render one search.json, or several (comma list: runs of the same settings and budget
    split over processes by method or seed) merged into one report."""
    files = [Path(f) for f in args.from_json.split(",")]
    results = json.loads(files[0].read_text())
    for f in files[1:]:
        more = json.loads(f.read_text())
        if more["budget"] != results["budget"]:
            raise ValueError(f"{f}: budget {more['budget']} differs from {files[0]}'s")
        for key, st in more["settings"].items():
            runs = results["settings"].setdefault(key, {**st, "runs": {}})["runs"]
            for m, rs in st["runs"].items():
                runs.setdefault(m, []).extend(rs)
        results["seeds"] = sorted(set(results["seeds"]) | set(more["seeds"]))
        results["provenance"].setdefault("merged", []).append(more["provenance"])
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
