"""Benchmarks of latent-evo: installed as `latent_evo.benchmarks`, imported by nothing in the
library except the lazy `latent-evo bench` command.

    cli.py                `latent-evo bench speed|search`
    search.py             test accuracy vs true evaluations: latent vs direct vs baselines
    baselines.py          SGD and the memorisation baselines on the same counted budget
    external.py           EvoTorch / PyGAD on the same budget (the `bench` extra)
    speed.py              population and decode throughput, peak memory
    common.py             provenance (machine, command, commit), timing, peak memory
    codec.py, decode.py, pretrain_speed.py, prior_samples.py, space_ceilings.py,
    strategies_overhead.py, tasks_throughput.py, zoo_speed.py
                          one-off measurements: `python -m latent_evo.benchmarks.NAME`

Results land in `benchmarks/results/` and BENCHMARKS.md.
"""
