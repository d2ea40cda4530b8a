"""`latent-evo bench speed|search`: the benchmarks live in the repository's `benchmarks/` folder
(installed as `latent_evo.benchmarks`); this command only hands over to them."""


def main(argv: list[str] | None = None) -> int:
    from latent_evo.benchmarks.cli import main as bench_main

    return bench_main(argv)
