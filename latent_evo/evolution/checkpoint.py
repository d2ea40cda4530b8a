"""Atomic checkpoints of an evolution run: tensors in safetensors, the rest in JSON, never pickle.

Layout inside a run directory::

    checkpoints/gen-000040/state.safetensors   every tensor (strategy, RNGs, archive, compressor)
    checkpoints/gen-000040/state.json          counters, history, events (plain JSON)
    checkpoints/latest                         the name of the newest complete checkpoint

A checkpoint is written into a temporary directory, fsynced and renamed; only then is `latest`
replaced (write + `os.replace`, atomic on POSIX). A process killed at any moment therefore
leaves either the previous or the new checkpoint, never a torn one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

TENSORS = "state.safetensors"
META = "state.json"
LATEST = "latest"


class CheckpointError(RuntimeError):
    """A checkpoint is missing or unreadable; the message names the file."""


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(
    root: str | Path,
    name: str,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write `root/name/` atomically and point `root/latest` at it; keep the newest `keep`."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    # safetensors wants contiguous CPU tensors that do not share memory
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    save_file(flat, str(tmp / TENSORS))
    with open(tmp / META, "w") as f:
        json.dump(meta, f)
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(tmp)
    final = root / name
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    latest_tmp = root / f".{LATEST}.tmp"
    latest_tmp.write_text(name)
    os.replace(latest_tmp, root / LATEST)
    _fsync_dir(root)
    # prune old checkpoints (sorted by name: gen-000010 < gen-000020)
    done = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for old in done[:-keep] if keep > 0 else []:
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(root: str | Path) -> Path | None:
    root = Path(root)
    pointer = root / LATEST
    if not pointer.exists():
        return None
    path = root / pointer.read_text().strip()
    return path if (path / TENSORS).exists() and (path / META).exists() else None


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read one checkpoint directory (or a root with a `latest` pointer)."""
    path = Path(path)
    if (path / LATEST).exists():
        resolved = latest_checkpoint(path)
        if resolved is None:
            raise CheckpointError(f"{path / LATEST} points to a missing or incomplete checkpoint")
        path = resolved
    for f in (TENSORS, META):
        if not (path / f).exists():
            raise CheckpointError(f"no checkpoint at {path}: {f} is missing")
    try:
        tensors = load_file(str(path / TENSORS))
        meta = json.loads((path / META).read_text())
    except Exception as e:  # corrupted file: name it instead of a deep stack trace
        raise CheckpointError(f"cannot read checkpoint {path}: {e}") from e
    return tensors, meta


def prefixed(prefix: str, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in sd.items()}


def unprefixed(prefix: str, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    p = prefix + "."
    return {k[len(p) :]: v for k, v in sd.items() if k.startswith(p)}


class CheckpointMixin:
    """`state_dict` / `load_state_dict` / `save` / `load` of `LatentEvolution`: strategies
    (all three), search-space state (residual base, the base of a `switch.tensors` phase),
    archive, fine-tuned compressor, the run's generator and torch's global RNG (training
    noise), counters, history and events."""

    def state_dict(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """(tensors, JSON-able metadata): everything needed to continue bit-identically."""
        t: dict[str, Tensor] = {"rng": self.rng.get_state(), "torch_rng": torch.get_rng_state()}
        t.update(prefixed("strategy", self.strategy.state_dict()))
        t.update(prefixed("space", self.space.state_dict()))
        if self.switch_space is not self.direct_space:
            t.update(prefixed("switch_space", self.switch_space.state_dict()))
        for name in ("direct_strategy", "warmup_strategy"):
            s = getattr(self, name)
            if s is not None:
                t.update(prefixed(name, s.state_dict()))
        if self.archive is not None:
            t.update(prefixed("archive", self.archive.state_dict()))
            t.update(prefixed("compressor", self.compressor.state_dict()))
        if self.best_genome is not None:
            t["best_genome"] = self.best_genome
        if self.device.type == "cuda":
            t["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        meta = {
            "generation": self.generation, "evaluations": self.evaluations,
            "saved_evaluations": self.saved_evaluations, "best_fitness": self.best_fitness,
            "phase": self.phase, "last_switch": self.last_switch, "warmup_active": self.warmup_active,
            "initialized": self.initialized, "history": self.history, "events": self.events,
            "config": self.cfg.to_dict(),
        }  # fmt: skip
        return t, meta

    def load_state_dict(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        from latent_evo.evolution.hybrid import SEED_DIRECT, SEED_WARMUP, make_strategy

        dev = self.device
        self.rng.set_state(tensors["rng"])
        torch.set_rng_state(tensors["torch_rng"])
        if "cuda_rng" in tensors and dev.type == "cuda":
            torch.cuda.set_rng_state(tensors["cuda_rng"], dev)
        self.strategy.load_state_dict(unprefixed("strategy", tensors))
        for name in ("space", "switch_space"):
            sd = {k: v.to(dev) for k, v in unprefixed(name, tensors).items()}
            getattr(self, name).load_state_dict(sd)
        sw, wu = self.cfg.switch.strategy, self.cfg.finetune.warmup.strategy
        for name, scfg, off in (
            ("direct_strategy", sw, SEED_DIRECT),
            ("warmup_strategy", wu, SEED_WARMUP),
        ):
            sd = unprefixed(name, tensors)
            if sd:
                dim = self.switch_space.dim if name == "direct_strategy" else self.n
                s = make_strategy(scfg, dim, dev, self.cfg.seed + off)
                s.load_state_dict(sd)
                setattr(self, name, s)
        if self.archive is not None:
            self.archive.load_state_dict(unprefixed("archive", tensors))
            self.compressor.load_state_dict(unprefixed("compressor", tensors))
            self.compressor.eval()
        self.best_genome = tensors["best_genome"].to(dev) if "best_genome" in tensors else None
        for k in ("generation", "evaluations", "saved_evaluations", "best_fitness", "phase",
                  "last_switch", "warmup_active", "initialized", "history", "events"):  # fmt: skip
            setattr(self, k, meta[k])

    def save(self, root: str | Path) -> Path | None:
        """Atomic checkpoint under `root/checkpoints/` (rank 0 only when distributed)."""
        from latent_evo.evolution.distributed import is_main

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
