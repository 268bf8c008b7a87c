"""Full training of a chosen configuration: longer, scheduled, augmented, checkpointed and resumable.

This is the only place the test split is used: after training, to report the model a person picked.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from jumpsearch.config import Candidate, echo
from jumpsearch.data import Dataset
from jumpsearch.device import set_seed, setup_device
from jumpsearch.errors import ConfigError
from jumpsearch.recipe import Recipe, learning_rate, random_erasing, recompute_batch_norm, smoothed_crossentropy
from jumpsearch.training import TrainingFailed, TrainResult, evaluate, interruption_callback

AUGMENTED = ("cifar10", "cifar100", "fashion_mnist")  # natural images: crops and flips keep their class
RECORD = "candidate.json"  # the configuration a folder's checkpoints and model belong to


@dataclass(frozen=True)
class FinalResult:
    val_accuracy: float
    test_accuracy: float | None
    epochs: int
    train_seconds: float
    device: str
    model_path: str


def check_fits(candidate: Candidate, data: Dataset) -> None:
    """The model must take the data set's images and predict its classes (an exported file edited by
    hand, or trained on another data set, says otherwise)."""
    model = candidate.model
    wrong = [
        f"{what} {want}, but {data.name} has {have}"
        for what, want, have in (
            ("input_shape", model.input_shape, data.input_shape),
            ("num_classes", model.num_classes, data.num_classes),
        )
        if want != have
    ]
    if wrong:
        raise ConfigError(f"the model's {'; its '.join(wrong)}")


def _differences(recorded: Any, candidate: Candidate) -> list[str]:
    """The keys (``model.base_filters``) whose values differ between a recorded configuration and this one."""
    if not isinstance(recorded, dict):
        return [f"an unreadable record {echo(recorded)}"]
    mine = candidate.to_dict()
    return [
        f"{section}.{key}"
        for section in mine
        for key in sorted(set(mine[section]) | set(recorded.get(section) or {}))
        if (recorded.get(section) or {}).get(key) != mine[section].get(key)
    ] or ["its keys"]


def _claim(out: Path, candidate: Candidate) -> None:
    """Train into ``out`` only if it holds nothing of another configuration (Keras would fail to load the
    checkpoint of another network, or the run would replace another model); record this one there."""
    record, metrics = out / RECORD, out / "metrics.json"
    recorded: Any = None
    for path, key in ((record, None), (metrics, "candidate")):
        if recorded is None and path.is_file():
            try:
                recorded = json.loads(path.read_text())
                recorded = recorded.get(key) if key and isinstance(recorded, dict) else recorded
            except (OSError, ValueError):
                recorded = path.name
    if recorded is None and (out / "backup").exists():
        recorded = "a checkpoint that records no configuration"
    if recorded is not None and recorded != candidate.to_dict():
        differ = _differences(recorded, candidate)
        raise ConfigError(
            f"{out}: holds the training of another configuration ({', '.join(differ[:3])} differ); "
            "train into another folder (out_dir=DIR), or empty this one"
        )
    record.write_text(candidate.to_json())


def train_final(
    candidate: Candidate,
    data: Dataset,
    out_dir: str | Path,
    *,
    epochs: int,
    recipe: Recipe | None = None,
    augment: bool | None = None,
    seed: int = 0,
    verbose: int = 2,
    callbacks: Sequence[Any] = (),
) -> FinalResult:
    """Train for ``epochs`` with ``recipe`` (default: ``Recipe()``: a cosine-decayed rate, augmentation on
    for natural images — CIFAR, Fashion-MNIST — and off for digits and arrays of unknown content, where a
    flip changes a digit); ``augment`` overrides the recipe's.

    ``out_dir`` receives ``backup/`` (Keras's BackupAndRestore: run again after an interruption and
    training resumes from the last finished epoch), ``best.keras`` (best validation accuracy),
    ``model.keras`` (the final model), ``metrics.json`` and ``candidate.json`` (the configuration all
    of them belong to: a folder that holds another's is refused, ConfigError). ``epochs`` in the result
    counts the epochs this call ran (fewer than asked when it resumed); a resumed run goes on with the
    recipe and ``epochs`` of the call that resumes it (the rate schedule is recomputed from them).
    """
    if epochs < 1:
        raise ConfigError(f"epochs={epochs}: must be at least 1")
    recipe = recipe or Recipe()
    recipe.check_epochs(epochs)
    check_fits(candidate, data)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _claim(out, candidate)
    setup_device()  # before Keras is imported: the backend's start-up messages stay quiet
    import keras

    start = time.perf_counter()
    model, losses, augment, device = fit_with_recipe(
        candidate, data, epochs=epochs, recipe=recipe, augment=augment, seed=seed, verbose=verbose,
        callbacks=[
            keras.callbacks.BackupAndRestore(str(out / "backup")),
            keras.callbacks.ModelCheckpoint(str(out / "best.keras"), monitor="val_accuracy", save_best_only=True),
            *callbacks,
        ],
    )  # fmt: skip
    seconds = time.perf_counter() - start
    model_path = out / "model.keras"
    model.save(model_path)
    _, val_accuracy = evaluate(model, data.x_val, data.y_val)
    test_accuracy = evaluate(model, data.x_test, data.y_test)[1] if data.x_test is not None else None
    result = FinalResult(val_accuracy, test_accuracy, len(losses), seconds, device, str(model_path))
    record = {**asdict(result), "candidate": candidate.to_dict(), "recipe": recipe.to_dict(), "augment": augment}
    (out / "metrics.json").write_text(json.dumps(record, indent=2))
    return result


def fit_with_recipe(
    candidate: Candidate,
    data: Dataset,
    *,
    epochs: int,
    recipe: Recipe,
    augment: bool | None = None,
    seed: int = 0,
    verbose: int = 0,
    callbacks: Sequence[Any] = (),
) -> tuple[Any, list[float], bool, str]:
    """Train a new model of ``candidate`` with ``recipe`` on the training split, watching the validation
    split; never reads the test split. Returns the model (its averaged weights when the recipe averages),
    each epoch's training loss (Keras stops at a NaN), whether images were augmented, and the device."""
    device = setup_device()
    import keras

    from jumpsearch.batches import Batches
    from jumpsearch.models import build_model
    from jumpsearch.optimizers import make_optimizer

    keras.backend.clear_session(free_memory=False)
    set_seed(seed)
    training = candidate.training
    if recipe.weight_decay is not None:
        training = dataclasses.replace(training, weight_decay=recipe.weight_decay)
    steps = math.ceil(len(data.x_train) / training.batch_size)
    model = build_model(candidate.model)
    model.compile(
        optimizer=make_optimizer(training, learning_rate(recipe, training.learning_rate, epochs, steps),
                                 ema_momentum=recipe.ema_momentum),
        loss=smoothed_crossentropy(data.num_classes, recipe.label_smoothing) if recipe.label_smoothing
        else "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )  # fmt: skip
    if augment is None:
        augment = data.name in AUGMENTED if recipe.augment == "auto" else recipe.augment == "on"
    erase = random_erasing(recipe.random_erasing, seed)
    train = Batches(data.x_train, data.y_train, training.batch_size, steps, seed, augment=augment, transform=erase)
    history = model.fit(
        train,
        epochs=epochs,
        validation_data=(data.x_val, data.y_val),
        callbacks=[*callbacks, keras.callbacks.TerminateOnNaN(), interruption_callback()],
        shuffle=False,  # the batches shuffle themselves
        verbose=verbose,
    )
    if recipe.ema_momentum is not None:  # fit ended with the averaged weights: statistics to match them
        recompute_batch_norm(model, train)
    return model, list(history.history.get("loss", [])), augment, device


def validate_with_recipe(candidate: Candidate, data: Dataset, seed: int = 0, *, recipe: Recipe) -> TrainResult:
    """Train for the candidate's epochs with ``recipe`` and score on the validation split only (what
    ``confirm`` measures a front with when given a recipe). ``val_loss``/``val_accuracy`` are the final
    model's; ``seconds`` the training's. TrainingFailed if the loss became NaN or infinite."""
    setup_device()  # before Keras is imported: the backend's start-up messages stay quiet
    import keras

    recipe.check_epochs(candidate.training.epochs)
    start = time.perf_counter()
    model, losses, _, device = fit_with_recipe(candidate, data, epochs=candidate.training.epochs, recipe=recipe,
                                               seed=seed)  # fmt: skip
    seconds = time.perf_counter() - start
    if not losses or not math.isfinite(losses[-1]):
        raise TrainingFailed(f"training loss became {losses[-1] if losses else 'undefined'} at epoch {len(losses)}")
    val_loss, val_accuracy = evaluate(model, data.x_val, data.y_val)
    return TrainResult(val_accuracy, val_loss, len(losses), seconds, device, keras.config.backend(), False, (), {})
