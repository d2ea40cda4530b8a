"""`latent-evo zoo ...`: generate, inspect, import, push and pull model zoos; fit a compressor's
prior to a zoo."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from latent_evo.zoo.config import ZooConfigError
from latent_evo.zoo.format import ZooError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="latent-evo zoo", description="Model zoos: populations of trained networks."
    )
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", required=True)
    g = sub.add_parser("generate", help="train a zoo from a YAML config (vmapped cohorts)")
    g.add_argument("--config", required=True, help="configs/zoo/<name>.yaml")
    g.add_argument("--out", default=None, help="output directory (default: zoos/<config name>)")
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted zoo, skipping finished cohorts",
    )
    g.add_argument("--device", default=None, help="override the config's device (cpu, cuda, ...)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    lo = sub.add_parser(
        "lora", help="train a base network and a zoo of LoRA adapters on corpus parts (YAML)"
    )
    lo.add_argument("--config", required=True, help="configs/zoo/<name>-lora.yaml")
    lo.add_argument("--out", default=None, help="output directory (default: zoos/<config name>)")
    lo.add_argument("--no-progress", action="store_true", help="no progress bar")
    i = sub.add_parser("info", help="summarise a zoo directory")
    i.add_argument("zoo_dir")
    i.add_argument("--json", action="store_true", help="print the summary as JSON")
    m = sub.add_parser(
        "import-modelzoos", help="import a 'Model Zoos' (Schürholt et al. 2022) folder"
    )
    m.add_argument("src")
    m.add_argument("dst")
    m.add_argument("--task", default=None, help="task name stored in the zoo card")
    m.add_argument("--shard-size", type=int, default=4096)
    u = sub.add_parser("push", help="upload a zoo to a Hugging Face dataset repo")
    u.add_argument("zoo_dir")
    u.add_argument("repo_id")
    u.add_argument("--private", action="store_true")
    d = sub.add_parser("pull", help="download a zoo dataset repo from the Hugging Face Hub")
    d.add_argument("repo_id")
    d.add_argument("dst")
    d.add_argument("--revision", default=None)
    f = sub.add_parser(
        "fit-prior",
        help="fit a compressor's sampling prior to the codes of a zoo's checkpoints",
    )
    f.add_argument("zoo_dir")
    f.add_argument("compressor", help="a saved compressor folder (rewritten unless --out)")
    f.add_argument("--split", default="train", help="zoo split whose codes to fit (train|all|...)")
    f.add_argument("--shrinkage", type=float, default=0.05, help="covariance shrinkage to diag")
    f.add_argument("--out", default=None, help="write the compressor here instead")
    b = sub.add_parser(
        "best", help="save the zoo's best final checkpoint (lowest training loss) as safetensors"
    )
    b.add_argument("zoo_dir")
    b.add_argument("out", help="the network's state dict, e.g. best_zoo_network.safetensors")
    return p


def save_best(zoo_dir: str, out: str) -> str:
    """The memorisation baseline as a file: the best final checkpoint's state dict."""
    from safetensors.torch import save_file

    from latent_evo.zoo.dataset import ZooDataset

    ds = ZooDataset(zoo_dir, "all")
    i = ds.best_checkpoint()
    sd = ds.spec.unflatten(ds.genomes([i])[0])
    meta = {
        "zoo": str(ds.card.get("name")), "task": ds.task_name, "model_id": str(int(ds.model_ids[i])),
        "epoch": str(int(ds.epochs[i])), "train_loss": f"{float(ds.train_loss[i]):.6g}",
        "test_accuracy": f"{float(ds.accuracy[i]):.6g}",
    }  # fmt: skip
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous().clone() for k, v in sd.items()}, out, metadata=meta)
    return (
        f"wrote {out}: model {meta['model_id']} epoch {meta['epoch']} of {meta['zoo']} "
        f"(train loss {meta['train_loss']}, test accuracy {meta['test_accuracy']})"
    )


