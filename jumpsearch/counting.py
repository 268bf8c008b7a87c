"""What a configuration costs and what it is, from the configuration alone, before any model exists.

One definition everywhere: ``params`` are *trainable* weights (what the papers' tables report);
``FLOPs`` are multiply-accumulates in one inference pass of one image at the data set's input size: the
convolutions, the dense layer, and batch norm's scale and shift (one per value; a pre-activation batch
norm cannot be folded into a convolution). Activations, additions, concatenations and pooling are not
counted.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache

from jumpsearch.config import FAMILIES, Candidate, ModelConfig
from jumpsearch.models._ops import CountOps, TraceOps

BYTES_PER_VALUE = 4  # float32
OPTIMIZER_COPIES = 4  # each weight, its gradient and (Adam) two moments
KEPT_ACTIVATIONS = 2  # each layer's output kept for the backward pass, and its gradient


@dataclass(frozen=True)
class Counts:
    trainable: int
    non_trainable: int
    macs: int
    activations: int  # values all layers output for one image


@lru_cache(maxsize=4096)
def count(config: ModelConfig) -> Counts:
    """All counts of one configuration (cached: configurations are frozen, hashable data)."""
    ops = CountOps()
    FAMILIES[config.family].template(ops, config, config.input_shape)
    return Counts(ops.trainable, ops.non_trainable, ops.macs, ops.activations)


def count_params(config: ModelConfig) -> int:
    """Trainable weights of the model ``build_model(config)`` would build, without building it.

    Example:
        >>> from jumpsearch import canonical_config, count_params
        >>> count_params(canonical_config("jumpnet_seed_cifar"))
        810714
    """
    return count(config).trainable


def count_flops(config: ModelConfig) -> int:
    """Multiply-accumulates of one forward pass of one image, without building the model.

    Example:
        >>> from jumpsearch import canonical_config, count_flops
        >>> round(count_flops(canonical_config("densenet121")) / 1e9, 2)
        2.85
    """
    return count(config).macs


def training_memory(candidate: Candidate) -> int:
    """Bytes one training step needs, estimated: every weight four times (weight, gradient, two Adam
    moments) plus, for each image of a batch, every layer's output twice (kept for the backward pass,
    and its gradient), all float32. Framework workspace comes on top; the estimate is for rejecting
    models that cannot fit, not for packing a device to the last byte."""
    counts = count(candidate.model)
    weights = counts.trainable + counts.non_trainable
    per_batch = KEPT_ACTIVATIONS * candidate.training.batch_size * counts.activations
    return BYTES_PER_VALUE * (OPTIMIZER_COPIES * weights + per_batch)


@lru_cache(maxsize=4096)
def architecture(config: ModelConfig) -> str:
    """A digest of the network the configuration builds: its layers, their settings and their wiring.

    Two configurations with the same digest build the same network, whatever their fields say.
    """
    ops = TraceOps(config.input_shape)
    FAMILIES[config.family].template(ops, config, ops.input)
    return hashlib.sha256(json.dumps(ops.layers).encode()).hexdigest()[:32]


def candidate_key(candidate: Candidate) -> str:
    """What makes two trials the same experiment: the network built, and the training recipe."""
    return f"{architecture(candidate.model)}:{hashlib.sha256(candidate.training.to_json().encode()).hexdigest()[:16]}"
