"""The training recipe's optimizers, on any Keras backend.

On TensorFlow, a search's brief trials take fused versions of the same update rules (``fused_tf``): the
one speed-up that is TensorFlow's own sits behind this function, with stock Keras beside it.
"""

from __future__ import annotations

from typing import Any

import keras

from jumpsearch.config import TrainingConfig

STOCK = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW, "sgd": keras.optimizers.SGD}


def make_optimizer(
    config: TrainingConfig, learning_rate: Any = None, fused: bool = False, ema_momentum: float | None = None
) -> keras.Optimizer:
    """The candidate's optimizer; ``learning_rate`` may replace its constant rate by a schedule, and
    ``fused`` asks for one-kernel-per-variable updates, given where Keras runs on TensorFlow (elsewhere
    the stock optimizer is the fast path). ``ema_momentum`` keeps a moving average of the weights, which
    replaces them when ``fit`` ends (stock optimizers only)."""
    classes = STOCK
    if fused and keras.config.backend() == "tensorflow" and ema_momentum is None:
        from jumpsearch.fused_tf import FUSED as classes
    cls = classes[config.optimizer]
    rate = config.learning_rate if learning_rate is None else learning_rate
    ema = {"use_ema": True, "ema_momentum": ema_momentum} if ema_momentum is not None else {}
    if config.optimizer == "sgd":
        return cls(rate, momentum=0.9, nesterov=True, weight_decay=config.weight_decay or None, **ema)
    if config.optimizer == "adamw":
        return cls(rate, weight_decay=config.weight_decay, **ema)
    return cls(rate, weight_decay=config.weight_decay or None, **ema)
