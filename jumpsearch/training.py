"""Brief training of one candidate, and the once-per-process device set-up it runs on."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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
    curve: tuple[float, ...] = ()  # validation accuracy after each epoch, when it was measured every epoch
    costs: dict[str, Any] = field(default_factory=dict)  # seconds: see ``train_and_evaluate``


def compile_model(candidate: Candidate, learning_rate: Any = None):  # -> keras.Model
    """Build the candidate's model and compile it with its training recipe, ready for ``fit``.

    Example:
        >>> from jumpsearch import best_configs, compile_model
        >>> model = compile_model(best_configs("sqlite:///studies/digits.db")[0].candidate)  # doctest: +SKIP
    """
    setup_device()  # before anything imports the backend: its start-up lines go to the debug log
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
    reused by every trial), shuffled, repeated and prefetched on TensorFlow's threads. Repeated, every
    batch is full: saying so (``drop_remainder``) gives the traced train step a known batch size, so
    shapes are constants in its graph instead of ops."""
    import tensorflow as tf

    if id(data) not in _pipeline:
        _pipeline.clear()  # one data set per worker; holding ``data`` keeps its id from being reused
        _pipeline[id(data)] = (data, tf.data.Dataset.from_tensor_slices((data.x_train, data.y_train)))
    source: Any = _pipeline[id(data)][1]
    shuffled = source.shuffle(len(data.x_train), seed=seed, reshuffle_each_iteration=True)
    return shuffled.repeat().batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


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


class _Clock:
    """Where a run's seconds go: the fixed part (build, compile, the first step, which traces the train
    step) and, for each epoch, training and validation; not the search's own work between epochs (rung
    decisions, records), which the simulator of a tabulated benchmark measures as it replays the rest."""

    def __init__(self) -> None:
        self.marks: dict[str, float] = {}
        self.train: list[float] = []
        self.evaluate: list[float] = []
        self.last = time.perf_counter()

    def lap(self) -> float:
        now = time.perf_counter()
        seconds, self.last = now - self.last, now
        return seconds

    def costs(self) -> dict[str, Any]:
        fixed = sum(self.marks.get(k, 0.0) for k in ("build", "compile", "first_step"))
        return {
            **{k: round(v, 4) for k, v in self.marks.items()},
            "fixed": round(fixed, 4),
            "train": [round(v, 4) for v in self.train],
            "evaluate": [round(v, 4) for v in self.evaluate],
        }


def _epoch_callback(
    data: Dataset,
    clock: _Clock,
    every_epoch: bool,
    rungs: Sequence[int],
    on_rung: Callable[[int, float], bool] | None,
    scores: list[tuple[float, float]],
):
    """A Keras callback that times the first step and each epoch, scores the model on the validation
    part after every epoch (``every_epoch``) or at the rungs only, and stops training when
    ``on_rung(epoch, accuracy)`` says no. ``scores`` receives each (loss, accuracy) measured."""
    import keras

    class Epochs(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            if epoch:  # the search's own work since the last epoch (rung decision, records): not training
                clock.lap()

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if "first_step" not in clock.marks:
                clock.marks["first_step"] = clock.lap()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            clock.train.append(clock.lap())
            judged = on_rung is not None and epoch + 1 in rungs
            if every_epoch or judged:
                scores.append(evaluate(self.model, data.x_val, data.y_val))
                clock.evaluate.append(clock.lap())
            if judged and not on_rung(epoch + 1, scores[-1][1]):  # type: ignore[misc]
                self.model.stop_training = True

    return Epochs()


def interruption_callback():  # -> keras.callbacks.Callback
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
    on_epoch: Callable[[int, float], None] | None = None,
    rungs: Sequence[int] = (),
    on_rung: Callable[[int, float], bool] | None = None,
) -> TrainResult:
    """Train on ``data``'s training part for the candidate's budget; score on its validation part.

    ``callbacks`` are Keras callbacks for ``fit`` (the benchmarks time epochs with one). With
    ``on_epoch``, the model is scored on the validation part after every epoch and ``on_epoch(epochs
    done, accuracy)`` is called (the learning curve: ``curve`` of the result); without it, only at the
    rungs and at the end. At each epoch of ``rungs`` ``on_rung(epoch, val_accuracy)`` decides whether it
    goes on; a stopped run returns the rung's scores with ``stopped``.

    ``costs`` (seconds): ``build``, ``compile``, ``first_step`` (the first batch, which traces the train
    step) and their sum ``fixed``; ``train`` and ``evaluate``, one entry per epoch (the first epoch's
    training without its first step).
    """
    device = setup_device()
    import keras
    import numpy as np

    from jumpsearch.models import build_model
    from jumpsearch.optimizers import make_optimizer

    clock = _Clock()
    scores: list[tuple[float, float]] = []
    every_epoch = on_epoch is not None
    epochs_cb = _epoch_callback(data, clock, every_epoch, rungs, on_rung, scores)
    callbacks = [epochs_cb, *callbacks]  # first: an epoch's training ends before other callbacks run
    if on_epoch is not None:
        callbacks.append(keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: on_epoch(e + 1, scores[-1][1])))
    # Drop the last trial's graph; Optuna's gc_after_trial already collected, so skip a second gc.collect.
    keras.backend.clear_session(free_memory=False)
    set_seed(seed)
    config = candidate.training
    clock.lap()
    model = build_model(candidate.model, fused=True)  # TensorFlow: one kernel per batch norm, to trace less
    clock.marks["build"] = clock.lap()
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
    clock.marks["compile"] = clock.lap()
    start = time.perf_counter()
    history = model.fit(
        train,
        epochs=config.epochs,
        steps_per_epoch=steps,
        callbacks=[keras.callbacks.TerminateOnNaN(), interruption_callback(), *callbacks],
        shuffle=False,  # both inputs shuffle themselves
        verbose=0,
    )
    seconds = time.perf_counter() - start
    losses = history.history.get("loss", [])
    if not losses or not all(np.isfinite(losses)):
        raise TrainingFailed(f"training loss became {losses[-1] if losses else 'undefined'} at epoch {len(losses)}")
    stopped = len(losses) < config.epochs and bool(scores)
    if not (scores and (stopped or every_epoch)):
        scores.append(evaluate(model, data.x_val, data.y_val))
        clock.evaluate.append(clock.lap())
    val_loss, val_accuracy = scores[-1]
    curve = tuple(a for _, a in scores) if every_epoch else ()
    return TrainResult(
        val_accuracy, val_loss, len(losses), seconds, device, keras.config.backend(), stopped, curve, clock.costs()
    )
