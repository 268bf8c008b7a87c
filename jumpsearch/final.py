"""Full training of a chosen configuration: longer, scheduled, augmented, checkpointed and resumable.

This is the only place the test split is used: after training, to report the model a person picked.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from jumpsearch.config import Candidate
from jumpsearch.data import Dataset
from jumpsearch.device import set_seed, setup_device
from jumpsearch.errors import ConfigError
from jumpsearch.training import compile_model, evaluate

AUGMENTED = ("cifar10", "cifar100", "fashion_mnist")  # natural images: crops and flips keep their class


@dataclass(frozen=True)
class FinalResult:
    val_accuracy: float
    test_accuracy: float | None
    epochs: int
    train_seconds: float
    device: str
    model_path: str


def train_final(
    candidate: Candidate,
    data: Dataset,
    out_dir: str | Path,
    *,
    epochs: int,
    augment: bool | None = None,
    seed: int = 0,
    verbose: int = 2,
    callbacks: Sequence[Any] = (),
) -> FinalResult:
    """Train for ``epochs`` with a cosine-decayed rate; augmentation defaults to on for natural images
    (CIFAR, Fashion-MNIST), off for digits and arrays of unknown content (a flip changes a digit).

    ``out_dir`` receives ``backup/`` (Keras's BackupAndRestore: run again after an interruption and
    training resumes from the last finished epoch), ``best.keras`` (best validation accuracy),
    ``model.keras`` (the final model) and ``metrics.json``. ``epochs`` in the result counts the epochs
    this call ran (fewer than asked when it resumed).
    """
    if epochs < 1:
        raise ConfigError(f"epochs: must be at least 1, got {epochs}")
    device = setup_device()
    import keras

    from jumpsearch.batches import Batches

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    set_seed(seed)
    batch = candidate.training.batch_size
    steps = math.ceil(len(data.x_train) / batch)
    schedule = keras.optimizers.schedules.CosineDecay(candidate.training.learning_rate, decay_steps=epochs * steps)
    model = compile_model(candidate, learning_rate=schedule)
    augment = data.name in AUGMENTED if augment is None else augment
    train = Batches(data.x_train, data.y_train, batch, steps, seed, augment=augment)
    callbacks = [
        keras.callbacks.BackupAndRestore(str(out / "backup")),
        keras.callbacks.ModelCheckpoint(str(out / "best.keras"), monitor="val_accuracy", save_best_only=True),
        keras.callbacks.TerminateOnNaN(),
        *callbacks,
    ]
    start = time.perf_counter()
    history = model.fit(
        train,
        epochs=epochs,
        validation_data=(data.x_val, data.y_val),
        callbacks=callbacks,
        shuffle=False,  # the batches shuffle themselves
        verbose=verbose,
    )
    seconds = time.perf_counter() - start
    model_path = out / "model.keras"
    model.save(model_path)
    _, val_accuracy = evaluate(model, data.x_val, data.y_val)
    test_accuracy = evaluate(model, data.x_test, data.y_test)[1] if data.x_test is not None else None
    result = FinalResult(
        val_accuracy, test_accuracy, len(history.history.get("loss", [])), seconds, device, str(model_path)
    )
    (out / "metrics.json").write_text(json.dumps({**asdict(result), "candidate": candidate.to_dict()}, indent=2))
    return result
