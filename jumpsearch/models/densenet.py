"""DenseNet-BC (Huang et al. 2016) and SparseNet (Zhu et al. 2018): one template, two aggregation rules.

SparseNet is the exponential aggregation of "Sparsely Aggregated Convolutional Networks": layer i of a
block takes only the outputs 1, 2, 4, 8, … places behind it (the block input counts as one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from jumpsearch.config import ModelConfig, at_least, each, one_of, register_family, rule
from jumpsearch.models._ops import Ops
from jumpsearch.models.common import preact_conv, stem

T = TypeVar("T")

AGGREGATIONS = ("dense", "exponential")
IMAGENET = {"input_shape": (224, 224, 3), "num_classes": 1000, "stem": "imagenet", "stem_filters": (64,)}


def dense_layer(ops: Ops[T], x: T, growth_rate: int, bottleneck: bool) -> T:
    """[BN-ReLU-1×1 (4k) →] BN-ReLU-3×3 (k)."""
    if bottleneck:
        x = preact_conv(ops, x, 4 * growth_rate, 1)
    return preact_conv(ops, x, growth_rate, 3)


def transition(ops: Ops[T], x: T, compression: float) -> T:
    """BN-ReLU-1×1 to ⌊θ·c⌋ channels, then 2×2 average pooling."""
    return ops.avg_pool(preact_conv(ops, x, int(ops.channels(x) * compression), 1), 2)


def exponential_offsets(outputs: list[T]) -> list[T]:
    """The outputs 1, 2, 4, 8, … places from the end (SparseNet's aggregation)."""
    return [outputs[len(outputs) - 2**i] for i in range(len(outputs).bit_length())]


def forward(ops: Ops[T], config: DenseNetConfig, x: T) -> T:
    x = stem(ops, config, x)
    for i, layers in enumerate(config.layers_per_block):
        if i > 0:
            x = transition(ops, x, config.compression)
        outputs = [x]
        for _ in range(layers):
            y = dense_layer(ops, x, config.growth_rate, config.bottleneck)
            outputs.append(y)
            x = ops.concat(exponential_offsets(outputs) if config.aggregation == "exponential" else [x, y])
    x = ops.relu(ops.bn(x))
    return ops.classifier(x, config.num_classes)


@register_family(
    "densenet_bc",
    template=forward,
    per_group="layers_per_block",
    canonical={
        # L = 6·n + 4 with bottlenecks, θ = 0.5, a first 3×3 convolution of 2k filters.
        "densenet_bc_100_12": {"stem": "cifar", "stem_filters": (24,)},
        "densenet_bc_250_24": {
            "stem": "cifar",
            "stem_filters": (48,),
            "layers_per_block": (41,) * 3,
            "growth_rate": 24,
        },
        # ImageNet, as keras.applications builds them.
        "densenet121": {**IMAGENET, "layers_per_block": (6, 12, 24, 16), "growth_rate": 32},
        "densenet169": {**IMAGENET, "layers_per_block": (6, 12, 32, 32), "growth_rate": 32},
        "densenet201": {**IMAGENET, "layers_per_block": (6, 12, 48, 32), "growth_rate": 32},
    },
)
@dataclass(frozen=True)
class DenseNetConfig(ModelConfig):
    """Dense blocks of BN-ReLU-1×1 (4k) → BN-ReLU-3×3 (k) layers whose outputs are concatenated, joined by
    transitions (BN-ReLU-1×1 to ⌊θ·c⌋, 2×2 average pooling). The defaults are DenseNet-BC-100-12's learner
    behind the shared stem. ``aggregation`` is ``dense`` (every earlier output) or ``exponential``."""

    stem_filters: tuple[int, ...] = (24, 24)
    layers_per_block: tuple[int, ...] = rule((16, 16, 16), each(at_least(1)), "need at least one block of 1+ layers")
    growth_rate: int = rule(12, at_least(1), "must be at least 1")
    compression: float = rule(0.5, lambda v: 0 < v <= 1, "must lie in (0, 1]")
    bottleneck: bool = True
    aggregation: str = rule("dense", one_of(*AGGREGATIONS), f"must be one of {', '.join(AGGREGATIONS)}")

    @classmethod
    def downsamplings_of(cls, groups: int) -> int:
        return groups - 1


@register_family(
    "sparsenet",
    template=forward,
    per_group="layers_per_block",
    # L = 3·n + 4 without bottleneck or compression, a first 3×3 convolution of 2k filters.
    canonical={
        "sparsenet_40_24": {"stem": "cifar", "stem_filters": (48,)},
        "sparsenet_100_24": {"stem": "cifar", "stem_filters": (48,), "layers_per_block": (32,) * 3},
    },
)
@dataclass(frozen=True)
class SparseNetConfig(DenseNetConfig):
    """DenseNet with exponential aggregation, no bottleneck and no compression: the defaults are
    SparseNet-40-24's learner behind the shared stem."""

    stem_filters: tuple[int, ...] = (48, 48)
    layers_per_block: tuple[int, ...] = (12, 12, 12)
    growth_rate: int = 24
    compression: float = 1.0
    bottleneck: bool = False
    aggregation: str = "exponential"
