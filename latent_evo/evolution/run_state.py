"""A run's state as checkpoints: `RunState`, the half of `LatentEvolution` that gathers every
part's state under its own prefix and puts it back.

`state_dict()` returns `(tensors, meta)`: tensors go to safetensors, the rest to JSON
(`checkpoint.py` writes them atomically). The parts (strategy, space, switcher or portfolio,
warm-up, archive, a fine-tuned compressor, a stateful task, the validation gate, the incumbent)
are attributes the run sets up in `LatentEvolution.__init__`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from latent_evo.evolution.checkpoint import (
    load_checkpoint,
    on_device,
    prefixed,
    save_checkpoint,
    unprefixed,
)
from latent_evo.evolution.distributed import is_main
from latent_evo.tasks.protocol import StatefulTask


class RunState:
    """Checkpointing of a `LatentEvolution` run (a mixin: it reads the run's parts)."""

    def state_dict(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """(tensors, JSON-able metadata): everything needed to continue bit-identically, each
        part's state under its own prefix. The RNGs: the run's generator (init draws, fine-tune
        minibatches) and torch's global one (the compressor's training noise)."""
        t: dict[str, Tensor] = {"rng": self.rng.get_state(), "torch_rng": torch.get_rng_state()}
        if self.device.type == "cuda":
            t["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        t.update(prefixed("strategy", self.strategy.state_dict()))
        t.update(prefixed("space", self.space.state_dict()))
        switch_t, switch_meta = self.switcher.state_dict()
        t.update(prefixed("switch", switch_t))
        meta: dict[str, Any] = {"switch": switch_meta}
        if self.warmup is not None:
            warmup_t, meta["warmup"] = self.warmup.state_dict()
            t.update(prefixed("warmup", warmup_t))
        if self.archive is not None:  # fine-tuning: the archive and the compressor it changed
            t.update(prefixed("archive", self.archive.state_dict()))
            t.update(prefixed("compressor", self.compressor.state_dict()))
        if isinstance(self.task, StatefulTask):  # e.g. running observation statistics
            t.update(prefixed("task", self.task.state_dict()))
        if self.gate is not None:
            gate_t, meta["validation"] = self.gate.state_dict()
            t.update(prefixed("validation", gate_t))
        if self.best_genome is not None:
            t["best_genome"] = self.best_genome
        meta.update(
            generation=self.generation, evaluations=self.evaluations,
            saved_evaluations=self.saved_evaluations, best_fitness=self.best_fitness,
            initialized=self.initialized, history=self.history, events=self.events,
            incumbent_version=self.incumbent.version, minibatch=self.schedule.state(),
            config=self.cfg.to_dict(),
        )  # fmt: skip
        return t, meta

    def load_state_dict(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        """The inverse of `state_dict`, into a run built with the same config."""
        dev = self.device
        self.rng.set_state(tensors["rng"])
        torch.set_rng_state(tensors["torch_rng"])
        if "cuda_rng" in tensors and dev.type == "cuda":
            torch.cuda.set_rng_state(tensors["cuda_rng"], dev)
        self.strategy.load_state_dict(unprefixed("strategy", tensors))
        self.space.load_state_dict(on_device(unprefixed("space", tensors), dev))
        self.switcher.load_state_dict(unprefixed("switch", tensors), meta["switch"])
        if self.warmup is not None:
            self.warmup.load_state_dict(unprefixed("warmup", tensors), meta["warmup"])
        if self.archive is not None:
            self.archive.load_state_dict(unprefixed("archive", tensors))
            self.compressor.load_state_dict(unprefixed("compressor", tensors))
            self.compressor.eval()
        if isinstance(self.task, StatefulTask):
            self.task.load_state_dict(unprefixed("task", tensors))
        self.incumbent.genome = tensors["best_genome"].to(dev) if "best_genome" in tensors else None
        self.generation, self.evaluations = meta["generation"], meta["evaluations"]
        self.saved_evaluations = meta["saved_evaluations"]
        self.incumbent.fitness = meta["best_fitness"]
        self.incumbent.version = meta.get("incumbent_version", 0)
        if "minibatch" in meta:
            self.schedule.load(meta["minibatch"])
        if self.gate is not None:
            gate_t = on_device(unprefixed("validation", tensors), dev)
            self.gate.load_state_dict(gate_t, meta["validation"])
        self.initialized, self.history, self.events = (
            meta["initialized"], meta["history"], meta["events"]
        )  # fmt: skip

    def save(self, root: str | Path) -> Path | None:
        """Atomic checkpoint under `root/checkpoints/` (rank 0 only when distributed)."""
        if not is_main():
            return None
        tensors, meta = self.state_dict()
        return save_checkpoint(
            Path(root) / "checkpoints", f"gen-{self.generation:06d}", tensors, meta
        )

    def load(self, root: str | Path) -> None:
        path = Path(root) / "checkpoints"
        tensors, meta = load_checkpoint(path if path.exists() else root)
        self.load_state_dict(tensors, meta)
