"""latent-evo: train neural networks with GA and ES in the latent space of a genome compressor.

Kept light on purpose: `import latent_evo` loads torch and the genome codec only. Everything
else is imported on first use (`latent_evo.evolve`, `latent_evo.Compressor`, ...), so no
Lightning, datasets or torchvision is loaded until a feature needs it.
"""

import importlib

from latent_evo.genome import GenomeError, GenomeSpec, TensorSpec

__version__ = "0.1.0"

# public name -> module that defines it (imported lazily by __getattr__)
_LAZY = {
    "evolve": "latent_evo.evolution.evolve",
    "LatentEvolution": "latent_evo.evolution.loop",
    "EvolveResult": "latent_evo.evolution.loop",
    "EvolveConfig": "latent_evo.evolution.config",
    "Compressor": "latent_evo.compressor.attention",
    "load_compressor": "latent_evo.compressor.hub",
    "get_task": "latent_evo.tasks",
    "Task": "latent_evo.tasks",
    "get_strategy": "latent_evo.strategies",
}

__all__ = ["GenomeError", "GenomeSpec", "TensorSpec", "__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # cache: later lookups skip __getattr__
        return value
    raise AttributeError(f"module 'latent_evo' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
