"""Model families: one module per family holds its configuration, its template and its named
configurations, and registers them; importing it here is all a new family needs."""

from __future__ import annotations

from typing import Any

from jumpsearch.config import FAMILIES, ModelConfig
from jumpsearch.models import densenet, jumpnet, resnet_v2  # noqa: F401  (each registers its families)


def build_model(config: ModelConfig, fused: bool = False) -> Any:
    """Build the uncompiled ``keras.Model`` of a configuration. ``fused`` asks for batch normalization as
    one TensorFlow kernel each way, where Keras runs on TensorFlow: the same weights and formulas and a
    smaller graph to trace, for brief trials; a model to save keeps Keras's own layer.

    Example:
        >>> from jumpsearch import build_model, canonical_config
        >>> model = build_model(canonical_config("jumpnet_seed_cifar"))
        >>> model.output_shape
        (None, 10)
    """
    from jumpsearch.device import setup_device

    setup_device()  # the backend's start-up lines go to the debug log, as in a search, not to the terminal
    import keras

    from jumpsearch.models._ops import KerasOps

    inputs = keras.Input(shape=config.input_shape)
    outputs = FAMILIES[config.family].template(KerasOps(fused), config, inputs)
    return keras.Model(inputs, outputs, name=config.family)
