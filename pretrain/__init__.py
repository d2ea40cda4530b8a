"""Lightning pretraining of the genome compressor (`latent-evo pretrain fit|validate|test`).

Imported lazily so `import latent_evo.pretrain` does not pull in Lightning (seconds of import):
`CompressorModule`, `ZooDataModule`, `evaluate_compressor`, `main`.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "CompressorModule": "latent_evo.pretrain.module",
    "NonFiniteLossError": "latent_evo.pretrain.module",
    "ZooDataModule": "latent_evo.pretrain.data",
    "ZooMismatchError": "latent_evo.pretrain.data",
    "evaluate_compressor": "latent_evo.pretrain.evaluate",
    "main": "latent_evo.cli.pretrain",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'latent_evo.pretrain' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
