"""Pre-activation ResNet (He et al. 2016, "Identity Mappings in Deep Residual Networks")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from jumpsearch.config import GroupedConfig, register_family
from jumpsearch.models._ops import Ops
from jumpsearch.models.common import preact_conv, stem

T = TypeVar("T")


def block(ops: Ops[T], x: T, filters: int, bottleneck: bool, stride: int) -> T:
    """Bottleneck (1×1, 3×3, 1×1 to 4F) or basic (3×3, 3×3) block; a projection of the pre-activated input
    replaces the identity where the width or the size changes."""
    out = 4 * filters if bottleneck else filters
    pre = ops.relu(ops.bn(x))
    shortcut = x if ops.channels(x) == out and stride == 1 else ops.conv(pre, out, 1, stride)
    if bottleneck:
        y = ops.conv(pre, filters, 1)
        y = preact_conv(ops, y, filters, 3, stride)
        y = preact_conv(ops, y, out, 1)
    else:
        y = ops.conv(pre, filters, 3, stride)
        y = preact_conv(ops, y, filters, 3)
    return ops.add(shortcut, y)


def forward(ops: Ops[T], config: ResNetV2Config, x: T) -> T:
    x = stem(ops, config, x)
    for g, (filters, blocks) in enumerate(zip(config.group_filters, config.blocks_per_group, strict=True)):
        for b in range(blocks):
            x = block(ops, x, filters, config.bottleneck, stride=2 if g > 0 and b == 0 else 1)
    x = ops.relu(ops.bn(x))  # pre-activation networks end with BN → ReLU before pooling
    return ops.classifier(x, config.num_classes)


@register_family(
    "resnet_v2",
    template=forward,
    per_group="blocks_per_group",
    # 164 layers = 3 groups × 18 bottleneck blocks × 3 + 2; one 3×3 convolution of 16, widths 16, 32, 64 (×4).
    canonical={"resnet_v2_164": {"stem": "cifar", "stem_filters": (16,)}},
)
@dataclass(frozen=True)
class ResNetV2Config(GroupedConfig):
    """Stride 2 and a projection where each group after the first starts; bottleneck blocks expand 4×.
    The defaults are ResNet-164's learner behind the shared stem."""

    stem_filters: tuple[int, ...] = (16, 16)
    blocks_per_group: tuple[int, ...] = (18, 18, 18)
    base_filters: int = 16
    bottleneck: bool = True

    @classmethod
    def downsamplings_of(cls, groups: int) -> int:
        return groups - 1
