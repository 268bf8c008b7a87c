"""DenseNet-BC (Huang et al. 2016) and SparseNet (Zhu et al. 2018): one template, two aggregation rules."""

from __future__ import annotations

from typing import TypeVar

from jumpsearch.config import DenseNetConfig
from jumpsearch.models._ops import Ops
from jumpsearch.models.common import preact_conv, stem

T = TypeVar("T")


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
    sparse = config.family == "sparsenet"
    x = stem(ops, x, config.stem_filters, config.stride)
    for i, layers in enumerate(config.layers_per_block):
        if i > 0:
            x = transition(ops, x, config.compression)
        outputs = [x]
        for _ in range(layers):
            y = dense_layer(ops, x, config.growth_rate, config.bottleneck)
            outputs.append(y)
            x = ops.concat(exponential_offsets(outputs) if sparse else [x, y])
    x = ops.relu(ops.bn(x))
    return ops.classifier(x, config.num_classes)
