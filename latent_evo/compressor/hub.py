"""Compressors on the Hugging Face Hub: resolve, pull, push, and the model card.

A compressor repo is a folder: `config.json` + `model.safetensors` (written by
`Compressor.save_pretrained`), plus optional `metrics.json` (the evaluation on held-out zoo
models) and `provenance.json` (the zoo it was trained on). The same folder works as a local
path and as a Hub repo, so `load_compressor` takes either.
"""

from __future__ import annotations

import json
import os
from importlib.resources import files
from pathlib import Path
from typing import Any

CARD_FILE = "README.md"
METRICS_FILE = "metrics.json"
PROVENANCE_FILE = "provenance.json"
PRETRAINING_FILE = "pretraining.json"  # written by `latent-evo pretrain fit` next to the export
LIBRARY_NAME = "latent-evo"
LICENSE = "apache-2.0"
BASE_WEIGHTS_FILE = "base.safetensors"  # a low-rank compressor's base network, beside it
BUNDLED = "mnist1d-mlp"  # the compressor shipped inside the package (`make compressor`)
BUNDLED_GPT2 = "text-gpt2-mini-lora"  # LoRA adapters of a GPT-2 'mini' (`make compressor-gpt2`)


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path` ({} when absent); anything else is a CompressorFormatError
    (a ValueError) naming the file."""
    from latent_evo.compressor.mixin import CompressorFormatError

    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CompressorFormatError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise CompressorFormatError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def is_local(name_or_path: str | os.PathLike) -> bool:
    return Path(name_or_path).expanduser().exists()


def load_compressor(name_or_path: str | os.PathLike, revision: str | None = None, **kwargs):
    """A compressor (attention `Compressor` or `MLPAutoencoder` baseline, told apart by its
    config) from a local folder or a Hub repo id (`org/name`)."""
    from latent_evo.compressor.mixin import _resolve

    name = str(name_or_path)
    if is_local(name):
        name = str(Path(name).expanduser())
    elif name.count("/") != 1 or name.startswith((".", "/", "~")):
        raise FileNotFoundError(
            f"compressor {name!r}: no such local folder, and not a Hub repo id of the form 'org/name'"
        )
    download = {
        k: kwargs[k]
        for k in ("cache_dir", "force_download", "token", "local_files_only")
        if k in kwargs
    }
    config = _read_json(_resolve(name, "config.json", revision=revision, **download))
    cfg = config.get("config", config)
    if not isinstance(cfg, dict):
        from latent_evo.compressor.mixin import CompressorFormatError

        raise CompressorFormatError(f"{name}/config.json: expected a JSON object of config fields")
    if "hidden" in cfg and "d_model" not in cfg:
        from latent_evo.compressor.mlp import MLPAutoencoder as cls
    else:
        from latent_evo.compressor.attention import Compressor as cls
    return cls.from_pretrained(name, revision=revision, **kwargs)


def bundled_compressor_path(name: str = BUNDLED) -> Path:
    """Folder of a compressor shipped inside the package (config.json + model.safetensors)."""
    path = Path(str(files("latent_evo") / "assets" / "compressors" / name))
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"{path}: the bundled compressor {name!r} is missing; rebuild it with `make compressor`"
        )
    return path


def base_weights_path(name_or_path: str | os.PathLike, revision: str | None = None) -> Path:
    """The base network stored beside a low-rank compressor (local folder or Hub repo), its hash
    checked against the folder's `checksums.json` (a changed or corrupted file is an error
    naming it)."""
    from latent_evo.compressor.mixin import CHECKSUMS_NAME, CompressorFormatError, _resolve
    from latent_evo.integrity import verify

    name = str(Path(name_or_path).expanduser()) if is_local(name_or_path) else str(name_or_path)
    try:
        path = _resolve(name, BASE_WEIGHTS_FILE, revision=revision)
    except FileNotFoundError as e:
        raise FileNotFoundError(
            f"{e}; it is the base network a low-rank compressor's adapters apply to "
            "(`latent-evo hub export --base-weights` bundles it)"
        ) from None
    try:
        sums = _read_json(_resolve(name, CHECKSUMS_NAME, revision=revision))
    except FileNotFoundError:
        sums = {}
    verify(path, sums.get(BASE_WEIGHTS_FILE), CompressorFormatError)
    return path


def model_card(folder: str | os.PathLike, repo_id: str | None = None) -> str:
    """The README.md of a compressor repo, from the files in its folder."""
    folder = Path(folder)
    config = _read_json(folder / "config.json")
    metrics = _read_json(folder / METRICS_FILE)
    prov = _read_json(folder / PROVENANCE_FILE)
    pre = _read_json(folder / PRETRAINING_FILE)
    for zoo in pre.get("zoos", [])[:1]:  # provenance of a pretraining run: its (first) zoo
        prov = {
            "task": zoo.get("task"),
            "zoo": zoo.get("name"),
            "zoo_models": zoo.get("num_models"),
            "zoo_checkpoints": zoo.get("num_checkpoints") or zoo.get("train_split_checkpoints"),
            **prov,
        }
    for zoo_eval in pre.get("evaluation", {}).get("test", {}).values():
        metrics = {**{k: v for k, v in zoo_eval.items() if isinstance(v, int | float)}, **metrics}
        break
    cfg = config.get("config", config)  # the Hub mixin may nest the dataclass under "config"
    k, dz = cfg.get("num_latents"), cfg.get("latent_dim")
    latent = f"{k * dz} ({k} latents × {dz})" if k and dz else "unknown"
    spec = cfg.get("genome_spec") or {}
    n_params = sum(_prod(t["shape"]) for t in spec.get("tensors", []))
    name = repo_id or folder.name
    lines = [
        "---",
        f"library_name: {LIBRARY_NAME}",
        f"license: {LICENSE}",
        "tags:",
        "- latent-evo",
        "- neuroevolution",
        "- hypernetwork",
        "- weight-space",
        "---",
        "",
        f"# {name}",
        "",
        "A genome compressor for [latent-evo](https://pypi.org/project/latent-evo/): "
        + (
            "an MLP autoencoder over the flattened network weights"
            if "hidden" in cfg and "d_model" not in cfg
            else "a self-attention autoencoder over chunked network weights"
        )
        + ". Its decoder is a hypernetwork that expands a latent code into the full weights of "
        "the architecture below, so GA / ES can search the latent space instead of the raw weights.",
        "",
        "| | |",
        "|---|---|",
        f"| latent size | {latent} |",
        f"| genome | {len(spec.get('tensors', []))} tensors, {n_params:,} values |",
        f"| chunk size | {cfg.get('chunk_size', 'unknown')} |",
    ]
    for key in ("task", "zoo", "zoo_models", "zoo_checkpoints", "zoo_config"):
        if prov.get(key) is not None:
            lines.append(f"| {key.replace('_', ' ')} | {prov[key]} |")
    if metrics:
        lines += ["", "## Evaluation (held-out zoo models)", "", "| metric | value |", "|---|---|"]
        for key, value in metrics.items():
            if isinstance(value, int | float):
                lines.append(f"| {key} | {value:.4g} |")
    usage = [
        "```python",
        "import latent_evo",
        "from latent_evo.compressor.hub import load_compressor",
        f'compressor = load_compressor("{name}")',
        f'result = latent_evo.evolve(task="{prov.get("task", "mnist1d-mlp")}", compressor=compressor, strategy="cma_es", evaluations=2000)',
        "print(result.best_fitness, result.test_metrics)",
        "```",
    ]
    if prov.get("task") == "lora":  # adapters around a stored base: the demo builds the task
        usage = [
            f"The base network the decoded adapters apply to is `{BASE_WEIGHTS_FILE}` "
            "(GPT-2 'mini' weights). Adapt it to a corpus part it never saw:",
            "",
            "```bash",
            "latent-evo demo --family gpt2",
            "```",
        ]
    return "\n".join([*lines, "", "## Usage", "", *usage, ""])


def _prod(shape) -> int:
    out = 1
    for s in shape:
        out *= int(s)
    return out


def push(
    folder: str | os.PathLike, repo_id: str, private: bool = False, token: str | None = None
) -> str:
    """Upload a compressor folder (writing its model card first). Returns the repo URL."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"{folder}: not a compressor folder (needs config.json and model.safetensors)"
        )
    (folder / CARD_FILE).write_text(model_card(folder, repo_id))
    api = HfApi(token=token)
    url = api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(
        folder_path=str(folder), repo_id=repo_id, commit_message="Upload compressor with latent-evo"
    )
    return str(url)


def pull(repo_id: str, dest: str | os.PathLike | None = None, revision: str | None = None) -> Path:
    """Download a compressor repo (into the HF cache, or into `dest`). Returns its folder."""
    from huggingface_hub import snapshot_download

    path = snapshot_download(
        repo_id, revision=revision, local_dir=None if dest is None else str(dest)
    )
    return Path(path)
