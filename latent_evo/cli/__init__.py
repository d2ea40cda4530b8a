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
    p.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE_OR_FILE",
        help="import your own code first (a module name or a .py file) so that the tasks it "
        "registers with latent_evo.tasks.register_task are known to the command; repeatable",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_) in SUBCOMMANDS.items():
        # add_help=False: the subcommand's own parser answers `latent-evo NAME --help`
        sub.add_parser(name, help=help_, add_help=False)
    return p


def import_user_code(target: str) -> None:
    """Import `target`: a dotted module name, or a path to a .py file (imported by its path,
    so it need not be importable by name). Raises ImportError naming the target."""
    import importlib.util
    from pathlib import Path

    path = Path(target)
    if target.endswith(".py") or path.is_file():
        if not path.is_file():
            raise ImportError(f"--import {target}: no such file")
        name = f"latent_evo_user_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses and pickling look modules up by name
        spec.loader.exec_module(module)
    else:
        importlib.import_module(target)


def _split_imports(argv: list[str]) -> tuple[list[str], list[str]]:
    """`--import X` / `--import=X` options before the command, and the rest."""
    imports, i = [], 0
    while i < len(argv) and argv[i].startswith("--import"):
        if argv[i] == "--import" and i + 1 < len(argv):
            imports.append(argv[i + 1])
            i += 2
        elif argv[i].startswith("--import="):
            imports.append(argv[i].split("=", 1)[1])
            i += 1
        else:
            break
    return imports, argv[i:]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    imports, argv = _split_imports(argv)
    for target in imports:
        try:
            import_user_code(target)
        except ImportError as e:
            print(f"latent-evo: cannot import {target!r}: {e}", file=sys.stderr)
            return 2
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
