"""The switches of ``train``'s recipe: each changes the training as its docstring says."""

import dataclasses
import math
import subprocess
import sys

import keras
import numpy as np
import pytest
import yaml

from jumpsearch import Candidate, JumpNetConfig, TrainingConfig, train_final
from jumpsearch.config import DataConfig
from jumpsearch.data import load_dataset
from jumpsearch.errors import ConfigError, JumpsearchError
from jumpsearch.recipe import Recipe, learning_rate, random_erasing, smoothed_crossentropy


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DataConfig())


def tiny(**training):
    model = JumpNetConfig(input_shape=(8, 8, 1), stem_filters=(8, 8), blocks_per_group=(1,), base_filters=8)
    return Candidate(model, TrainingConfig(**{"batch_size": 256, "learning_rate": 0.01, **training}))


def test_a_recipe_round_trips_through_yaml_and_refuses_what_it_cannot_do():
    recipe = Recipe(random_erasing=0.5, label_smoothing=0.1, schedule="constant", warmup_epochs=2, ema_momentum=0.99)
    assert Recipe.from_dict(yaml.safe_load(recipe.to_yaml())) == recipe
    assert Recipe.from_dict(None) == Recipe()
    for bad, says in [
        ({"label_smoothing": 1.0}, "recipe.label_smoothing: must lie in"),
        ({"random_erasing": 1.5}, "recipe.random_erasing: must be a probability"),
        ({"schedule": "step"}, "recipe.schedule: unknown schedule"),
        ({"ema_momentum": 1}, "recipe.ema_momentum: must lie in"),
        ({"mixup": 0.2}, "recipe.mixup: unknown key"),
    ]:
        with pytest.raises(ConfigError, match=says):
            Recipe.from_dict(bad)
    with pytest.raises(ConfigError, match="warmup_epochs: 3 leaves nothing of epochs=3"):
        Recipe(warmup_epochs=3).check_epochs(3)


def test_label_smoothing_gives_the_loss_of_a_known_batch_as_computed_by_hand():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.25, 0.25, 0.5]], dtype="float32")
    labels = np.array([0, 2])
    loss = keras.ops.convert_to_numpy(smoothed_crossentropy(3, 0.3)(labels, probabilities))
    # targets: 1 - 0.3 + 0.1 = 0.8 on the label, 0.1 on each other class
    by_hand = [
        -(0.8 * math.log(0.7) + 0.1 * math.log(0.2) + 0.1 * math.log(0.1)),
        -(0.1 * math.log(0.25) + 0.1 * math.log(0.25) + 0.8 * math.log(0.5)),
    ]
    assert loss == pytest.approx(by_hand, rel=1e-5)
    plain = keras.ops.convert_to_numpy(smoothed_crossentropy(3, 0.0)(labels, probabilities))
    assert plain == pytest.approx([-math.log(0.7), -math.log(0.5)], rel=1e-5)


def test_the_schedules_rates_step_by_step():
    cosine = learning_rate(Recipe(), 0.1, epochs=4, steps=10)
    assert [float(cosine(s)) for s in (0, 20, 40)] == pytest.approx([0.1, 0.05, 0.0], abs=1e-7)
    warm = learning_rate(Recipe(warmup_epochs=1), 0.1, epochs=3, steps=10)  # 10 steps up, 20 down
    assert [float(warm(s)) for s in (0, 5, 10, 20, 30)] == pytest.approx([0.0, 0.05, 0.1, 0.05, 0.0], abs=1e-7)
    assert learning_rate(Recipe(schedule="constant"), 0.1, epochs=3, steps=10) == 0.1
    flat = learning_rate(Recipe(schedule="constant", warmup_epochs=1), 0.1, epochs=3, steps=10)
    assert [float(flat(s)) for s in (5, 10, 25, 30)] == pytest.approx([0.05, 0.1, 0.1, 0.1], abs=1e-7)


