"""Models (no torchvision).

* :class:`QuadraticLinear` — the single fully connected layer of Aubinais et al. (2025),
  §5.1.1, on the augmented features ``[x, x²]`` (element-wise square).
* :class:`MLP` — fully connected ReLU network (flattens its input).
* :class:`DigitsCNN` — a small CNN for the 1×8×8 digits, BatchNorm-free so that the ensemble
  trainer (``torch.func.vmap``) can train many at once.
* :func:`resnet18`, :func:`resnet50` — CIFAR-style ResNets (He et al. 2016): 3×3 stride-1 stem,
  no max-pool, stages of 64/128/256/512 planes, global average pooling; ResNet-18 on CIFAR-10
  has 11,173,962 parameters.
* :func:`densenet121` — CIFAR-style DenseNet-121 (Huang et al. 2017): growth 32, blocks
  (6, 12, 24, 16), compression 0.5, 3×3 stem of 64 channels, no max-pool (6,956,298 parameters
  on CIFAR-10).

The big models use global average pooling, so they accept 32×32 (CIFAR) and 64×64
(TinyImageNet) inputs alike. :func:`build_model` builds any of them by name.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mis._validation import positive_int, string

__all__ = [
    "MLP",
    "DigitsCNN",
    "QuadraticLinear",
    "available_models",
    "build_model",
    "count_parameters",
    "densenet121",
    "resnet18",
    "resnet50",
]


class QuadraticLinear(nn.Module):
    """One linear layer on ``[x, x²]``: ``logits = W [x, x ⊙ x] + b``.

    Parameters
    ----------
    dim : int
        Input dimension d (128 in Aubinais et al.); the layer sees 2d features.
    n_classes : int, default 2
        Output logits (trained with cross-entropy).

    Shapes: input (N, d) → logits (N, n_classes). Parameters: ``fc.weight`` (n_classes, 2d),
    ``fc.bias`` (n_classes,).
    """

    def __init__(self, dim: int = 128, n_classes: int = 2):
        super().__init__()
        self.dim = dim
        self.fc = nn.Linear(2 * dim, n_classes)

    @staticmethod
    def features(x: torch.Tensor) -> torch.Tensor:
        """The augmented features ``[x, x²]``, shape (..., 2d)."""
        return torch.cat([x, x * x], dim=-1)

    def forward(self, x):
        return self.fc(self.features(x))


class MLP(nn.Module):
    """Fully connected ReLU network; the input is flattened from axis 1.

    Parameters
    ----------
    in_features : int
    hidden : sequence of int, default (128,)
    n_classes : int, default 10
    """

    def __init__(self, in_features: int, hidden=(128,), n_classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class DigitsCNN(nn.Module):
    """Small CNN for 8×8 images: conv3×3(16)–ReLU–conv3×3(32)–ReLU–maxpool2–FC(64)–ReLU–FC.

    With ``batchnorm=True`` each convolution is followed by a BatchNorm (conv–BN–ReLU, the
    layout BN folding and BN re-estimation after PTQ act on); the default has no BatchNorm
    so it trains under ``vmap``. Input (N, in_channels, 8, 8).
    """

    def __init__(
        self,
        n_classes: int = 10,
        in_channels: int = 1,
        width: int = 16,
        size: int = 8,
        batchnorm: bool = False,
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=not batchnorm)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1, bias=not batchnorm)
        self.bn1 = nn.BatchNorm2d(width) if batchnorm else nn.Identity()
        self.bn2 = nn.BatchNorm2d(2 * width) if batchnorm else nn.Identity()
        self.fc1 = nn.Linear(2 * width * (size // 2) ** 2, 64)
        self.fc2 = nn.Linear(64, n_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


# ------------------------------------------------------------------------------------------
# CIFAR ResNets
# ------------------------------------------------------------------------------------------
class _BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        out_planes = self.expansion * planes
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != out_planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, out_planes, 1, stride, bias=False),
                nn.BatchNorm2d(out_planes),
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR-style ResNet: 3×3 stem (``width``), four stages of ``width``·(1, 2, 4, 8) planes,
    global average pooling, linear head. ``width=64`` is the published network; a smaller
    width keeps the topology (toy sizes for CPU smoke tests)."""

    def __init__(self, block, num_blocks, n_classes=10, in_channels=3, width=64):
        super().__init__()
        w = positive_int(width, "width")
        self.in_planes = w
        self.conv1 = nn.Conv2d(in_channels, w, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.layer1 = self._stage(block, w, num_blocks[0], 1)
        self.layer2 = self._stage(block, 2 * w, num_blocks[1], 2)
        self.layer3 = self._stage(block, 4 * w, num_blocks[2], 2)
        self.layer4 = self._stage(block, 8 * w, num_blocks[3], 2)
        self.linear = nn.Linear(8 * w * block.expansion, n_classes)

    def _stage(self, block, planes, n, stride):
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(block(self.in_planes, planes, s))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def resnet18(n_classes: int = 10, in_channels: int = 3, width: int = 64) -> ResNet:
    """CIFAR ResNet-18 (BasicBlock × (2, 2, 2, 2)); 11,173,962 parameters for 10 classes.

    ``width`` (default 64, the published network) sets the planes of the stem and of the
    four stages, ``width``·(1, 2, 4, 8); e.g. ``width=8`` is the same topology at toy size.
    """
    return ResNet(_BasicBlock, (2, 2, 2, 2), n_classes, in_channels, width)


def resnet50(n_classes: int = 10, in_channels: int = 3, width: int = 64) -> ResNet:
    """CIFAR ResNet-50 (Bottleneck × (3, 4, 6, 3)); 23,520,842 parameters for 10 classes
    (``width`` as for :func:`resnet18`)."""
    return ResNet(_Bottleneck, (3, 4, 6, 3), n_classes, in_channels, width)


# ------------------------------------------------------------------------------------------
# CIFAR DenseNet-121
# ------------------------------------------------------------------------------------------
class _DenseLayer(nn.Module):
    def __init__(self, in_planes, growth):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, 4 * growth, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth)
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, x):
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return torch.cat([out, x], 1)


