"""Datasets as tensors: procedurally generated, shipped offline, or read from a local root.

Every loader returns plain CPU tensors (a `ClassificationData` or `TextData`); `Task` moves them to
its device once. Nothing here downloads unless asked (`download=True`) and online. A dataset that
is missing offline raises `DatasetMissingError` naming the dataset, where we looked and how to get it.

Heavy or network-capable dependencies (mnist1d, sklearn, torchvision, datasets) are imported
inside the loader that needs them so `import latent_evo.tasks` stays light.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = [
    "CHAR_VOCAB",
    "ClassificationData",
    "DatasetMissingError",
    "TextData",
    "cache_dir",
    "decode_chars",
    "encode_chars",
    "load_digits",
    "load_hf_text",
    "load_mnist1d",
    "load_pydoc_text",
    "load_text",
    "load_text_file",
    "load_torchvision",
    "mnist1d_args",
]


class DatasetMissingError(FileNotFoundError):
    """A dataset is not on disk and may not be downloaded; the message says where and how."""

    def __init__(self, dataset: str, where: str | os.PathLike, how: str):
        super().__init__(f"dataset {dataset!r} not found at {str(where)!r}. {how}")
        self.dataset, self.where = dataset, str(where)


@dataclass
class ClassificationData:
    """Inputs `(N, *feature_shape)` float32 and integer labels `(N,)`, split into train and test."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int


@dataclass
class TextData:
    """Character ids `(N,)` int64 over `CHAR_VOCAB`, split into train and validation."""

    name: str
    train: torch.Tensor
    val: torch.Tensor

    @property
    def vocab_size(self) -> int:
        return len(CHAR_VOCAB)


def cache_dir() -> Path:
    """`$LATENT_EVO_CACHE`, else `~/.cache/latent_evo` (created on demand)."""
    root = os.environ.get("LATENT_EVO_CACHE") or Path.home() / ".cache" / "latent_evo"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


# ---- MNIST-1D ------------------------------------------------------------------------------------
def mnist1d_args(**overrides) -> dict:
    """The standard MNIST-1D generation arguments (4,000 train / 1,000 test, 40 features), overridden.

    Variants for transfer experiments change e.g. `seed`, `corr_noise_scale`, `max_translation`.
    """
    import mnist1d.data  # lazy: pulls in scipy, matplotlib, requests

    args = mnist1d.data.get_dataset_args(as_dict=True)
    args.pop("url")  # never used: we generate, we never download
    unknown = sorted(set(overrides) - set(args))
    if unknown:
        raise ValueError(f"unknown MNIST-1D argument(s) {unknown}; valid ones are {sorted(args)}")
    args.update(overrides)
    return args


def load_mnist1d(**overrides) -> ClassificationData:
    """MNIST-1D (Greydanus 2020), generated offline and cached as safetensors keyed by its arguments.

    `mnist1d.data.get_dataset()` tries GitHub first, so we call `make_dataset` ourselves.
    Generation reseeds NumPy's and Python's global RNGs; we restore both so callers are unaffected.
    """
    from safetensors.torch import load_file, save_file

    args = mnist1d_args(**overrides)
    key = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / f"mnist1d-{key}.safetensors"
    if not path.exists():
        import mnist1d.data
        import numpy as np
        from mnist1d.utils import ObjectView

        np_state, py_state = np.random.get_state(), random.getstate()
        try:
            raw = mnist1d.data.make_dataset(ObjectView(dict(args)))
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)
        tensors = {
            "x_train": torch.from_numpy(raw["x"]).float(),
            "y_train": torch.from_numpy(raw["y"]).long(),
            "x_test": torch.from_numpy(raw["x_test"]).float(),
            "y_test": torch.from_numpy(raw["y_test"]).long(),
        }
        tmp = path.with_suffix(f".tmp{os.getpid()}")  # atomic: a concurrent reader never sees half
        save_file(tensors, str(tmp), metadata={"args": json.dumps(args, sort_keys=True)})
        os.replace(tmp, path)
    t = load_file(str(path))
    return ClassificationData("mnist1d", t["x_train"], t["y_train"], t["x_test"], t["y_test"], 10)


