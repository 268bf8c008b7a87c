"""Pieces every family shares, so a comparison between families differs only in the learner."""

from __future__ import annotations

from typing import TypeVar

from jumpsearch.config import ModelConfig
from jumpsearch.models._ops import Ops

T = TypeVar("T")


def preact_conv(ops: Ops[T], x: T, filters: int, kernel: int, stride: int = 1) -> T:
    """BN → ReLU → conv, the pre-activation unit of ResNet v2 and DenseNet."""
    return ops.conv(ops.relu(ops.bn(x)), filters, kernel, stride)


def stem(ops: Ops[T], config: ModelConfig, x: T) -> T:
    """The configuration's stem (see ``ModelConfig``): shared, cifar or imagenet."""
    if config.stem == "cifar":  # the first pre-activation block brings the BN → ReLU
        return ops.conv(x, config.stem_filters[0], 3, config.stride)
    if config.stem == "imagenet":
        x = ops.relu(ops.bn(ops.conv(x, config.stem_filters[0], 7, 2)))
        return ops.max_pool(x, 3, 2)
    x = ops.relu(ops.bn(ops.conv(x, config.stem_filters[0], 3, config.stride)))
    return ops.relu(ops.bn(ops.conv(x, config.stem_filters[1], 3)))
