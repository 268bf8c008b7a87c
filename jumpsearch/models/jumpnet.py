"""The JumpNet template (DESIGN.md): a ResNet v2 learner whose groups are joined by group jump links."""

from __future__ import annotations

from typing import TypeVar

from jumpsearch.config import JumpNetConfig
from jumpsearch.models._ops import Ops
from jumpsearch.models.common import preact_conv, stem

T = TypeVar("T")


def bottleneck_block(ops: Ops[T], x: T, filters: int) -> T:
    """1×1 → 3×3 → 1×1 pre-activation convolutions (no expansion) plus the block's input.

    The shortcut is the identity where the input already has ``filters`` channels, else a 1×1 projection.
    """
    shortcut = x if ops.channels(x) == filters else ops.conv(x, filters, 1)
    y = preact_conv(ops, x, filters, 1)
    y = preact_conv(ops, y, filters, 3)
    y = preact_conv(ops, y, filters, 1)
    return ops.add(shortcut, y)


def jump_link(ops: Ops[T], x: T, width: int, span: int) -> T:
    """BN → 1×1 conv whose stride matches the ``span`` groups it jumps over."""
    return ops.conv(ops.bn(x), width, 1, stride=2**span)


def forward(ops: Ops[T], config: JumpNetConfig, x: T) -> T:
    x = stem(ops, x, config.stem_filters, config.stride)
    group_inputs = []
    for g, (filters, blocks) in enumerate(zip(config.group_filters, config.blocks_per_group, strict=True)):
        group_inputs.append(x)
        for _ in range(blocks):
            x = bottleneck_block(ops, x, filters)
        x = preact_conv(ops, x, filters, 1, stride=2)  # group end: feature pooling
        width = config.round_filters(config.jump_width * filters)
        links = [
            jump_link(ops, group_inputs[first], width, g - first + 1) for first, last in config.jump_spans if last == g
        ]
        if links:
            x = ops.concat([x, *links])
    return ops.classifier(x, config.num_classes)