# ---- scikit-learn digits -------------------------------------------------------------------------
def load_digits(
    test_fraction: float = 0.2, seed: int = 0, rotate: int = 0, shift: int = 0
) -> ClassificationData:
    """sklearn's 8x8 digits (1,797 samples, shipped with sklearn) as `(N, 1, 8, 8)` in [0, 1].

    The split is a seeded permutation, so the same `seed` always gives the same split. A
    transfer setting changes the images of both splits: `rotate` quarter turns (counter-
    clockwise), then each image moved by its own seeded offset of up to `shift` pixels per axis
    (zero fill).
    """
    from sklearn.datasets import load_digits as sk_load_digits

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if not 0 <= shift < 8:
        raise ValueError(f"shift must be in [0, 7] pixels, got {shift}")
    d = sk_load_digits()
    x = torch.from_numpy(d.images).float().div(16.0).unsqueeze(1)  # pixel values are 0..16
    y = torch.from_numpy(d.target).long()
    x = torch.rot90(x, int(rotate) % 4, dims=(2, 3))
    if shift:
        x = _translate(x, shift, torch.Generator().manual_seed(seed + 1))
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = round(len(y) * test_fraction)
    test, train = perm[:n_test], perm[n_test:]
    name = "digits" if not (rotate % 4 or shift) else f"digits-rot{rotate % 4}-shift{shift}"
    return ClassificationData(name, x[train], y[train], x[test], y[test], 10)


def _translate(x: torch.Tensor, shift: int, gen: torch.Generator) -> torch.Tensor:
    """Each `(N, C, H, W)` image moved by its own offset in [-shift, shift]² (zero fill)."""
    n, _, h, w = x.shape
    pad = torch.nn.functional.pad(x, (shift, shift, shift, shift))  # (N, C, H+2s, W+2s)
    dy, dx = torch.randint(0, 2 * shift + 1, (2, n), generator=gen)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]  # (N, 1, H, 1)
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]  # (N, 1, 1, W)
    idx = torch.arange(n)[:, None, None, None]
    return pad[idx, torch.arange(x.shape[1])[None, :, None, None], rows, cols]  # (N, C, H, W)


def load_digits40(test_fraction: float = 0.2, seed: int = 0, dims: int = 40) -> ClassificationData:
    """sklearn digits as `(N, dims)` vectors: the 64 pixels projected on the training split's
    first `dims` principal components, then standardised per component. A dataset as different
    from MNIST-1D as digits are, with MNIST-1D's input width (40), so one 40-input network
    family (and its compressor) can be tested on it: a transfer task no MNIST-1D zoo has seen."""
    d = load_digits(test_fraction, seed)
    if not 1 <= dims <= 64:
        raise ValueError(f"dims must be in [1, 64], got {dims}")
    xtr, xte = d.x_train.flatten(1).double(), d.x_test.flatten(1).double()  # (N, 64)
    mean = xtr.mean(0)
    _, _, vh = torch.linalg.svd(xtr - mean, full_matrices=False)  # (64, 64) rows: components
    comps = vh[:dims]
    comps = comps * torch.sign(comps[:, comps.abs().argmax(1)].diagonal())[:, None]  # fix signs
    ztr, zte = (xtr - mean) @ comps.T, (xte - mean) @ comps.T  # (N, dims)
    scale = ztr.std(0).clamp(min=1e-8)
    return ClassificationData(
        "digits40", (ztr / scale).float(), d.y_train, (zte / scale).float(), d.y_test, 10
    )


def load_synth40(
    kind: str = "clusters", n: int = 5000, test_fraction: float = 0.2, seed: int = 0
) -> ClassificationData:
    """A synthetic 10-class problem with MNIST-1D's input width (40), generated by scikit-learn
    from `seed` (nothing downloaded), standardised per feature:

    * "clusters": `make_classification` -- 2 Gaussian clusters per class on the vertices of a
      20-dimensional hypercube, 10 redundant (linear-combination) and 10 noise features;
    * "shells": `make_gaussian_quantiles` -- 10 concentric shells of one 40-d Gaussian (a class
      is a band of radii; hard for an MLP: Adam reaches 0.26 on 4,000 examples).

    Another `seed` draws another problem of the same kind (other clusters, other hypercube).

    Zoos on these widen the compressor's pretraining beyond MNIST-1D (issue: a broader
    compressor) while digits40 and the MNIST-1D variants stay unseen."""
    from sklearn.datasets import make_classification, make_gaussian_quantiles

    if kind == "clusters":
        x, y = make_classification(
            n_samples=n, n_features=40, n_informative=20, n_redundant=10, n_classes=10,
            n_clusters_per_class=2, class_sep=1.5, random_state=seed,
        )  # fmt: skip
    elif kind == "shells":
        x, y = make_gaussian_quantiles(n_samples=n, n_features=40, n_classes=10, random_state=seed)
    else:
        raise ValueError(f"synth40: kind must be 'clusters' or 'shells', got {kind!r}")
    x, y = torch.from_numpy(x).float(), torch.from_numpy(y).long()
    n_test = round(n * test_fraction)
    mu, sd = x[n_test:].mean(0), x[n_test:].std(0).clamp(min=1e-8)
    x = (x - mu) / sd
    return ClassificationData(f"synth40-{kind}", x[n_test:], y[n_test:], x[:n_test], y[:n_test], 10)


