"""Small convolutional nets: 1-D for MNIST-1D style signals, 2-D for small images.

Each block is conv ('same' padding) -> ReLU -> max-pool(2); a linear head reads the flattened
feature map. The flatten is channel-last (`(B, L, C)` / `(B, H, W, C)` before flattening) so that a
channel permutation permutes the head's columns in `L` (or `H*W`) equal blocks of `C` — expressible
as one `(tensor, axis)` pair in `permutation_groups` (see `latent_evo.models.symmetry`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _conv_groups(n_convs: int, head: str) -> list[list[tuple[str, int]]]:
    """Channels of conv i: its out-channels and bias, the next conv's in-channels (or the head)."""
    groups = []
    for i in range(n_convs):
        nxt = (f"convs.{i + 1}.weight", 1) if i + 1 < n_convs else (f"{head}.weight", 1)
        groups.append([(f"convs.{i}.weight", 0), (f"convs.{i}.bias", 0), nxt])
    return groups


class CNN1d(nn.Module):
    """1-D CNN. Input (B, L) (one channel) or (B, C, L); output (B, num_classes)."""

    def __init__(
        self,
        in_channels: int = 1,
        length: int = 40,
        channels: Sequence[int] = (16, 32),
        num_classes: int = 10,
        kernel_size: int = 5,
    ):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd for 'same' padding, got {kernel_size}")
        self.in_channels, self.length, self.num_classes = in_channels, length, num_classes
        self.channels = tuple(int(c) for c in channels)
        sizes = (in_channels, *self.channels)
        self.convs = nn.ModuleList(
            nn.Conv1d(a, b, kernel_size, padding=kernel_size // 2)
            for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )
        out_len = length
        for _ in self.channels:
            out_len //= 2  # each block max-pools by 2 (floor, like F.max_pool1d)
        if out_len < 1:
            raise ValueError(
                f"length {length} is too short for {len(self.channels)} pooling blocks"
            )
        self.out_len = out_len
        self.head = nn.Linear(sizes[-1] * out_len, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(1)  # (B, L) -> (B, 1, L)
        if x.dim() != 3 or x.shape[1] != self.in_channels or x.shape[2] != self.length:
            raise ValueError(
                f"CNN1d expects (B, {self.length}) or (B, {self.in_channels}, {self.length}), "
                f"got {tuple(x.shape)}"
            )
        for conv in self.convs:
            x = F.max_pool1d(F.relu(conv(x)), 2)
        x = x.transpose(1, 2).flatten(1)  # (B, C, L') -> (B, L' * C), channel-last
        return self.head(x)

    def permutation_groups(self) -> list[list[tuple[str, int]]]:
        """Exact: ReLU and max-pooling act per channel, so permuting channels commutes with them."""
        return _conv_groups(len(self.convs), "head")


class CNN2d(nn.Module):
    """2-D CNN with 3x3 convs. Input (B, C, H, W) with H = W = image_size; output (B, num_classes)."""

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 8,
        channels: Sequence[int] = (16, 32),
        num_classes: int = 10,
        kernel_size: int = 3,
    ):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd for 'same' padding, got {kernel_size}")
        self.in_channels, self.image_size, self.num_classes = in_channels, image_size, num_classes
        self.channels = tuple(int(c) for c in channels)
        sizes = (in_channels, *self.channels)
        self.convs = nn.ModuleList(
            nn.Conv2d(a, b, kernel_size, padding=kernel_size // 2)
            for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )
        out_size = image_size
        for _ in self.channels:
            out_size //= 2
        if out_size < 1:
            raise ValueError(
                f"image_size {image_size} is too small for {len(self.channels)} pooling blocks"
            )
        self.out_size = out_size
        self.head = nn.Linear(sizes[-1] * out_size * out_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expected = (self.in_channels, self.image_size, self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"CNN2d expects (B, {', '.join(map(str, expected))}), got {tuple(x.shape)}"
            )
        for conv in self.convs:
            x = F.max_pool2d(F.relu(conv(x)), 2)
        x = x.permute(0, 2, 3, 1).flatten(1)  # (B, C, H', W') -> (B, H' * W' * C), channel-last
        return self.head(x)

    def permutation_groups(self) -> list[list[tuple[str, int]]]:
        """Exact: ReLU and max-pooling act per channel, so permuting channels commutes with them."""
        return _conv_groups(len(self.convs), "head")
