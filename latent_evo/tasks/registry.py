"""Named tasks: `get_task("mnist1d-mlp", hidden=(64, 64), seed=1, device="cuda")`.

An override is one of: a `SupervisedTask` argument (batch_size, fitness_batch_size, seed, device, chunk_size,
...), a model argument (hidden, channels, width, ...), `seq_len` for text tasks, or `data={...}`
for the dataset loader (MNIST-1D generation args, digits split, text `source`, torchvision `root`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from latent_evo.tasks import data as D
from latent_evo.tasks.base import SupervisedTask
from latent_evo.tasks.protocol import Task

# Task arguments a user may override (the rest come from the entry: name, model, data, kind).
_FIXED = ("self", "name", "model", "train_data", "test_data", "kind")
_TASK_ARGS = [p for p in inspect.signature(SupervisedTask.__init__).parameters if p not in _FIXED]


@dataclass(frozen=True)
class TaskEntry:
    dataset: str  # mnist1d | digits | digits40 | synth40 | text | mnist | cifar10 | cifar100
    # a `latent_evo.models.build_model` family name, or your own factory `(**model) -> nn.Module`
    # (classification: it receives `num_classes=` unless `model` sets it)
    family: str | Callable[..., torch.nn.Module]
    model: dict[str, Any]
    task: dict[str, Any] = field(default_factory=dict)  # SupervisedTask defaults
    data: dict[str, Any] = field(default_factory=dict)  # loader defaults
    seq_len: int | None = None  # text tasks: characters per training window
    description: str = ""


# A variant of MNIST-1D for transfer experiments: other templates' noise, shift and shear.
MNIST1D_SHIFT = {"seed": 7, "max_translation": 24, "corr_noise_scale": 0.5, "shear_scale": 1.0}
# A variant of digits for transfer experiments: every image a quarter turn, then moved by up to
# one pixel per axis (its own seeded offset).
DIGITS_SHIFT = {"rotate": 1, "shift": 1}
VOCAB = len(D.CHAR_VOCAB)

TASKS: dict[str, TaskEntry | Callable[..., Task]] = {
    "mnist1d-mlp": TaskEntry("mnist1d", "mlp", {"in_features": 40, "hidden": (100, 100)},
                             description="MNIST-1D, MLP 40-100-100-10 (15,210 params)"),
    "mnist1d-mlp-wide": TaskEntry("mnist1d", "mlp", {"in_features": 40, "hidden": (256, 256)},
                                  description="MNIST-1D, MLP 40-256-256-10 (78,858 params)"),
    "mnist1d-mlp-tiny": TaskEntry("mnist1d", "mlp", {"in_features": 40, "hidden": (32,)},
                                  {"fitness_batch_size": 256}, description="MNIST-1D, MLP 40-32-10"),
    "mnist1d-shift-mlp": TaskEntry("mnist1d", "mlp", {"in_features": 40, "hidden": (100, 100)},
                                   data=MNIST1D_SHIFT, description="MNIST-1D variant (seed 7, "
                                   "more noise/shear, less shift), MLP 40-100-100-10"),
    "mnist1d-shift-mlp-wide": TaskEntry("mnist1d", "mlp", {"in_features": 40, "hidden": (256, 256)},
                                        data=MNIST1D_SHIFT, description="MNIST-1D variant (as "
                                        "mnist1d-shift-mlp), MLP 40-256-256-10"),
    # fitness on a fixed sample of 500 training examples: a CNN population costs 4x an MLP's
    "mnist1d-cnn": TaskEntry("mnist1d", "cnn1d", {"length": 40, "channels": (16, 32)},
                             {"fitness_batch_size": 500}, description="MNIST-1D, 1-d CNN 16-32"),
    "mnist1d-shift-cnn": TaskEntry("mnist1d", "cnn1d", {"length": 40, "channels": (16, 32)},
                                   {"fitness_batch_size": 500}, data=MNIST1D_SHIFT, description="MNIST-1D variant (as "
                                   "mnist1d-shift-mlp), 1-d CNN 16-32"),
    "mnist1d-cnn-tiny": TaskEntry("mnist1d", "cnn1d", {"length": 40, "channels": (4, 8)},
                                  {"fitness_batch_size": 128}, description="MNIST-1D, 1-d CNN 4-8"),
    "digits40-mlp": TaskEntry("digits40", "mlp", {"in_features": 40, "hidden": (100, 100)},
                              description="digits on 40 principal components, MLP "
                              "40-100-100-10 (the mnist1d-mlp architecture; another dataset)"),
    "synth40-clusters-mlp": TaskEntry("synth40", "mlp", {"in_features": 40, "hidden": (100, 100)},
                                      data={"kind": "clusters"}, description="synthetic "
                                      "10-class clusters, 40 features, MLP 40-100-100-10"),
    "synth40-clusters-b-mlp": TaskEntry("synth40", "mlp", {"in_features": 40, "hidden": (100, 100)},
                                        data={"kind": "clusters", "seed": 1}, description="as "
                                        "synth40-clusters-mlp, another draw of the generator"),
    "digits-mlp": TaskEntry("digits", "mlp", {"in_features": 64, "hidden": (64, 64)},
                            description="sklearn digits 8x8, MLP 64-64-64-10"),
    "digits-mlp-tiny": TaskEntry("digits", "mlp", {"in_features": 64, "hidden": (16,)},
                                 {"fitness_batch_size": 256}, description="digits, MLP 64-16-10"),
    "digits-cnn": TaskEntry("digits", "cnn2d", {"image_size": 8, "channels": (16, 32)},
                            description="digits, 2-d CNN 16-32"),
    "digits-cnn-tiny": TaskEntry("digits", "cnn2d", {"image_size": 8, "channels": (4, 8)},
                                 {"fitness_batch_size": 128}, description="digits, 2-d CNN 4-8"),
    # fitness on a fixed sample of 256 of the 1,438 training images (a ResNet population is slow)
    "digits-resnet8": TaskEntry("digits", "resnet", {"depth": 8, "in_channels": 1, "width": 16},
                                {"fitness_batch_size": 256},
                                description="digits, ResNet-8 (BatchNorm, eval-mode stats)"),
    "digits-shift-resnet8": TaskEntry("digits", "resnet", {"depth": 8, "in_channels": 1, "width": 16},
                                      {"fitness_batch_size": 256}, data=DIGITS_SHIFT,
                                      description="digits turned a quarter and moved up to 1 "
                                      "pixel per image, ResNet-8"),
    "digits-resnet8-tiny": TaskEntry("digits", "resnet", {"depth": 8, "in_channels": 1, "width": 4},
                                     {"fitness_batch_size": 64}, description="digits, ResNet-8 width 4"),
    "text-lstm": TaskEntry("text", "lstm", {"vocab_size": VOCAB, "embed_dim": 64, "hidden_size": 128},
                           {"batch_size": 32, "fitness_batch_size": 32, "eval_batch_size": 256},
                           seq_len=64, description="pydoc text, char-LSTM 64/128, bits per char"),
    "text-lstm-tiny": TaskEntry("text", "lstm", {"vocab_size": VOCAB, "embed_dim": 16, "hidden_size": 32},
                                {"batch_size": 8, "fitness_batch_size": 8, "eval_batch_size": 256},
                                seq_len=32, description="pydoc text, char-LSTM 16/32"),
    "text-gpt2-tiny": TaskEntry("text", "gpt2", {"preset": "tiny", "vocab_size": VOCAB},
                                {"batch_size": 16, "fitness_batch_size": 16, "eval_batch_size": 128},
                                seq_len=64, description="pydoc text, GPT-2 'tiny' preset, bits per char"),
    "text-gpt2-mini": TaskEntry("text", "gpt2", {"preset": "mini", "vocab_size": VOCAB},
                                {"batch_size": 16, "fitness_batch_size": 4, "eval_batch_size": 64},
                                seq_len=64, description="pydoc text, GPT-2 'mini' preset (2.3M), "
                                "bits per char"),
    "mnist-cnn": TaskEntry("mnist", "cnn2d", {"image_size": 28, "channels": (16, 32)},
                           {"fitness_batch_size": 1024}, description="MNIST (local root), 2-d CNN"),
    "cifar10-resnet8": TaskEntry("cifar10", "resnet", {"depth": 8, "in_channels": 3, "width": 16},
                                 {"fitness_batch_size": 512}, description="CIFAR-10 (local root), ResNet-8"),
    "cifar100-resnet8": TaskEntry("cifar100", "resnet", {"depth": 8, "in_channels": 3, "width": 16,
                                  "num_classes": 100}, {"fitness_batch_size": 512},
                                  description="CIFAR-100 (local root), ResNet-8"),
}  # fmt: skip


def _lora(**kwargs) -> Task:
    from latent_evo.tasks.lora import lora_task

    if "base" not in kwargs:
        raise ValueError("task 'lora' needs base=<task name> (and base_weights=<safetensors file>)")
    return lora_task(**kwargs)


TASKS["lora"] = _lora  # low-rank adapters of another task's network (latent_evo.tasks.lora)

_DATA_MEMO: dict[tuple, D.ClassificationData | D.TextData] = {}
_LOADERS: dict[str, Callable[..., Any]] = {
    "mnist1d": D.load_mnist1d,
    "digits": D.load_digits,
    "digits40": D.load_digits40,
    "synth40": D.load_synth40,
    "text": D.load_text,
    "mnist": lambda **kw: D.load_torchvision("mnist", **kw),
    "cifar10": lambda **kw: D.load_torchvision("cifar10", **kw),
    "cifar100": lambda **kw: D.load_torchvision("cifar100", **kw),
}


def list_tasks() -> list[str]:
    return sorted(TASKS)


def register_task(name: str, entry: TaskEntry | Callable[..., Task], overwrite: bool = False):
    """Add a `TaskEntry`, or a factory `(**overrides) -> Task`, under `name`."""
    if name in TASKS and not overwrite:
        raise ValueError(f"task {name!r} is already registered (pass overwrite=True to replace it)")
    TASKS[name] = entry


def load_dataset(dataset: str, **kwargs) -> D.ClassificationData | D.TextData:
    """Load once per process (MNIST-1D/digits/pydoc are reused by many tasks)."""
    if dataset not in _LOADERS:
        raise ValueError(f"unknown dataset {dataset!r}; valid ones are {sorted(_LOADERS)}")
    key = (dataset, tuple(sorted((k, repr(v)) for k, v in kwargs.items())))
    if key not in _DATA_MEMO:
        _DATA_MEMO[key] = _LOADERS[dataset](**kwargs)
    return _DATA_MEMO[key]


def _model_args(family: str | Callable[..., torch.nn.Module]) -> list[str]:
    """Keyword arguments `build_model(family, ...)` accepts (GPT-2: `GPT2Config` fields)."""
    from dataclasses import fields

    from latent_evo.models import MODEL_FAMILIES, GPT2Config

    if callable(family):  # a user's factory: whatever its signature names
        return list(inspect.signature(family).parameters)
    if family == "gpt2":
        return ["preset", *(f.name for f in fields(GPT2Config))]
    return ["preset", *inspect.signature(MODEL_FAMILIES[family]).parameters]


def text_windows(ids: torch.Tensor, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`(N,)` ids -> inputs, targets `(N // seq_len, seq_len)`: non-overlapping windows, targets
    shifted by one character."""
    n = (len(ids) - 1) // seq_len
    if n < 1:
        raise ValueError(f"text of {len(ids)} characters is shorter than one window of {seq_len}")
    x = ids[: n * seq_len].view(n, seq_len)
    y = ids[1 : n * seq_len + 1].view(n, seq_len)
    return x, y


