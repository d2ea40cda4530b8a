"""Zoos on the Hugging Face Hub: a zoo directory is pushed as is to a *dataset* repo.

The repo's README declares `metadata/*.parquet` as the data files, so the Hub's dataset viewer
and `datasets.load_dataset(repo_id)` show the metadata table; genomes stay in the safetensors
shards next to it and are read by `ZooDataset`.
"""

from __future__ import annotations

import os
from pathlib import Path

from latent_evo.zoo.dataset import ZooDataset
from latent_evo.zoo.format import CARD, ZooError, read_card

README = """---
configs:
- config_name: default
  data_files: metadata/*.parquet
tags:
- model-zoo
- latent-evo
---
# {name}

A model zoo made with latent-evo for task `{task}`: {models} models,
{checkpoints} checkpoints. Genomes (flat weight vectors, layout in `zoo.json` -> `spec`) are in
`shards/*.safetensors`; one metadata row per checkpoint in `metadata/*.parquet`.

```python
from latent_evo.zoo import load_zoo
train = load_zoo("{repo_id}", split="train")
```
"""


def push_zoo(
    root: str | Path, repo_id: str, private: bool = False, token: str | None = None
) -> str:
    """Upload a finished zoo directory to the dataset repo `repo_id` (created if needed)."""
    from huggingface_hub import HfApi

    root = Path(root)
    card = read_card(root)
    if not card.get("complete"):
        raise ZooError(
            f"zoo {str(root)!r} is not complete (generation interrupted?); finish it with --resume first"
        )
    readme = root / "README.md"
    if not readme.exists():
        readme.write_text(
            README.format(
                name=card.get("name"),
                task=card["task"],
                models=card.get("num_models"),
                checkpoints=card.get("num_checkpoints"),
                repo_id=repo_id,
            )  # fmt: skip
        )
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    info = api.upload_folder(
        folder_path=str(root),
        repo_id=repo_id,
        repo_type="dataset",
        ignore_patterns=[".*", "**/.*", "*.tmp*"],
        commit_message=f"zoo {card.get('name')}: {card.get('num_checkpoints')} checkpoints",
    )
    return str(getattr(info, "commit_url", info))


def pull_zoo(
    repo_id: str,
    dst: str | Path | None = None,
    revision: str | None = None,
    token: str | None = None,
) -> Path:
    """Download a zoo dataset repo (into `dst`, else the Hugging Face cache); returns its folder."""
    from huggingface_hub import snapshot_download

    path = snapshot_download(
        repo_id,
        repo_type="dataset",
        revision=revision,
        token=token,
        local_dir=None if dst is None else str(dst),
    )
    read_card(path)  # fail here, naming the folder, if the repo is not a zoo
    return Path(path)


def load_zoo(
    path_or_repo: str | Path, split: str = "train", revision: str | None = None, **kwargs
) -> ZooDataset:
    """A `ZooDataset` from a local zoo directory or, when no such directory exists, a Hub repo id."""
    path = Path(path_or_repo)
    if (path / CARD).is_file():
        return ZooDataset(path, split, **kwargs)
    looks_local = os.sep in str(path_or_repo) and str(path_or_repo).startswith((".", os.sep, "~"))
    if path.exists() or looks_local or str(path_or_repo).count("/") != 1:
        raise ZooError(
            f"{str(path_or_repo)!r} is not a zoo directory (no {CARD}) nor a Hub repo id 'owner/name'"
        )
    return ZooDataset(pull_zoo(str(path_or_repo), revision=revision), split, **kwargs)
