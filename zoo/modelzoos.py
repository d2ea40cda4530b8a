"""Import a zoo in the public "Model Zoos" layout (Schürholt et al., NeurIPS 2022) into our format.

Expected layout (one Ray Tune trial folder per model)::

    SRC/
      <model folder>/
        params.json              the model's hyper-parameters (one JSON object)
        result.json              one JSON object per line, one line per reported epoch
        checkpoint_000000/       the state dict at epoch 0 (initialisation), ...
          checkpoints            -- a `torch.save`d state dict, or
          checkpoints.safetensors
        checkpoint_000001/ ...

Safety: we never unpickle. A `checkpoints` file is read with `torch.load(weights_only=True)`,
which only rebuilds tensors and plain containers and refuses anything else (a file holding
arbitrary objects fails with an error naming it); `checkpoints.safetensors` is preferred when
both exist. Convert such files with `safetensors.torch.save_file(state_dict, ...)` if needed.

Metrics of checkpoint N come from the result line whose "epoch" is N or, without "epoch" keys,
whose Ray "training_iteration" is N (Ray names checkpoint folders after it); metrics without a
line stay NaN. Keys read: test_loss/loss_test, test_acc/test_accuracy/acc_test, train_loss/loss_train.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import torch

from latent_evo.genome import GenomeError, GenomeSpec
from latent_evo.zoo.format import ZooError, ZooWriter

_CKPT = re.compile(r"^checkpoint_(\d+)$")
_KEYS = {
    "test_loss": ("test_loss", "loss_test"),
    "test_accuracy": ("test_acc", "test_accuracy", "acc_test"),
    "train_loss": ("train_loss", "loss_train"),
}


def load_checkpoint(folder: Path) -> dict[str, torch.Tensor]:
    """A checkpoint folder's state dict, without unpickling anything."""
    st = folder / "checkpoints.safetensors"
    pt = folder / "checkpoints"
    if st.is_file():
        from safetensors.torch import load_file

        try:
            return load_file(str(st))
        except Exception as e:
            raise ZooError(
                f"checkpoint {str(st)!r} is not a readable safetensors file ({e})"
            ) from e
    if not pt.is_file():
        raise ZooError(
            f"checkpoint folder {str(folder)!r} holds neither 'checkpoints' nor 'checkpoints.safetensors'"
        )
    try:
        obj = torch.load(pt, map_location="cpu", weights_only=True)
    except Exception as e:  # weights_only refuses pickled objects other than tensors / containers
        raise ZooError(
            f"checkpoint {str(pt)!r} cannot be loaded with torch.load(weights_only=True) ({type(e).__name__}: "
            f"{str(e)[:200]}); convert it to checkpoints.safetensors"
        ) from e
    if isinstance(obj, dict) and not all(torch.is_tensor(v) for v in obj.values()):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        raise ZooError(f"checkpoint {str(pt)!r} does not hold a state dict of tensors")
    return obj


def _read_results(path: Path) -> dict[int, dict[str, Any]]:
    """`{epoch: result line}` from result.json (see the module docstring for the epoch key)."""
    if not path.is_file():
        return {}
    lines = []
    for i, line in enumerate(path.read_text().splitlines()):
        if line.strip():
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ZooError(f"{str(path)!r} line {i + 1} is not valid JSON: {e}") from e
    key = "epoch" if any("epoch" in r for r in lines) else "training_iteration"
    return {int(r[key]): r for r in lines if key in r}


def _metric(result: dict[str, Any] | None, name: str) -> float:
    for k in _KEYS[name]:
        if result is not None and isinstance(result.get(k), int | float):
            return float(result[k])
    return math.nan


def _hparam(params: dict[str, Any], *suffixes: str) -> float:
    for k, v in params.items():
        if isinstance(v, int | float) and not isinstance(v, bool) and k.split("::")[-1] in suffixes:
            return float(v)
    return math.nan


def import_modelzoos(
    src: str | Path,
    dst: str | Path,
    task: str | None = None,
    shard_size: int = 4096,
    progress: bool = True,
) -> Path:
    """Convert the Model Zoos folder `src` into a zoo at `dst`; returns `dst`.

    `task` names the zoo's task (default `modelzoos/<src folder name>`); the genome spec comes from
    the first checkpoint, and every other checkpoint must match it."""
    from tqdm.auto import tqdm

    src = Path(src)
    if not src.is_dir():
        raise ZooError(f"Model Zoos source {str(src)!r} is not a directory")
    models = sorted(p for p in src.iterdir() if p.is_dir() and (p / "params.json").is_file())
    if not models:
        raise ZooError(f"no model folders (with params.json) under {str(src)!r}")
    writer: ZooWriter | None = None
    spec: GenomeSpec | None = None
    genomes: list[torch.Tensor] = []
    rows: list[dict[str, Any]] = []
    part = 0

    def flush() -> None:
        nonlocal part, genomes, rows
        if rows:
            writer.write_part(f"import-{part:05d}", torch.stack(genomes), rows)
            part, genomes, rows = part + 1, [], []

    for model_id, folder in enumerate(
        tqdm(models, desc="import", unit="model", disable=not progress)
    ):
        try:
            params = json.loads((folder / "params.json").read_text())
        except json.JSONDecodeError as e:
            raise ZooError(f"{str(folder / 'params.json')!r} is not valid JSON: {e}") from e
        results = _read_results(folder / "result.json")
        ckpts = sorted(
            (int(m.group(1)), p)
            for p in folder.iterdir()
            if (m := _CKPT.match(p.name)) and p.is_dir()
        )
        if not ckpts:
            raise ZooError(f"model folder {str(folder)!r} has no checkpoint_NNNNNN folders")
        for epoch, ck in ckpts:
            sd = load_checkpoint(ck)
            if spec is None:
                spec = GenomeSpec.from_state_dict(sd)
                writer = ZooWriter(
                    dst,
                    spec,
                    task or f"modelzoos/{src.name}",
                    config={"source": str(src)},
                    shard_size=shard_size,
                )
                writer.start(resume=False)
            try:
                genomes.append(
                    spec.flatten(
                        {k: v.to(spec.dtype) if v.is_floating_point() else v for k, v in sd.items()}
                    )
                )
            except GenomeError as e:
                raise ZooError(
                    f"checkpoint {str(ck)!r} does not match the zoo's architecture: {e}"
                ) from e
            res = results.get(epoch)
            rows.append(
                {
                    "model_id": model_id,
                    "cohort": 0,
                    "init_id": model_id,
                    "epoch": epoch,
                    "train_loss": _metric(res, "train_loss"),
                    "test_loss": _metric(res, "test_loss"),
                    "test_accuracy": _metric(res, "test_accuracy"),
                    "lr": _hparam(params, "lr", "learning_rate"),
                    "weight_decay": _hparam(params, "wd", "weight_decay"),
                    "epochs": max(e for e, _ in ckpts),
                    "hparams": json.dumps(
                        {**params, "source_folder": folder.name}, sort_keys=True, default=str
                    ),
                }
            )
        if len(rows) >= shard_size:
            flush()
    flush()
    writer.finalize()
    return Path(dst)
