"""Multi-layer perceptron: the workhorse genome of the small tasks (MNIST-1D, digits)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# Element-wise activations only: they commute with hidden-unit permutations, and they hold no
# parameters, so a genome is exactly the Linear weights and biases.
ACTIVATIONS = {
    "relu": F.relu,
    "tanh": torch.tanh,
    "gelu": F.gelu,
    "silu": F.silu,
    "sigmoid": torch.sigmoid,
    "elu": F.elu,
    "leaky_relu": F.leaky_relu,
}


def get_activation(name: str):
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class MLP(nn.Module):
    """`in_features -> hidden[0] -> ... -> out_features`, activation between layers, none at the end.

    Input (B, F); anything with more dims is flattened to (B, F) first (images, (B, 1, L) signals).
    Parameters are named `layers.{i}.weight` (out, in) and `layers.{i}.bias` (out,).
    """

    def __init__(
        self,
        in_features: int = 40,
        hidden: Sequence[int] = (32, 32),
        out_features: int = 10,
        activation: str = "relu",
    ):
        super().__init__()
        self.in_features = in_features
        self.hidden = tuple(int(h) for h in hidden)
        self.out_features = out_features
        self.activation = activation
        self.act = get_activation(activation)
        sizes = (in_features, *self.hidden, out_features)
        self.layers = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)  # (B, F)
        if x.shape[-1] != self.in_features:
            raise ValueError(f"MLP expects {self.in_features} input features, got {x.shape[-1]}")
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self.act(x)
        return x

    def permutation_groups(self) -> list[list[tuple[str, int]]]:
        """Hidden layer i: rows of layer i's weight and bias, columns of layer i+1's weight.

        Exact: an element-wise activation commutes with any permutation of the hidden units.
        """
        return [
            [(f"layers.{i}.weight", 0), (f"layers.{i}.bias", 0), (f"layers.{i + 1}.weight", 1)]
            for i in range(len(self.hidden))
        ]
