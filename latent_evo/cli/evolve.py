"""`latent-evo evolve`: run latent (or direct-space) evolution from a YAML config.

    latent-evo evolve --config configs/evolve/mnist1d-latent-cma.yaml \\
        --set strategy.popsize=64 --strategy.hparams.sigma_init=0.5 --compressor runs/comp
    latent-evo evolve --resume runs/mnist1d-latent-cma-20260101-120000
    torchrun --nproc-per-node 2 -m latent_evo.cli evolve --config ...   # sharded evaluation

The run directory holds the resolved `config.yaml`, `history.csv` (+ TensorBoard events in
`tb/` when tensorboard is installed), `events.json` (switches, re-bases, fine-tunes),
`best.safetensors` (the best network's state dict), `plot.png`, `summary.md` and
`checkpoints/` (atomic; every `checkpoint_every` generations and on SIGINT/SIGTERM).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from latent_evo.config import read_yaml
from latent_evo.evolution.config import ConfigError, EvolveConfig, apply_override

CONFIG_FILE = "config.yaml"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="latent-evo evolve",
        description="Latent (or direct-space) evolution of a task's network from a YAML config. "
        "Any config key can be overridden with --set a.b=value or --a.b=value.",
    )
    p.add_argument("--config", help="YAML config (see configs/evolve/)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override, e.g. strategy.popsize=64 (repeatable)")  # fmt: skip
    p.add_argument("--compressor", help="pretrained compressor directory or Hub id")
    p.add_argument("--run-dir", help="output directory (default runs/<config>-<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--pbt",
        type=int,
        metavar="N",
        help="population-based training of the "
        "strategy's hyper-parameters over N runs sharing the budget (see pbt.*)",
    )
    return p


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[tuple[str, Any]]]:
    """Known options plus overrides, from `--set k=v` and jsonargparse-style `--k.x=v`/`--k.x v`."""
    args, rest = _parser().parse_known_args(argv)
    overrides = []
    for item in args.set:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        overrides.append((k.strip(), _parse_value(v)))
    i = 0
    while i < len(rest):
        tok = rest[i]
        if not tok.startswith("--"):
            raise ConfigError(f"unexpected argument {tok!r}")
        key, eq, val = tok[2:].partition("=")
        if not eq:
            if i + 1 >= len(rest):
                raise ConfigError(f"option --{key} needs a value")
            val, i = rest[i + 1], i + 1
        overrides.append((key, _parse_value(val)))
        i += 1
    return args, overrides


def load_config(args: argparse.Namespace, overrides: list[tuple[str, Any]]) -> EvolveConfig:
    raw: dict[str, Any] = {}
    if args.config:
        path = Path(args.config)
        raw = read_yaml(path, ConfigError, "evolve config")
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
    for k, v in overrides:
        apply_override(raw, k, v)
    if args.compressor:
        raw["compressor"] = args.compressor
    if getattr(args, "pbt", None):
        raw.setdefault("pbt", {}).update(enabled=True, members=args.pbt)
    try:
        return EvolveConfig.from_dict(raw)
    except ConfigError as e:
        where = f" in {args.config}" if args.config else ""
        raise ConfigError(f"{e}{where}") from None
    except TypeError as e:
        raise ConfigError(f"bad config{' in ' + args.config if args.config else ''}: {e}") from None


class RunLogger:
    """CSV (rewritten from the full history, so a resumed run's file has no lost or duplicate
    rows) + TensorBoard scalars, per generation; only on rank 0."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tb"))
        except Exception:  # tensorboard missing: CSV only
            self.tb = None

    def write_csv(self, history: list[dict[str, Any]]) -> None:
        keys: list[str] = []
        for h in history:
            keys += [k for k in h if k not in keys]
        tmp = self.run_dir / "history.csv.tmp"
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(history)
        tmp.replace(self.run_dir / "history.csv")

    def __call__(self, run: Any, record: dict[str, Any]) -> None:
        self.write_csv(run.history)
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, int | float) and k not in ("generation", "evaluations"):
                    self.tb.add_scalar(k, v, record["evaluations"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args, overrides = parse_args(argv)
        if args.resume:
            run_dir = Path(args.resume)
            if not (run_dir / CONFIG_FILE).exists():
                raise ConfigError(f"--resume {run_dir}: no {CONFIG_FILE} there")
            base = argparse.Namespace(**{**vars(args), "config": str(run_dir / CONFIG_FILE)})
            cfg = load_config(base, overrides)
        else:
            if not args.config and not overrides:
                _parser().print_help()
                return 2
            cfg = load_config(args, overrides)
            stem = Path(args.config).stem if args.config else "evolve"
            run_dir = Path(args.run_dir or f"runs/{stem}-{time.strftime('%Y%m%d-%H%M%S')}")
    except ConfigError as e:
        print(f"latent-evo evolve: error: {e}", file=sys.stderr)
        return 2
    return _run(cfg, run_dir, resume=bool(args.resume), progress=not args.no_progress)


def _run(cfg: EvolveConfig, run_dir: Path, resume: bool, progress: bool) -> int:
    import torch

    from latent_evo.evolution.distributed import init_from_env, is_main
    from latent_evo.evolution.loop import LatentEvolution, resolve_device
    from latent_evo.evolution.plots import plot_history, summary_table
    from latent_evo.tasks.function import NonFiniteFitnessError

    device = resolve_device(cfg.device)
    if cfg.pbt.enabled:
        return _run_pbt(cfg, run_dir, resume, progress, device)
    init_from_env(device)
    main_rank = is_main()
    try:  # built before anything is written: a bad task/strategy/compressor leaves no run dir
        run = LatentEvolution(cfg.task.name, None, None, cfg, [], device)
    except (ValueError, FileNotFoundError) as e:  # no traceback, the message names the culprit
        print(f"latent-evo evolve: error: {e}", file=sys.stderr)
        return 2
    if main_rank:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / CONFIG_FILE).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    logger = RunLogger(run_dir) if main_rank else None
    if logger is not None:
        run.callbacks.append(logger)
    if resume and (run_dir / "checkpoints").exists():
        run.load(run_dir)
        if main_rank:
            print(
                f"resumed {run_dir} at generation {run.generation} ({run.evaluations} evaluations)"
            )
    t0 = time.time()
    try:
        result = run.run(checkpoint_dir=run_dir, progress=progress)
    except NonFiniteFitnessError as e:  # the checkpoints written so far stay resumable
        print(f"latent-evo evolve: error: {e}", file=sys.stderr)
        return 3
    if not main_rank:
        return 0
    logger.write_csv(result.history)
    logger.close()
    from safetensors.torch import save_file

    best_sd = {k: v.detach().cpu().contiguous() for k, v in result.best_model.state_dict().items()}
    save_file(best_sd, str(run_dir / "best.safetensors"))
    (run_dir / "events.json").write_text(json.dumps(result.events, indent=1))
    plot_history(result.history, run_dir / "plot.png", result.events, title=f"{cfg.task.name} / "
                 f"{cfg.mode} {cfg.strategy.name}")  # fmt: skip
    rows = {
        "task": cfg.task.name, "mode": cfg.mode, "strategy": cfg.strategy.name,
        "generations": result.generations, "true evaluations": result.evaluations,
        "evaluations saved by surrogate": run.saved_evaluations,
        "best fitness": result.best_fitness, **result.test_metrics,
        "switches": sum(e["event"] == "switch" for e in result.events),
        "fine-tunes": sum(e["event"] == "finetune" for e in result.events),
        "wall time this session (s)": round(time.time() - t0, 1),
        "interrupted": result.interrupted,
    }  # fmt: skip
    table = summary_table(rows)
    (run_dir / "summary.md").write_text(table + "\n")
    print(table)
    print(f"run directory: {run_dir}")
    del torch
    return 130 if result.interrupted else 0


def _run_pbt(cfg: EvolveConfig, run_dir: Path, resume: bool, progress: bool, device: Any) -> int:
    """PBT's run directory: config.yaml, checkpoints/, best.safetensors, pbt.json (each member's
    hyper-parameters and every exploit), summary.md, plot.png (the best member's history)."""
    from safetensors.torch import save_file

    from latent_evo.evolution.pbt import PBT
    from latent_evo.evolution.plots import plot_history, summary_table
    from latent_evo.tasks.function import NonFiniteFitnessError

    try:
        pbt = PBT(cfg.task.name, None, cfg, device=device)
    except (ValueError, FileNotFoundError) as e:
        print(f"latent-evo evolve: error: {e}", file=sys.stderr)
        return 2
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_FILE).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    if resume and (run_dir / "checkpoints").exists():
        pbt.load(run_dir)
        print(f"resumed {run_dir} at round {pbt.round} ({pbt.evaluations} evaluations)")
    try:
        res = pbt.run(checkpoint_dir=run_dir, progress=progress)
    except NonFiniteFitnessError as e:
        print(f"latent-evo evolve: error: {e}", file=sys.stderr)
        return 3
    best = res.best
    sd = {k: v.detach().cpu().contiguous() for k, v in best.best_model.state_dict().items()}
    save_file(sd, str(run_dir / "best.safetensors"))
    (run_dir / "pbt.json").write_text(json.dumps(
        {"hparams": res.hparams, "events": res.events, "evaluations": res.evaluations,
         "best_fitness": [m.best_fitness for m in res.members]}, indent=1))  # fmt: skip
    plot_history(best.history, run_dir / "plot.png", best.events,
                 title=f"{cfg.task.name} / PBT {cfg.strategy.name} (best member)")  # fmt: skip
    i = res.best_index
    rows = {
        "task": cfg.task.name, "mode": cfg.mode, "strategy": cfg.strategy.name,
        "members": len(res.members), "true evaluations (all members)": res.evaluations,
        "best member": i, "best fitness": best.best_fitness, **best.test_metrics,
        **{f"tuned {k}": v for k, v in res.hparams[i].items()},
        "exploits": len(res.events),
    }  # fmt: skip
    table = summary_table(rows)
    (run_dir / "summary.md").write_text(table + "\n")
    print(table)
    print(f"run directory: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