def test_random_erasing_erases_a_rectangle_of_each_image_with_its_probability():
    assert random_erasing(0.0) is None
    grey = np.full((16, 8, 8, 1), 0.5, dtype="float32")  # erased pixels get noise, clipped to [0, 1]
    erased = random_erasing(1.0, seed=1)(grey)
    assert erased.shape == grey.shape and erased.min() >= 0 and erased.max() <= 1
    changed = (erased != 0.5).reshape(16, -1)
    assert changed.any(axis=1).all() and not changed.all(axis=1).any()  # every image, never all of it
    rows, columns = np.nonzero(erased[0, ..., 0] != 0.5)
    assert changed[0].sum() == (np.ptp(rows) + 1) * (np.ptp(columns) + 1)  # one rectangle
    half = random_erasing(0.5, seed=2)(np.full((400, 8, 8, 1), 0.5, dtype="float32"))
    assert 0.35 < (half != 0.5).reshape(400, -1).any(axis=1).mean() < 0.65  # about half the images


class Watch(keras.callbacks.Callback):
    """What ``fit`` trained with: the optimizer, the loss, the first batch."""

    def on_train_begin(self, logs=None):
        self.optimizer, self.loss = self.model.optimizer, self.model.loss


def test_a_tiny_run_trains_with_each_switch_as_stated(digits, tmp_path):
    recipe = Recipe(label_smoothing=0.2, weight_decay=0.05, ema_momentum=0.5, warmup_epochs=1, random_erasing=0.5)
    watch = Watch()
    result = train_final(tiny(), digits, tmp_path / "on", epochs=2, recipe=recipe, verbose=0, callbacks=[watch])
    optimizer = watch.optimizer
    assert optimizer.weight_decay == pytest.approx(0.05) and optimizer.use_ema and optimizer.ema_momentum == 0.5
    assert float(optimizer.learning_rate) == pytest.approx(0.0, abs=1e-9)  # warmed up from 0, decayed to 0
    assert watch.loss is not None and watch.loss != "sparse_categorical_crossentropy"
    # the model ends with the weights' moving average
    for weight, average in zip(watch.model.trainable_weights, optimizer._model_variables_moving_average,
                               strict=True):  # fmt: skip
        assert np.allclose(keras.ops.convert_to_numpy(weight), keras.ops.convert_to_numpy(average))
    assert result.epochs == 2
    plain = Watch()
    train_final(tiny(), digits, tmp_path / "off", epochs=2, verbose=0, callbacks=[plain])
    assert not plain.optimizer.use_ema and plain.loss == "sparse_categorical_crossentropy"


def test_an_export_carries_the_recipe_and_train_trains_with_the_file_s(tmp_path, capsys):
    from jumpsearch import Best, export_configs, exported_recipe
    from jumpsearch.cli import main

    path = export_configs([Best(tiny(), 0.5, 1, 1, 0)], tmp_path / "best.yaml", {"dataset": "digits"})
    document = yaml.safe_load(path.read_text())
    assert Recipe.from_dict(document["recipe"]) == Recipe() == exported_recipe(path)  # every switch, to edit
    document["recipe"].update({"label_smoothing": 0.1, "schedule": "constant", "augment": "on"})
    path.write_text(yaml.safe_dump(document))
    assert exported_recipe(path) == Recipe(label_smoothing=0.1, schedule="constant", augment="on")
    assert main(["train", str(path), "--epochs", "1", "--out", str(tmp_path / "run")]) == 0
    metrics = yaml.safe_load((tmp_path / "run" / "metrics.json").read_text())
    assert Recipe.from_dict(metrics["recipe"]) == exported_recipe(path) and metrics["augment"] is True
    document["recipe"]["label_smoothing"] = 2
    path.write_text(yaml.safe_dump(document))
    assert main(["train", str(path), "--epochs", "1", "--out", str(tmp_path / "run2")]) == 2
    assert "recipe.label_smoothing: must lie in [0, 1), got 2" in capsys.readouterr().err


def test_averaged_weights_get_batch_norm_statistics_of_their_own():
    """The moving statistics become the mean, over the batches, of each batch's mean and variance."""
    from jumpsearch.recipe import recompute_batch_norm

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.BatchNormalization(momentum=0.9)(keras.layers.Dense(2)(inputs)))
    rng = np.random.default_rng(0)
    batches = [(rng.normal(k, 1 + k, size=(16, 3)).astype("float32"), None) for k in range(4)]
    norm = model.layers[-1]
    assert recompute_batch_norm(model, batches, count=3) == 3  # the first three batches only
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in model.layers[1].weights)
    outputs = [x @ kernel + bias for x, _ in batches[:3]]
    assert keras.ops.convert_to_numpy(norm.moving_mean) == pytest.approx(
        np.mean([o.mean(axis=0) for o in outputs], axis=0), rel=1e-4)  # fmt: skip
    assert keras.ops.convert_to_numpy(norm.moving_variance) == pytest.approx(
        np.mean([o.var(axis=0) for o in outputs], axis=0), rel=1e-4)  # fmt: skip
    assert norm.momentum == 0.9  # as it was
    assert [keras.ops.convert_to_numpy(w) for w in model.layers[1].weights][0] == pytest.approx(kernel)