# ---- text ----------------------------------------------------------------------------------------
# A fixed 96-symbol vocabulary (newline + printable ASCII) so every text corpus shares one model
# shape. Common typographic characters are folded to ASCII; anything else becomes '?'.
CHAR_VOCAB = "\n" + "".join(chr(c) for c in range(32, 127))
_CHAR_TO_ID = {c: i for i, c in enumerate(CHAR_VOCAB)}
_FOLD = str.maketrans(
    {"\t": " ", "\r": None, "‘": "'", "’": "'", "“": '"', "”": '"', "–": "-", "—": "-", "…": "..."}
)
_UNKNOWN = _CHAR_TO_ID["?"]


def encode_chars(text: str) -> torch.Tensor:
    """`str` -> `(len,)` int64 ids over `CHAR_VOCAB`."""
    text = text.translate(_FOLD)
    return torch.tensor([_CHAR_TO_ID.get(c, _UNKNOWN) for c in text], dtype=torch.long)


def decode_chars(ids: torch.Tensor) -> str:
    return "".join(CHAR_VOCAB[i] for i in ids.tolist())


def _split_text(name: str, text: str, val_fraction: float) -> TextData:
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    ids = encode_chars(text)
    if len(ids) < 4:
        raise ValueError(f"text corpus {name!r} has only {len(ids)} characters")
    cut = len(ids) - max(2, round(len(ids) * val_fraction))  # validation is the tail: no overlap
    return TextData(name, ids[:cut], ids[cut:])


def load_pydoc_text(val_fraction: float = 0.1) -> TextData:
    """CPython's `pydoc_data.topics` (~465 KB of English + code), topics joined in sorted order."""
    from pydoc_data import topics

    text = "\n".join(topics.topics[k] for k in sorted(topics.topics))
    return _split_text("pydoc", text, val_fraction)


