"""What a finished run returns (`EvolveResult`), and where it runs (`resolve_device`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn


@dataclass
class EvolveResult:
    best_genome: Tensor  # (n,)
    best_fitness: float
    best_model: nn.Module  # a copy of the task's model carrying the best genome
    history: list[dict[str, Any]]  # one record per generation
    events: list[dict[str, Any]]  # switches, re-bases, fine-tunes
    evaluations: int  # true fitness evaluations spent
    generations: int
    test_metrics: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False  # stopped by SIGINT / SIGTERM before its budget
    #: with `validation.enabled`: the reported network's mean loss on the held-out data
    validation_loss: float | None = None


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