class Untouchable:
    """A split no one may read."""

    def __getattr__(self, name):
        raise AssertionError(f"the test split was read ({name})")

    def __len__(self):
        raise AssertionError("the test split was read (len)")


def test_confirm_s_recipe_runs_train_as_train_does_on_the_validation_split_only(digits, tmp_path):
    from jumpsearch.final import validate_with_recipe

    recipe = Recipe(label_smoothing=0.2, ema_momentum=0.5, schedule="constant")
    sealed = dataclasses.replace(digits, x_test=Untouchable(), y_test=Untouchable())
    confirmed = validate_with_recipe(tiny(epochs=2), sealed, seed=3, recipe=recipe)
    trained = train_final(tiny(epochs=2), digits, tmp_path / "t", epochs=2, recipe=recipe, seed=3, verbose=0)
    assert confirmed.epochs == 2 and confirmed.val_accuracy == pytest.approx(trained.val_accuracy, abs=1e-9)
    plain = validate_with_recipe(tiny(epochs=2), sealed, seed=3, recipe=Recipe(schedule="constant"))
    assert plain.val_loss != pytest.approx(confirmed.val_loss, rel=1e-3)  # the recipe changed the training
    with pytest.raises(ConfigError, match="recipe.warmup_epochs: 2 leaves nothing of epochs=2"):
        validate_with_recipe(tiny(epochs=2), sealed, recipe=Recipe(warmup_epochs=2))


def test_a_recipe_file_is_an_export_s_section_or_the_switches_alone(tmp_path):
    from jumpsearch import read_recipe

    (tmp_path / "export.yaml").write_text("candidates: []\nrecipe: {label_smoothing: 0.1, augment: 'on'}\n")
    (tmp_path / "bare.yaml").write_text("ema_momentum: 0.999\n")
    assert read_recipe(tmp_path / "export.yaml") == Recipe(label_smoothing=0.1, augment="on")
    assert read_recipe(tmp_path / "bare.yaml") == Recipe(ema_momentum=0.999)
    (tmp_path / "plain.yaml").write_text("candidates: []\n")  # an export without a recipe trains with Recipe()
    assert read_recipe(tmp_path / "plain.yaml") == Recipe()
    (tmp_path / "bad.yaml").write_text("recipe: {mixup: 0.2}\n")
    with pytest.raises(JumpsearchError, match=r"bad.yaml: recipe.mixup: unknown key"):
        read_recipe(tmp_path / "bad.yaml")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(JumpsearchError, match=r"empty.yaml: the file is empty"):
        read_recipe(tmp_path / "empty.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(JumpsearchError, match=r"list.yaml: recipe: expected a mapping of switches, got list"):
        read_recipe(tmp_path / "list.yaml")


def test_train_and_confirm_s_recipe_runs_keep_the_backend_s_start_up_lines_off_the_terminal(tmp_path):
    code = (
        "from jumpsearch import Candidate, DataConfig, JumpNetConfig, Recipe, TrainingConfig\n"
        "from jumpsearch import load_dataset, train_final\n"
        "from jumpsearch.final import validate_with_recipe\n"
        "model = JumpNetConfig(input_shape=(8, 8, 1), stem_filters=(8, 8), blocks_per_group=(1,), base_filters=8)\n"
        "candidate = Candidate(model, TrainingConfig(batch_size=256, epochs=1))\n"
        "data = load_dataset(DataConfig())\n"
        "print('validated', validate_with_recipe(candidate, data, recipe=Recipe()).epochs)\n"
    )
    trained = code.replace("validate_with_recipe(candidate, data, recipe=Recipe())",
                           f"train_final(candidate, data, {str(tmp_path / 'out')!r}, epochs=1, verbose=0)")  # fmt: skip
    for script in (code, trained):
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        assert "validated 1" in result.stdout
        assert result.stderr == ""  # TensorFlow's start-up lines (oneDNN, CUDA stubs, cuInit) stay off the terminal
