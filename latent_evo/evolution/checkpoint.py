"""Atomic checkpoint files of an evolution run: tensors in safetensors, the rest in JSON, never
pickle. What goes in them is `LatentEvolution.state_dict()` (loop.py); this module only writes and
reads them.

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

from latent_evo.integrity import sha256_file, verify

TENSORS = "state.safetensors"
META = "state.json"
LATEST = "latest"
HASH_KEY = "tensors_sha256"  # in state.json: sha256 of state.safetensors


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
    with open(tmp / META, "w") as f:  # the tensors' content hash travels in the JSON sidecar
        json.dump({**meta, HASH_KEY: sha256_file(tmp / TENSORS)}, f)
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
        meta = json.loads((path / META).read_text())
        verify(path / TENSORS, meta.pop(HASH_KEY, None), CheckpointError)
        tensors = load_file(str(path / TENSORS))
    except Exception as e:  # corrupted file: name it instead of a deep stack trace
        raise CheckpointError(f"cannot read checkpoint {path}: {e}") from e
    return tensors, meta


# ---- a part's state under its own prefix, in one flat tensor dict
def prefixed(prefix: str, sd: dict[str, Tensor]) -> dict[str, Tensor]:
    return {f"{prefix}.{k}": v for k, v in sd.items()}


def unprefixed(prefix: str, sd: dict[str, Tensor]) -> dict[str, Tensor]:
    p = prefix + "."
    return {k[len(p) :]: v for k, v in sd.items() if k.startswith(p)}


def on_device(sd: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    # spaces keep the tensors they are given; checkpoints load on the CPU
    return {k: v.to(device) for k, v in sd.items()}