ENTRY_POINT_GROUP = "latent_evo.tasks"


def _load_entry_points() -> None:
    """Tasks that installed packages declare under the `latent_evo.tasks` entry-point group:
    `name = "pkg.module:factory_or_TaskEntry"`. Loaded only when a name is not known yet."""
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in TASKS:
            TASKS[ep.name] = ep.load()


def get_task(name: str, **overrides) -> Task:
    """Build a registered task; `overrides` as described in this module's docstring.
    `"gym:<Gymnasium id>"` builds an `EpisodicTask`, overrides being its arguments."""
    if name.startswith("gym:"):
        from latent_evo.tasks.episodic import gym_task

        return gym_task(name, **overrides)
    if name not in TASKS:
        _load_entry_points()
    if name not in TASKS:
        raise ValueError(
            f"unknown task {name!r}; valid tasks are: {', '.join(list_tasks())}. A task of your "
            "own: `register_task` in a module given to `latent-evo --import MODULE_OR_FILE`, or "
            f"an entry point in the {ENTRY_POINT_GROUP!r} group"
        )
    entry = TASKS[name]
    if not isinstance(entry, TaskEntry):
        return entry(**overrides)
    model_args = _model_args(entry.family)
    valid = sorted({*_TASK_ARGS, *model_args, "data"} | ({"seq_len"} if entry.seq_len else set()))
    bad = sorted(set(overrides) - set(valid))
    if bad:
        raise ValueError(
            f"unknown override(s) {bad} for task {name!r}; valid overrides are: {valid}"
        )
    data_kwargs = {**entry.data, **overrides.pop("data", {})}
    try:
        data = load_dataset(entry.dataset, **data_kwargs)
    except TypeError as e:  # a bad key in data={...}
        raise ValueError(f"bad data override {sorted(data_kwargs)} for task {name!r}: {e}") from e
    seq_len = overrides.pop("seq_len", entry.seq_len)
    model_kwargs = {
        **entry.model,
        **{k: overrides.pop(k) for k in list(overrides) if k in model_args},
    }
    if isinstance(data, D.TextData):
        train, test = text_windows(data.train, seq_len), text_windows(data.val, seq_len)
        kind = "lm"
    else:
        train, test, kind = (
            (data.x_train, data.y_train),
            (data.x_test, data.y_test),
            "classification",
        )
        key = "out_features" if entry.family == "mlp" else "num_classes"
        if not callable(entry.family) or key in model_args:
            model_kwargs.setdefault(key, data.num_classes)
    from latent_evo.models import build_model

    if callable(entry.family):
        model_fn = functools.partial(entry.family, **model_kwargs)
    else:
        model_fn = functools.partial(build_model, entry.family, **model_kwargs)
    task = SupervisedTask(name, model_fn, train, test, kind=kind, **{**entry.task, **overrides})
    n_ctx = getattr(getattr(task.model, "config", None), "n_ctx", None)
    if n_ctx is not None and seq_len > n_ctx:
        raise ValueError(f"task {name!r}: seq_len={seq_len} exceeds the model's n_ctx={n_ctx}")
    return task
