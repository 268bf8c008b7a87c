"""Model families: one template per family, written once against ``Ops`` and read two ways."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jumpsearch.config import ModelConfig
from jumpsearch.models import densenet, jumpnet, resnet_v2

FORWARD: dict[str, Callable[..., Any]] = {
    "jumpnet": jumpnet.forward,
    "resnet_v2": resnet_v2.forward,
    "densenet_bc": densenet.forward,
    "sparsenet": densenet.forward,
}


def build_model(config: ModelConfig) -> Any:
    """Build the uncompiled ``keras.Model`` of a configuration.

    Example:
        >>> from jumpsearch import build_model, canonical_config
        >>> model = build_model(canonical_config("jumpnet_seed_cifar"))
        >>> model.output_shape
        (None, 10)
    """
    import keras

    from jumpsearch.models._ops import KerasOps

    config.validate()
    inputs = keras.Input(shape=config.input_shape)
    outputs = FORWARD[config.family](KerasOps(), config, inputs)
    return keras.Model(inputs, outputs, name=config.family)
