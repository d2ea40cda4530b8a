"""`latent-evo bench speed|search`: the speed and search-efficiency benchmarks.

    latent-evo bench speed  [--quick] [--repeats 5] [--out benchmarks/results]
    latent-evo bench search [--quick] [--seeds 0,1,2] [--budget 20000] [--methods all]
                            [--settings family,transfer] [--out benchmarks/results]

The logic lives in `speed.py`, `search.py` and `common.py` beside this file. Every result file
names the machine, the command and the git commit; timings
are medians over repeats and every ratio is measured within one process.

speed   population-evaluation throughput (genomes/s) of latent search (decode + vmapped forward)
        vs direct vmapped forward vs a per-module Python loop, per task and population size;
        decode throughput (params/s) and peak memory for genome specs from 10k to 124M params
        (GPT-2 124M built on the `meta` device: no weights allocated), with streaming blocks.
search  test accuracy vs true fitness evaluations of latent / direct strategies, SGD (Adam) and
        memorisation baselines, >= 3 seeds each, on the compressor's task family (`family`) and
        on a task the compressor never saw (`transfer`); table, curves (PNG) and JSON.
"""

from __future__ import annotations

import argparse
import math
import sys

from latent_evo.benchmarks.common import DEFAULT_OUT, ROOT
from latent_evo.benchmarks.search import ALL_METHODS, TRANSFER_QUICK, run_search
from latent_evo.benchmarks.speed import SPEED_TASKS, run_speed


# ---------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="latent-evo bench", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="which", required=True)
    sp = sub.add_parser("speed", help="population and decode throughput, peak memory")
    sp.add_argument("--quick", action="store_true",
                    help="mnist1d-mlp + text-gpt2-tiny at P=64,256; decode up to 1M + GPT-2")  # fmt: skip
    sp.add_argument("--repeats", type=int, default=5)
    sp.add_argument("--tasks", default=None, help=f"comma list (default {','.join(SPEED_TASKS)})")
    sp.add_argument("--pops", default=None, help="comma list of populations (default 64,256,1024)")
    sp.add_argument("--parts", default="throughput,decode")
    sp.add_argument("--max-decode-params", type=float, default=math.inf,
                    help="skip decode specs larger than this")  # fmt: skip
    sp.add_argument("--device", default="auto")
    sp.add_argument("--compressor", default=None,
                    help="time this saved compressor's decoder on the tasks whose genome it fits "
                    "(default: an untrained one of the default config; cost ignores the weights)")  # fmt: skip
    sp.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    sp.add_argument("--out", default=str(DEFAULT_OUT), help="folder for speed.md / speed.json")
    sp.add_argument("--suffix", default="", help="file name suffix (speed<suffix>.md)")
    # seeds/budget/methods accepted for a uniform interface; speed ignores them
    for a in ("--seeds", "--budget", "--methods"):
        sp.add_argument(a, default=None, help=argparse.SUPPRESS)

    ss = sub.add_parser("search", help="search efficiency: accuracy vs true evaluations")
    ss.add_argument("--seeds", default="0,1,2")
    ss.add_argument("--budget", type=int, default=20000, help="true evaluations per run")
    ss.add_argument("--methods", default="all", help=f"comma list from {','.join(ALL_METHODS)}")
    ss.add_argument("--settings", default="family,transfer")
    ss.add_argument("--transfer-methods", default="all",
                    help=f"methods run in the transfer setting (e.g. {','.join(TRANSFER_QUICK)})")  # fmt: skip
    ss.add_argument("--quick", action="store_true",
                    help="budget 3000, all methods but plain latent CMA-ES; on the transfer task only "
                    + ",".join(TRANSFER_QUICK))  # fmt: skip
    ss.add_argument("--task", default=None, help="override the settings' task (e.g. smoke tests)")
    ss.add_argument("--compressor", default=None, help="default: bundled, else runs/bench-default")
    ss.add_argument("--zoo", default=str(ROOT / "zoos" / "mnist1d-mlp-shared"),
                    help="the compressor's zoo, for the memorisation baselines (default: the bundle's)")  # fmt: skip
    ss.add_argument("--sgd-steps", type=int, default=1500)
    ss.add_argument("--thresholds", default="0.2,0.25,0.3,0.4,0.5,0.6")
    ss.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    ss.add_argument("--progress", action="store_true", help="tqdm bar per run")
    ss.add_argument("--out", default=str(DEFAULT_OUT), help="folder for search.md/.json/.png")
    ss.add_argument("--suffix", default="")
    ss.add_argument("--from-json", default=None,
                    help="only re-render search.md and the plots from this search.json")  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        if args.which == "speed":
            args.parts = args.parts.split(",")
            run_speed(args, argv[1:])
        else:
            if args.quick:
                if "--budget" not in argv:
                    args.budget = 3000
                if "--methods" not in argv:  # plain latent CMA-ES: only with --methods
                    args.methods = ",".join(m for m in ALL_METHODS if m != "latent-cma")
                    args.methods_defaulted = True  # zoo methods are skipped without a zoo
                if "--transfer-methods" not in argv:
                    args.transfer_methods = ",".join(TRANSFER_QUICK)
            run_search(args, argv[1:])
    except (FileNotFoundError, ValueError) as e:
        print(f"latent-evo bench {args.which}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
