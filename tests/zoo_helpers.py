"""A real (tiny) zoo on disk from given genomes, for tests of what reads zoos."""

from pathlib import Path

import torch


def write_zoo(
    root: Path, task_name: str, spec, genomes: torch.Tensor, epochs_per_model: int = 1
) -> Path:
    """`genomes` (N, n) become N checkpoints: model `i // epochs_per_model`, epoch `i % ...`."""
    from latent_evo.zoo.format import ZooWriter

    w = ZooWriter(root, spec, task_name)
    w.start(resume=False)
    rows = [
        {"model_id": i // epochs_per_model, "epoch": i % epochs_per_model}
        for i in range(len(genomes))
    ]
    w.write_part("c0", genomes, rows)
    w.finalize()
    return root
