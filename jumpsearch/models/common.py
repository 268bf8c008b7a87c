"""Pieces every family shares, so a comparison between families differs only in the learner."""

from __future__ import annotations

from typing import TypeVar

from jumpsearch.models._ops import Ops

T = TypeVar("T")


def preact_conv(ops: Ops[T], x: T, filters: int, kernel: int, stride: int = 1) -> T:
    """BN → ReLU → conv, the pre-activation unit of ResNet v2 and DenseNet."""
    return ops.conv(ops.relu(ops.bn(x)), filters, kernel, stride)


def stem(ops: Ops[T], x: T, filters: tuple[int, int], stride: int) -> T:
    """conv 3×3 (s0, stride) → BN → ReLU → conv 3×3 (s1) → BN → ReLU."""
    x = ops.relu(ops.bn(ops.conv(x, filters[0], 3, stride)))
    return ops.relu(ops.bn(ops.conv(x, filters[1], 3)))
