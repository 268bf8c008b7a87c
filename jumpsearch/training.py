"""Brief training of one candidate, and the once-per-process device set-up it runs on."""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass
from functools import lru_cache

from jumpsearch.config import Candidate, TrainingConfig
from jumpsearch.data import Dataset

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter, not our output


class TrainingFailed(RuntimeError):
    """Training produced no usable model (NaN loss, say); the trial fails with this reason."""


@dataclass(frozen=True)
class TrainResult:
    val_accuracy: float
    val_loss: float
    epochs: int
    train_seconds: float
    device: str


@lru_cache(maxsize=1)
def setup_device(quiet: bool = False) -> str:
    """Configure TensorFlow once: on a GPU, memory growth and mixed precision; else say it is the CPU."""
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        if not quiet:
            print("jumpsearch: no GPU visible to TensorFlow; training on CPU", file=sys.stderr)
        return "CPU"
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    keras.mixed_precision.set_global_policy("mixed_float16")
    name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
    return f"GPU:0 {name}" + (f" (+{len(gpus) - 1} more)" if len(gpus) > 1 else "")


def make_optimizer(config: TrainingConfig):  # -> keras.optimizers.Optimizer
    import keras

    decay = config.weight_decay or None
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(config.learning_rate, momentum=0.9, nesterov=True, weight_decay=decay)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(config.learning_rate, weight_decay=config.weight_decay)
    return keras.optimizers.Adam(config.learning_rate, weight_decay=decay)


def train_and_evaluate(candidate: Candidate, data: Dataset, seed: int = 0) -> TrainResult:
    """Train on ``data``'s training part for the candidate's budget; score on its validation part."""
    import keras
    import numpy as np
    import tensorflow as tf

    from jumpsearch.models import build_model

    device = setup_device()
    # Drop the last trial's graph; Optuna's gc_after_trial already collected, so skip a second gc.collect.
    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(seed)
    config = candidate.training
    model = build_model(candidate.model)
    model.compile(
        optimizer=make_optimizer(config),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=device != "CPU",  # XLA pays off on a GPU; on a CPU its compile time outweighs it
    )
    n = len(data.x_train)
    steps = config.steps_per_epoch or math.ceil(n / config.batch_size)
    train = (
        tf.data.Dataset.from_tensor_slices((data.x_train, data.y_train))
        .shuffle(n, seed=seed, reshuffle_each_iteration=True)
        .repeat()
        .batch(config.batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    start = time.perf_counter()
    history = model.fit(
        train,
        epochs=config.epochs,
        steps_per_epoch=steps,
        callbacks=[keras.callbacks.TerminateOnNaN()],
        shuffle=False,  # the pipeline shuffles
        verbose=0,
    )
    seconds = time.perf_counter() - start
    losses = history.history.get("loss", [])
    if not losses or not all(np.isfinite(losses)):
        raise TrainingFailed(f"training loss became {losses[-1] if losses else 'undefined'} at epoch {len(losses)}")
    val_loss, val_accuracy = model.evaluate(data.x_val, data.y_val, batch_size=max(256, config.batch_size), verbose=0)
    return TrainResult(float(val_accuracy), float(val_loss), len(losses), seconds, device)