class _Transition(nn.Module):
    def __init__(self, in_planes, out_planes):
        super().__init__()
        self.bn = nn.BatchNorm2d(in_planes)
        self.conv = nn.Conv2d(in_planes, out_planes, 1, bias=False)

    def forward(self, x):
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2)


class DenseNet(nn.Module):
    """CIFAR-style DenseNet-BC: 3×3 stem (2·growth), dense blocks with 0.5 compression."""

    def __init__(self, blocks, growth=32, reduction=0.5, n_classes=10, in_channels=3):
        super().__init__()
        planes = 2 * growth
        self.conv1 = nn.Conv2d(in_channels, planes, 3, padding=1, bias=False)
        stages: list[nn.Module] = []
        for i, n in enumerate(blocks):
            layers = []
            for _ in range(n):
                layers.append(_DenseLayer(planes, growth))
                planes += growth
            stages.append(nn.Sequential(*layers))
            if i < len(blocks) - 1:
                out = int(planes * reduction)
                stages.append(_Transition(planes, out))
                planes = out
        self.features = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(planes)
        self.linear = nn.Linear(planes, n_classes)

    def forward(self, x):
        out = self.features(self.conv1(x))
        out = F.adaptive_avg_pool2d(F.relu(self.bn(out)), 1).flatten(1)
        return self.linear(out)


def densenet121(n_classes: int = 10, in_channels: int = 3) -> DenseNet:
    """CIFAR DenseNet-121 (blocks 6, 12, 24, 16; growth 32); 6,956,298 parameters for 10 classes."""
    return DenseNet((6, 12, 24, 16), 32, 0.5, n_classes, in_channels)


# ------------------------------------------------------------------------------------------
_REGISTRY = {
    "quadratic_linear": QuadraticLinear,
    "mlp": MLP,
    "digits_cnn": DigitsCNN,
    "resnet18": resnet18,
    "resnet50": resnet50,
    "densenet121": densenet121,
}


def available_models() -> tuple[str, ...]:
    """The names :func:`build_model` accepts, sorted."""
    return tuple(sorted(_REGISTRY))


def build_model(name: str, **kwargs) -> nn.Module:
    """Build a model by name: one of ``quadratic_linear``, ``mlp``, ``digits_cnn``,
    ``resnet18``, ``resnet50``, ``densenet121``; ``kwargs`` go to its constructor.

    ``functools.partial(build_model, name, **kwargs)`` is a picklable model factory.
    """
    string(name, "model", available_models())
    return _REGISTRY[name](**kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
