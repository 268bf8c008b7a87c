"""Weights and FLOPs from a configuration alone, so constraints reject a point before any model exists.

One definition everywhere: ``params`` are *trainable* weights (what the papers' tables report);
``FLOPs`` are multiply-accumulates of the convolutions and the dense layer in one forward pass of one
image at the data set's input size (batch norm, activations, additions and pooling are not counted).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from jumpsearch.config import ModelConfig
from jumpsearch.models import FORWARD
from jumpsearch.models._ops import CountOps


@dataclass(frozen=True)
class Counts:
    trainable: int
    non_trainable: int
    macs: int


@lru_cache(maxsize=4096)
def count(config: ModelConfig) -> Counts:
    """All counts of one configuration (cached: configurations are frozen, hashable data)."""
    config.validate()
    ops = CountOps()
    FORWARD[config.family](ops, config, config.input_shape)
    return Counts(ops.trainable, ops.non_trainable, ops.macs)


def count_params(config: ModelConfig) -> int:
    """Trainable weights of the model ``build_model(config)`` would build, without building it.

    Example:
        >>> from jumpsearch import canonical_config, count_params
        >>> count_params(canonical_config("jumpnet_seed_cifar")) > 0
        True
    """
    return count(config).trainable


def count_flops(config: ModelConfig) -> int:
    """Multiply-accumulates of one forward pass of one image, without building the model."""
    return count(config).macs