def load_text_file(path: str | os.PathLike, val_fraction: float = 0.1) -> TextData:
    """Any local UTF-8 text file; the last `val_fraction` of it is the validation split."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DatasetMissingError(
            f"text file {p.name}", p, "Pass the path of an existing UTF-8 text file."
        )
    return _split_text(p.stem, p.read_text(encoding="utf-8", errors="replace"), val_fraction)


def load_hf_text(
    name_or_path: str,
    split: str = "train",
    text_column: str = "text",
    val_fraction: float = 0.1,
    max_chars: int | None = 10_000_000,
    config: str | None = None,
) -> TextData:
    """A Hugging Face `datasets` text corpus (e.g. tiny-shakespeare, OpenWebText).

    `name_or_path` is a directory written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`,
    or a Hub name, loaded only when online or already in the HF cache. Documents are joined with
    newlines up to `max_chars` characters (OpenWebText is ~40 GB of text; a prefix is plenty here).
    """
    import datasets

    local = Path(name_or_path).expanduser()
    try:
        if local.exists():
            ds = datasets.load_from_disk(str(local))
        else:
            ds = datasets.load_dataset(name_or_path, config, split=split)
    except (FileNotFoundError, ConnectionError, OSError, ValueError) as e:
        how = (
            "Save it locally with `datasets.Dataset.save_to_disk(path)` and pass that path, or go "
            "online (unset HF_HUB_OFFLINE / HF_DATASETS_OFFLINE) to fetch it from the Hub."
        )
        raise DatasetMissingError(
            name_or_path, local if local.exists() else "the HF cache", how
        ) from e
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise ValueError(f"{name_or_path!r} has splits {list(ds)}, not {split!r}")
        ds = ds[split]
    if text_column not in ds.column_names:
        raise ValueError(
            f"{name_or_path!r} has columns {ds.column_names}; pass text_column= one of them"
        )
    parts, total = [], 0
    for rows in ds.select_columns([text_column]).iter(batch_size=1000):
        for doc in rows[text_column]:
            parts.append(doc)
            total += len(doc) + 1
            if max_chars is not None and total >= max_chars:
                break
        if max_chars is not None and total >= max_chars:
            break
    text = "\n".join(parts)
    return _split_text(
        Path(name_or_path).name, text[:max_chars] if max_chars else text, val_fraction
    )


def load_text(
    source: str = "pydoc",
    val_fraction: float = 0.1,
    part: list[int] | tuple[int, int] | None = None,
    part_val: str = "tail",
    **hf_kwargs,
) -> TextData:
    """One entry point for text: `"pydoc"`, a local text file, a `save_to_disk` directory, or
    `"hf:<hub name>"` (online or HF-cached; `hf_kwargs` go to `load_hf_text`).

    `part=[k, n]`: only the k-th of n equal contiguous parts of the whole text (train + val, in
    order), split again into its own train and validation: a corpus slice, for adapting a
    language model to one region of a text (the pydoc topics are sorted, so parts differ in
    topic). `part_val="tail"`: validation is the part's last `val_fraction`, which is often
    another topic; `"blocks"`: every k-th block of 1,024 characters, so validation text is drawn
    from the same topics as the training text (what measures adaptation to the part).
    """
    data = _load_text_source(source, val_fraction, **hf_kwargs)
    if part is None:
        return data
    if len(part) != 2 or not 0 <= int(part[0]) < int(part[1]):
        raise ValueError(f"text part must be [k, n] with 0 <= k < n, got {part!r}")
    k, n = int(part[0]), int(part[1])
    ids = torch.cat([data.train, data.val])  # (N,) the whole text in order
    size = len(ids) // n
    piece = ids[k * size : (k + 1) * size]
    cut = len(piece) - max(2, round(len(piece) * val_fraction))
    if cut < 2:
        raise ValueError(f"text {data.name!r} is too short for {n} parts ({len(ids)} characters)")
    if part_val == "tail":
        return TextData(f"{data.name}[{k}/{n}]", piece[:cut], piece[cut:])
    if part_val != "blocks":
        raise ValueError(f"part_val must be 'tail' or 'blocks', got {part_val!r}")
    blocks = piece[: len(piece) // 1024 * 1024].view(-1, 1024)  # (m, 1024)
    every = max(2, round(1 / val_fraction))
    is_val = torch.arange(len(blocks)) % every == every - 1
    return TextData(
        f"{data.name}[{k}/{n}]", blocks[~is_val].reshape(-1), blocks[is_val].reshape(-1)
    )


def _load_text_source(source: str, val_fraction: float, **hf_kwargs) -> TextData:
    if source == "pydoc":
        return load_pydoc_text(val_fraction)
    if source.startswith("hf:"):
        return load_hf_text(source[3:], val_fraction=val_fraction, **hf_kwargs)
    path = Path(source).expanduser()
    if path.is_dir():
        return load_hf_text(str(path), val_fraction=val_fraction, **hf_kwargs)
    if path.is_file():
        return load_text_file(path, val_fraction)
    how = 'Pass "pydoc", an existing text file, a datasets.save_to_disk directory, or "hf:<name>".'
    raise DatasetMissingError(f"text {source!r}", path, how)


# ---- torchvision image datasets from a local root ------------------------------------------------
_TORCHVISION = {
    # name: (class name, num_classes, per-channel mean, std, what the root must contain)
    "mnist": ("MNIST", 10, (0.1307,), (0.3081,), "MNIST/raw/*-idx?-ubyte"),
    "cifar10": (
        "CIFAR10",
        10,
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
        "cifar-10-batches-py/",
    ),
    "cifar100": (
        "CIFAR100",
        100,
        (0.5071, 0.4865, 0.4409),
        (0.2673, 0.2564, 0.2762),
        "cifar-100-python/",
    ),
}


def load_torchvision(
    name: str, root: str | os.PathLike | None = None, download: bool = False
) -> ClassificationData:
    """MNIST / CIFAR-10 / CIFAR-100 read by torchvision from `root` (default `<cache>/torchvision`).

    Returns normalised float32 `(N, C, H, W)` tensors. `download=True` fetches the files (online only).
    """
    if name not in _TORCHVISION:
        raise ValueError(
            f"unknown torchvision dataset {name!r}; valid ones are {sorted(_TORCHVISION)}"
        )
    import torchvision.datasets as tvd

    cls_name, num_classes, mean, std, layout = _TORCHVISION[name]
    root = Path(root).expanduser() if root is not None else cache_dir() / "torchvision"
    cls = getattr(tvd, cls_name)
    try:
        train = cls(str(root), train=True, download=download)
        test = cls(str(root), train=False, download=download)
    except RuntimeError as e:  # torchvision says "Dataset not found or corrupted"
        how = (
            f"Expected {layout} under it. Pass root= a directory holding it, or download=True "
            f"when online (torchvision.datasets.{cls_name}(root, download=True))."
        )
        raise DatasetMissingError(name, root, how) from e
    mean_t, std_t = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)

    def to_tensors(ds) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.as_tensor(ds.data)
        x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)  # MNIST (N,H,W); CIFAR NHWC
        x = (x.float() / 255.0 - mean_t) / std_t
        return x.contiguous(), torch.as_tensor(ds.targets, dtype=torch.long)

    x_train, y_train = to_tensors(train)
    x_test, y_test = to_tensors(test)
    return ClassificationData(name, x_train, y_train, x_test, y_test, num_classes)
