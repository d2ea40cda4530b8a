"""latent-evo: train neural networks with GA and ES in the latent space of a genome compressor.

Kept light on purpose: importing the package loads torch and the codec, nothing else
(no Lightning, no datasets); heavier parts are imported from their own modules.
"""

from latent_evo.genome import GenomeError, GenomeSpec, TensorSpec

__version__ = "0.1.0"

__all__ = ["GenomeError", "GenomeSpec", "TensorSpec", "__version__"]
