"""The evolution run: ask -> decode -> evaluate -> tell -> log -> checkpoint.

loop.py          `LatentEvolution`: the run, its state and its result
evolve.py        `evolve()`: keyword options -> one typed config -> a finished run
config.py        `EvolveConfig`: every option of a run, from YAML or dicts, checked once
sections.py      the config's sections, one dataclass per concern
spaces.py        search spaces: latent, residual around a base, direct, a subset of tensors,
                 latent code + decoder parameters
factory.py       the search space of a mode, a strategy over a space, seed offsets
generator.py     a coordinate-query generator whose weights are the genome (mode generator)
switch.py        switching between latent and direct space when progress stalls
portfolio.py     the default search: generations go to the space that lately improved most
surrogate.py     pre-screening offspring with the compressor's fitness head
rebase.py        moving a latent search onto a genome (residual re-basing, re-centring)
finetune.py      online fine-tuning of the compressor on evaluated genomes, re-encoding, warm-up
incumbent.py     the best network known, when a challenger replaces it, the validation gate
minibatch.py     fresh minibatches that grow when their noise hides progress
sources.py       starting genomes from a network file or a zoo
result.py        `EvolveResult`, and the device a run resolves to
progress.py      the run's progress bar
run_state.py     a run's state gathered for checkpoints and put back
checkpoint.py    atomic safetensors + JSON checkpoints (a killed run resumes bit-identically)
distributed.py   sharding a population over torch.distributed ranks
plots.py         the run directory's fitness / accuracy plot and summary table
pbt.py           population-based training of a strategy's hyper-parameters over N runs
"""

from latent_evo.evolution.config import ConfigError, EvolveConfig
from latent_evo.evolution.evolve import evolve
from latent_evo.evolution.loop import EvolveResult, LatentEvolution
from latent_evo.evolution.pbt import PBT, PBTResult

__all__ = ["PBT", "ConfigError", "EvolveConfig", "EvolveResult", "LatentEvolution", "PBTResult",
           "evolve"]  # fmt: skip