def fit_prior(zoo_dir: str, compressor: str, split: str, shrinkage: float, out: str | None) -> str:
    """Refit the prior of a saved compressor (e.g. one exported before priors were fitted)."""
    import shutil

    from latent_evo.compressor.hub import load_compressor
    from latent_evo.zoo.dataset import ZooDataset

    comp = load_compressor(compressor).eval()
    ds = ZooDataset(zoo_dir, split)
    codes = ds.encode(comp)
    comp.fit_prior(codes, shrinkage=shrinkage)
    dst = Path(out or compressor)
    if out:  # keep the card, pretraining.json and the rest of the folder
        shutil.copytree(compressor, dst, dirs_exist_ok=True)
    comp.save_pretrained(dst)
    return f"fitted the prior of {dst} to {len(codes)} codes of {ds!r}"


def zoo_info(zoo_dir: str | Path) -> dict:
    """Counts, fitness ranges per epoch and disk size of a zoo."""
    from latent_evo.zoo.dataset import ZooDataset

    ds = ZooDataset(zoo_dir, "all")
    card = ds.card
    per_epoch = {}
    for e in sorted(set(ds.epochs.tolist())):
        sel = ds.epochs == e
        per_epoch[e] = {
            "checkpoints": int(sel.sum()),
            "test_loss_mean": round(float(ds.fitness[sel].nanmean()), 4),
            "test_accuracy_mean": round(float(ds.accuracy[sel].nanmean()), 4),
        }
    size = sum(f.stat().st_size for f in Path(zoo_dir).rglob("*") if f.is_file())
    share = ds.within_cohort_share()
    return {
        "name": card.get("name"),
        "task": card["task"],
        "task_overrides": card.get("task_overrides", {}),
        "complete": card.get("complete", False),
        "models": len(set(ds.model_ids.tolist())),
        "cohorts": len(set(ds.cohorts.tolist())),
        "checkpoints": len(ds),
        "genome_length": ds.spec.numel,
        "size_bytes": size,
        "per_epoch": per_epoch,
        "within_cohort_share": None if math.isnan(share) else round(share, 4),
    }


def _print_info(info: dict) -> None:
    print(
        f"zoo {info['name']!r}: task {info['task']!r}{' (incomplete)' if not info['complete'] else ''}"
    )
    print(
        f"  {info['models']} models in {info['cohorts']} cohorts, {info['checkpoints']} checkpoints"
    )
    print(
        f"  genome length {info['genome_length']:,}, {info['size_bytes'] / 2**20:.1f} MiB on disk"
    )
    if info["within_cohort_share"] is not None:  # None with a single cohort
        print(
            f"  {info['within_cohort_share']:.1%} of the final networks' weight variance lies within "
            "cohorts (near 100 % in a shared-init zoo: its members did not stay together)"
        )
    print("  epoch  checkpoints  test_loss  test_acc")
    for e, r in info["per_epoch"].items():
        print(
            f"  {e:>5}  {r['checkpoints']:>11}  {r['test_loss_mean']:>9.4f}  {r['test_accuracy_mean']:>8.4f}"
        )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.cmd == "generate":
            from latent_evo.zoo.config import load_config
            from latent_evo.zoo.generate import generate_zoo

            cfg = load_config(args.config)
            if args.device:
                cfg.device = args.device
            out = generate_zoo(cfg, args.out, resume=args.resume, progress=not args.no_progress)
            _print_info(zoo_info(out))
        elif args.cmd == "lora":
            from latent_evo.zoo.lora import generate_lora_zoo

            _print_info(zoo_info(generate_lora_zoo(args.config, args.out, not args.no_progress)))
        elif args.cmd == "info":
            info = zoo_info(args.zoo_dir)
            print(json.dumps(info, indent=2)) if args.json else _print_info(info)
        elif args.cmd == "import-modelzoos":
            from latent_evo.zoo.modelzoos import import_modelzoos

            _print_info(zoo_info(import_modelzoos(args.src, args.dst, args.task, args.shard_size)))
        elif args.cmd == "fit-prior":
            print(fit_prior(args.zoo_dir, args.compressor, args.split, args.shrinkage, args.out))
        elif args.cmd == "best":
            print(save_best(args.zoo_dir, args.out))
        elif args.cmd == "push":
            from latent_evo.zoo.hub import push_zoo

            print(push_zoo(args.zoo_dir, args.repo_id, private=args.private))
        elif args.cmd == "pull":
            from latent_evo.zoo.hub import pull_zoo

            print(pull_zoo(args.repo_id, args.dst, revision=args.revision))
    except (ZooError, ZooConfigError, ValueError) as e:  # bad zoo, config, task or value
        print(f"latent-evo zoo {args.cmd}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
