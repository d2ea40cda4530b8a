"""Model families for latent neuroevolution, all runnable under `vmap(functional_call)`.

Every model evaluates a whole population at once: stack each genome's parameters and float
buffers into `{name: (P, *shape)}` and call `torch.func.vmap(lambda sd: functional_call(model, sd,
(x,)))`. Models with BatchNorm must be in `eval()` mode for that (fitness uses eval-mode BN; the
running stats are part of the genome). `build_model(family, preset=None, **kwargs)` builds any of
them by name; `MODEL_PRESETS[family][preset]` holds the named sizes.
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, fields

from torch import nn

from .cnn import CNN1d, CNN2d
from .gpt2 import (
    GPT2,
    GPT2_PRESETS,
    GPT2Config,
    GPT2LoadError,
    canonical_gpt2_names,
    infer_gpt2_config,
    load_gpt2_state_dict,
)
from .lstm import LSTM, CharLSTM
from .mlp import MLP
from .resnet import CifarResNet, torchvision_resnet
from .symmetry import apply_permutation, group_sizes, permutation_groups, random_permutations

__all__ = [
    "MLP",
    "CNN1d",
    "CNN2d",
    "CifarResNet",
    "torchvision_resnet",
    "LSTM",
    "CharLSTM",
    "GPT2",
    "GPT2Config",
    "GPT2_PRESETS",
    "GPT2LoadError",
    "load_gpt2_state_dict",
    "canonical_gpt2_names",
    "infer_gpt2_config",
    "build_model",
    "MODEL_FAMILIES",
    "MODEL_PRESETS",
    "apply_permutation",
    "permutation_groups",
    "group_sizes",
    "random_permutations",
]

MODEL_FAMILIES = {
    "mlp": MLP,
    "cnn1d": CNN1d,
    "cnn2d": CNN2d,
    "resnet": CifarResNet,
    "torchvision_resnet": torchvision_resnet,
    "lstm": CharLSTM,
    "gpt2": GPT2,  # built from GPT2Config fields, see build_model
}

# Named sizes per family; `tiny` ones are for tests (each builds and runs in well under a second).
MODEL_PRESETS: dict[str, dict[str, dict]] = {
    "mlp": {
        "tiny": dict(in_features=40, hidden=(32, 32), out_features=10),
        "wide": dict(in_features=40, hidden=(256, 256), out_features=10),
        "digits": dict(in_features=64, hidden=(64, 64), out_features=10),
    },
    "cnn1d": {
        "tiny": dict(in_channels=1, length=40, channels=(8, 16), num_classes=10),
        "small": dict(in_channels=1, length=40, channels=(16, 32), num_classes=10),
        "wide": dict(in_channels=1, length=40, channels=(64, 64, 64), num_classes=10),
    },
    "cnn2d": {
        "tiny": dict(in_channels=1, image_size=8, channels=(8, 16), num_classes=10),
        "mnist": dict(in_channels=1, image_size=28, channels=(16, 32), num_classes=10),
        "cifar": dict(in_channels=3, image_size=32, channels=(32, 64, 128), num_classes=10),
    },
    "resnet": {
        "tiny": dict(depth=8, in_channels=3, num_classes=10, width=8),
        "resnet8": dict(depth=8, in_channels=3, num_classes=10, width=16),
        "resnet20": dict(depth=20, in_channels=3, num_classes=10, width=16),
    },
    "torchvision_resnet": {
        "resnet18": dict(name="resnet18", num_classes=10),
        "resnet18-cifar": dict(name="resnet18", num_classes=10, small_input=True),
        "resnet50": dict(name="resnet50", num_classes=10),
    },
    "lstm": {
        "tiny": dict(vocab_size=96, embed_dim=16, hidden_size=32, num_layers=1),
        "small": dict(vocab_size=96, embed_dim=32, hidden_size=64, num_layers=1),
        "base": dict(vocab_size=96, embed_dim=64, hidden_size=256, num_layers=2),
    },
    "gpt2": {name: asdict(cfg) for name, cfg in GPT2_PRESETS.items()},
}


def _valid_kwargs(family: str) -> list[str]:
    if family == "gpt2":
        return [f.name for f in fields(GPT2Config)] + ["config"]
    return list(inspect.signature(MODEL_FAMILIES[family]).parameters)


def build_model(family: str, preset: str | None = None, **kwargs) -> nn.Module:
    """Build a model by family name, from a preset's kwargs updated by `kwargs`.

    For "gpt2" the kwargs are `GPT2Config` fields (or `config=GPT2Config(...)`); without a preset
    or config the dataclass defaults apply, i.e. the 124M configuration.
    """
    if family not in MODEL_FAMILIES:
        raise ValueError(f"unknown model family {family!r}; valid: {list(MODEL_FAMILIES)}")
    args = {}
    if preset is not None:
        if preset not in MODEL_PRESETS[family]:
            raise ValueError(
                f"unknown {family} preset {preset!r}; valid: {list(MODEL_PRESETS[family])}"
            )
        args.update(MODEL_PRESETS[family][preset])
    args.update(kwargs)
    valid = _valid_kwargs(family)
    bad = [k for k in args if k not in valid]
    if bad:
        raise ValueError(f"unknown argument(s) {bad} for model family {family!r}; valid: {valid}")
    if family == "gpt2":
        config = args.pop("config", None)
        if config is not None and args:
            raise ValueError(
                f"gpt2: pass either config= or GPT2Config fields, not both (got {list(args)})"
            )
        return GPT2(config if config is not None else GPT2Config(**args))
    return MODEL_FAMILIES[family](**args)
