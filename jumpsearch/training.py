"""Brief training of one candidate, and the once-per-process device set-up it runs on."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from jumpsearch.config import Candidate, TrainingConfig
from jumpsearch.data import Dataset
from jumpsearch.device import set_seed, setup_device
from jumpsearch.errors import check_interrupted


class TrainingFailed(RuntimeError):
    """Training produced no usable model (NaN loss, say); the trial fails with this reason."""


@dataclass(frozen=True)
class TrainResult:
    val_accuracy: float
    val_loss: float
    epochs: int
    train_seconds: float
    device: str
    backend: str = "tensorflow"
    stopped: bool = False  # a schedule stopped it at a rung; the scores are the rung's


def compile_model(candidate: Candidate, learning_rate: Any = None):  # -> keras.Model
    """Build the candidate's model and compile it with its training recipe, ready for ``fit``.

    Example:
        >>> from jumpsearch import best_configs, compile_model
        >>> model = compile_model(best_configs("sqlite:///studies/digits.db")[0].candidate)  # doctest: +SKIP
    """
    from jumpsearch.models import build_model
    from jumpsearch.optimizers import make_optimizer

    model = build_model(candidate.model)
    model.compile(
        optimizer=make_optimizer(candidate.training, learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


_pipeline: dict[int, tuple[Dataset, object]] = {}


def _tensorflow_examples(data: Dataset, batch_size: int, seed: int):  # -> tf.data.Dataset
    """TensorFlow's own input path: the training part as a tf.data source made once per worker (and
    reused by every trial), shuffled, repeated and prefetched on TensorFlow's threads."""
    import tensorflow as tf

    if id(data) not in _pipeline:
        _pipeline.clear()  # one data set per worker; holding ``data`` keeps its id from being reused
        _pipeline[id(data)] = (data, tf.data.Dataset.from_tensor_slices((data.x_train, data.y_train)))
    source: Any = _pipeline[id(data)][1]
    shuffled = source.shuffle(len(data.x_train), seed=seed, reshuffle_each_iteration=True)
    return shuffled.repeat().batch(batch_size).prefetch(tf.data.AUTOTUNE)


def evaluate(model, x, y, batch_size: int = 1024) -> tuple[float, float]:  # model: keras.Model
    """(loss, accuracy) by eager forward passes: no test function to trace for a one-off evaluation."""
    import keras
    import numpy as np

    loss, correct = 0.0, 0
    for start in range(0, len(x), batch_size):
        probs = model(x[start : start + batch_size], training=False)
        labels = y[start : start + batch_size]
        loss += float(keras.ops.sum(keras.losses.sparse_categorical_crossentropy(labels, probs)))
        correct += int(np.sum(np.argmax(keras.ops.convert_to_numpy(probs), axis=-1) == labels))
    return loss / len(x), correct / len(x)


def steps_per_epoch(config: TrainingConfig, data: Dataset) -> int:
    """Batches in an epoch: the recipe's ``steps_per_epoch``, else one pass over the training part."""
    return config.steps_per_epoch or math.ceil(len(data.x_train) / config.batch_size)


def _rung_callback(data: Dataset, rungs: Sequence[int], on_rung: Callable[[int, float], bool], scores: list):
    """A Keras callback that scores the model on the validation part at each rung and stops training
    when ``on_rung(epoch, accuracy)`` says no; ``scores`` receives the last rung's (loss, accuracy)."""
    import keras

    class Rungs(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if epoch + 1 in rungs:
                scores[:] = evaluate(self.model, data.x_val, data.y_val)
                if not on_rung(epoch + 1, scores[1]):
                    self.model.stop_training = True

    return Rungs()


def _interruption_callback():  # -> keras.callbacks.Callback
    """A Keras callback that raises, at the next batch, a signal whose exception was swallowed on its way
    (in a finalizer or a garbage-collector callback of the backend): training stops within a step."""
    import keras

    class Interruptions(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            check_interrupted()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            check_interrupted()

    return Interruptions()


def train_and_evaluate(
    candidate: Candidate,
    data: Dataset,
    seed: int = 0,
    callbacks: Sequence[Any] = (),
    on_epoch: Callable[[int], None] | None = None,
    rungs: Sequence[int] = (),
    on_rung: Callable[[int, float], bool] | None = None,
) -> TrainResult:
    """Train on ``data``'s training part for the candidate's budget; score on its validation part.

    ``callbacks`` are Keras callbacks for ``fit`` (the benchmarks time epochs with one); ``on_epoch``
    is called with the number of epochs done after each one (progress bars). At each epoch of ``rungs``
    the model is scored and ``on_rung(epoch, val_accuracy)`` decides whether it goes on; a stopped
    run returns the rung's scores with ``stopped``.
    """
    device = setup_device()
    import keras
    import numpy as np

    from jumpsearch.models import build_model
    from jumpsearch.optimizers import make_optimizer

    rung_scores: list[float] = []
    if rungs and on_rung is not None:  # before on_epoch: the progress shows an epoch once it is judged
        callbacks = [*callbacks, _rung_callback(data, rungs, on_rung, rung_scores)]
    if on_epoch is not None:
        callbacks = [*callbacks, keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: on_epoch(epoch + 1))]
    # Drop the last trial's graph; Optuna's gc_after_trial already collected, so skip a second gc.collect.
    keras.backend.clear_session(free_memory=False)
    set_seed(seed)
    config = candidate.training
    model = build_model(candidate.model)
    tensorflow = keras.config.backend() == "tensorflow"
    # No training metrics and a pre-built optimizer: variables created while tracing make TensorFlow
    # trace the train step twice, and the search only needs validation accuracy. Fused updates (on
    # TensorFlow): a smaller graph to trace for the same update rule.
    model.compile(
        optimizer=make_optimizer(config, fused=True),
        loss="sparse_categorical_crossentropy",
        # TensorFlow: XLA pays off on a GPU, and on a CPU its compile time outweighs it. JAX and PyTorch
        # decide for themselves (JAX always compiles).
        jit_compile=device != "CPU" if tensorflow else "auto",
    )
    model.optimizer.build(model.trainable_variables)
    steps = steps_per_epoch(config, data)
    if tensorflow:
        train = _tensorflow_examples(data, config.batch_size, seed)
    else:
        from jumpsearch.batches import Batches

        train = Batches(data.x_train, data.y_train, config.batch_size, steps, seed)
    start = time.perf_counter()
    history = model.fit(
        train,
        epochs=config.epochs,
        steps_per_epoch=steps,
        callbacks=[keras.callbacks.TerminateOnNaN(), _interruption_callback(), *callbacks],
        shuffle=False,  # both inputs shuffle themselves
        verbose=0,
    )
    seconds = time.perf_counter() - start
    losses = history.history.get("loss", [])
    if not losses or not all(np.isfinite(losses)):
        raise TrainingFailed(f"training loss became {losses[-1] if losses else 'undefined'} at epoch {len(losses)}")
    stopped = len(losses) < config.epochs and bool(rung_scores)
    val_loss, val_accuracy = rung_scores if stopped else evaluate(model, data.x_val, data.y_val)
    return TrainResult(val_accuracy, val_loss, len(losses), seconds, device, keras.config.backend(), stopped)
