"""Residual nets: CIFAR-style ResNet-(6n+2) for small images, and torchvision's ImageNet ResNets.

BatchNorm and populations: fitness is evaluated with **eval-mode BatchNorm**. The running mean and
variance are float buffers, hence part of the genome (`GenomeSpec.from_module` includes them), and
they are what normalises activations when the population is evaluated. Call `model.eval()` before
`torch.func.functional_call` under `vmap`: in train mode BatchNorm normalises with batch statistics
and writes the running stats in place, which is not a fitness of the genome. (Train mode does run
under vmap when the running stats are passed stacked, and then updates those stacked tensors, but
nothing in latent-evo relies on that.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_BN_TENSORS = ("weight", "bias", "running_mean", "running_var")


def _bn(prefix: str, axis: int = 0) -> list[tuple[str, int]]:
    return [(f"{prefix}.{t}", axis) for t in _BN_TENSORS]


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus a shortcut; ReLU after the sum (He et al., 2016)."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        # Projection shortcut ("option B") only where the shape changes; identity elsewhere.
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))  # out-of-place: no in-place ops on vmapped tensors


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32-ish images: a 3x3 stem, three stages of n BasicBlocks at widths
    (w, 2w, 4w) with strides (1, 2, 2), global average pooling, a linear head.

    depth 8 -> n = 1 (~78k params at width 16), depth 20 -> n = 3 (~0.27M). Input (B, C, H, W).
    See the module docstring for BatchNorm under `vmap` (use eval mode).
    """

    def __init__(
        self, depth: int = 8, in_channels: int = 3, num_classes: int = 10, width: int = 16
    ):
        super().__init__()
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ValueError(
                f"CifarResNet depth must be 6n+2 with n >= 1 (8, 14, 20, 32, ...), got {depth}"
            )
        self.depth, self.in_channels, self.num_classes, self.width = (
            depth,
            in_channels,
            num_classes,
            width,
        )
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        planes = width
        stages = []
        for s, stride in enumerate((1, 2, 2)):
            out_planes = width * 2**s
            blocks = []
            for b in range(n):
                blocks.append(BasicBlock(planes, out_planes, stride if b == 0 else 1))
                planes = out_planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"CifarResNet expects (B, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = x.mean(dim=(2, 3))  # global average pool: (B, C, H, W) -> (B, C)
        return self.fc(x)

    def permutation_groups(self) -> list[list[tuple[str, int]]]:
        """Exact groups: each block's inner channels, and each residual stream's channels.

        Inner: conv1 out-channels, bn1, conv2 in-channels of one block. Residual stream: all
        tensors that write to or read from the same residual activation (stem or projection
        shortcut, every conv2 + bn2 adding into it, every conv1/shortcut reading it, and the head).
        All exact because ReLU, BatchNorm (eval) and average pooling act per channel.
        """
        groups: list[list[tuple[str, int]]] = []
        stream = [("conv1.weight", 0), *_bn("bn1")]
        for s in (1, 2, 3):
            for b, block in enumerate(getattr(self, f"layer{s}")):
                p = f"layer{s}.{b}"
                groups.append(
                    [(f"{p}.conv1.weight", 0), *_bn(f"{p}.bn1"), (f"{p}.conv2.weight", 1)]
                )
                stream.append((f"{p}.conv1.weight", 1))
                if len(block.shortcut) > 0:  # a projection starts a new residual stream
                    stream.append((f"{p}.shortcut.0.weight", 1))
                    groups.append(stream)
                    stream = [(f"{p}.shortcut.0.weight", 0), *_bn(f"{p}.shortcut.1")]
                stream += [(f"{p}.conv2.weight", 0), *_bn(f"{p}.bn2")]
        stream.append(("fc.weight", 1))
        groups.append(stream)
        return groups


TORCHVISION_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


def torchvision_resnet(
    name: str = "resnet18", num_classes: int = 10, in_channels: int = 3, small_input: bool = False
) -> nn.Module:
    """A torchvision ResNet with random weights (never downloads any).

    in_channels != 3 replaces the 7x7 stem conv. small_input=True swaps the stem for a 3x3
    stride-1 conv and drops the max-pool, the usual adaptation for 32x32 images. The model is
    torchvision's own class; it runs under `vmap(functional_call)` in eval mode (its in-place
    ReLUs and `+=` are fine there). It has no `permutation_groups` (use `symmetry.permutation_groups`,
    which returns [] for it): its bottleneck streams are not worth stating by hand here.
    """
    import torchvision

    if name not in TORCHVISION_RESNETS:
        raise ValueError(f"unknown torchvision resnet {name!r}; valid: {list(TORCHVISION_RESNETS)}")
    model = getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
    if small_input:
        model.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
    if small_input or in_channels != 3:  # same init torchvision gives its own stem
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    return model
