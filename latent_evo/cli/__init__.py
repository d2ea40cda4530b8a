"""`latent-evo` command line: one entry point that dispatches lazily to each subcommand.

Subcommand modules are imported only when chosen, so `latent-evo --help` stays fast and
`import latent_evo` never pulls in Lightning.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module with a `main(argv) -> int`, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "zoo": ("latent_evo.cli.zoo", "generate, inspect and import model zoos"),
    "pretrain": ("latent_evo.cli.pretrain", "pretrain a genome compressor (LightningCLI: fit/validate/test)"),
    "evolve": ("latent_evo.cli.evolve", "run latent (or direct-space) evolution from a YAML config"),
    "hub": ("latent_evo.cli.hub", "push / pull compressors to and from the Hugging Face Hub"),
    "demo": ("latent_evo.cli.demo", "latent evolution vs direct GA / OpenAI-ES vs SGD on MNIST-1D"),
    "bench": ("latent_evo.cli.bench", "speed and search-efficiency benchmarks"),
}  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="latent-evo",
        description="Latent neuroevolution: GA and ES in the latent space of a genome compressor.",
    )
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_) in SUBCOMMANDS.items():
        # add_help=False: the subcommand's own parser answers `latent-evo NAME --help`
        sub.add_parser(name, help=help_, add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if not argv or argv[0] not in SUBCOMMANDS:
        args = parser.parse_args(argv)
        if args.version:
            from latent_evo import __version__

            print(__version__)
            return 0
        parser.print_help()
        return 0 if not argv else 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(SUBCOMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
