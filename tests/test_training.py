import dataclasses
import re

import keras
import pytest

from jumpsearch import Candidate, JumpNetConfig, TrainingConfig, build_model
from jumpsearch.config import DataConfig
from jumpsearch.data import load_dataset
from jumpsearch.training import TrainingFailed, evaluate, train_and_evaluate


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DataConfig())


def tiny(**training):
    model = JumpNetConfig(input_shape=(8, 8, 1), stem_filters=(8, 8), blocks_per_group=(1,), base_filters=8)
    return Candidate(model, TrainingConfig(**{"batch_size": 32, "epochs": 2, "steps_per_epoch": 3, **training}))


def test_eager_evaluation_matches_keras_evaluate(digits):
    model = build_model(tiny().model)
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    keras_loss, keras_accuracy = model.evaluate(digits.x_val, digits.y_val, verbose=0)
    loss, accuracy = evaluate(model, digits.x_val, digits.y_val, batch_size=100)  # uneven last chunk
    assert accuracy == pytest.approx(keras_accuracy, abs=1e-6)
    assert loss == pytest.approx(keras_loss, rel=1e-4)


def test_training_is_reproducible_for_a_seed(digits):
    first = train_and_evaluate(tiny(), digits, seed=3)
    again = train_and_evaluate(tiny(), digits, seed=3)
    assert first.epochs == 2 and first.device.split(":")[0] in ("CPU", "GPU")
    assert (first.val_accuracy, first.val_loss) == (again.val_accuracy, again.val_loss)


def test_nan_loss_fails_the_trial_with_a_reason(digits):
    with pytest.raises(TrainingFailed, match="training loss became nan"):
        train_and_evaluate(tiny(learning_rate=1e30, optimizer="sgd"), digits, seed=0)


def test_callbacks_reach_fit(digits):
    seen = []

    class Count(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(epoch)

    train_and_evaluate(tiny(epochs=3), digits, seed=0, callbacks=[Count()])
    assert seen == [0, 1, 2]


@pytest.mark.parametrize(("optimizer", "weight_decay"), [("adam", 0.0), ("adam", 1e-3), ("adamw", 1e-2), ("sgd", 1e-4)])
def test_fused_updates_follow_the_keras_optimizer(digits, optimizer, weight_decay):
    import numpy as np

    from jumpsearch.optimizers import make_optimizer

    config = TrainingConfig(optimizer=optimizer, weight_decay=weight_decay, learning_rate=0.01)
    weights = {}
    for fused in (False, True):
        keras.utils.set_random_seed(0)
        model = build_model(tiny().model)
        start = [w.numpy() for w in model.trainable_weights]
        model.compile(make_optimizer(config, fused=fused), "sparse_categorical_crossentropy")
        for step in range(5):
            model.train_on_batch(
                digits.x_train[32 * step : 32 * (step + 1)], digits.y_train[32 * step : 32 * (step + 1)]
            )
        weights[fused] = [w.numpy() for w in model.trainable_weights]
    stock = type(make_optimizer(config))
    assert isinstance(model.optimizer, stock) and type(model.optimizer) is not stock
    moved = max(float(np.max(np.abs(after - before))) for after, before in zip(weights[True], start, strict=True))
    assert moved > 1e-3
    for fused_weight, stock_weight in zip(weights[True], weights[False], strict=True):
        np.testing.assert_allclose(fused_weight, stock_weight, rtol=1e-4, atol=1e-6)


def test_fused_batch_norm_follows_the_keras_layer(digits):
    """The same weights, outputs and moving statistics as Keras's layer, to float rounding, after five
    training steps (the moving variance is Keras's biased one, not the kernel's unbiased one)."""
    import numpy as np

    from jumpsearch.fused_tf import FusedBatchNormalization

    weights, outputs, kinds = {}, {}, {}
    for fused in (False, True):
        keras.utils.set_random_seed(0)
        model = build_model(tiny().model, fused=fused)
        kinds[fused] = {type(layer) for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)}
        model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
        for step in range(5):
            model.train_on_batch(
                digits.x_train[32 * step : 32 * (step + 1)], digits.y_train[32 * step : 32 * (step + 1)]
            )
        weights[fused] = [w.numpy() for w in model.weights]
        outputs[fused] = [model(digits.x_val[:64], training=training).numpy() for training in (False, True)]
    assert kinds == {False: {keras.layers.BatchNormalization}, True: {FusedBatchNormalization}}
    moving = [w for w, v in zip(weights[True], model.weights, strict=True) if "moving_variance" in v.path]
    assert moving and not any(np.allclose(w, 1.0) for w in moving)  # the statistics did move
    for fused_weight, stock_weight in zip(weights[True], weights[False], strict=True):
        np.testing.assert_allclose(fused_weight, stock_weight, rtol=1e-4, atol=1e-6)
    for fused_output, stock_output in zip(outputs[True], outputs[False], strict=True):
        np.testing.assert_allclose(fused_output, stock_output, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("batch_known", [True, False])
@pytest.mark.parametrize("shape", [(4, 2, 2, 3), (1, 1, 1, 3)])
def test_fused_batch_norm_layer_matches_keras_on_a_small_batch(jit_compile, batch_known, shape):
    """One layer, 16 values per channel (the moving variance's n / (n - 1) is 7% here, not 0.05% as in a
    model) or one (a 1x1 map of a batch of one: no variance at all): output, moving statistics and
    gradients, eagerly and under XLA, traced with the batch size known (n a number) or not (n computed
    in the graph)."""
    import numpy as np
    import tensorflow as tf

    from jumpsearch.fused_tf import FusedBatchNormalization

    x = tf.constant(np.random.default_rng(0).normal(2.0, 3.0, shape), tf.float32)
    size = int(np.prod(shape))
    weights = tf.reshape(tf.range(size, dtype=tf.float32) / size, shape)  # a loss the normalization does not cancel
    spec = tf.TensorSpec((shape[0] if batch_known else None, *shape[1:]))
    got = {}
    for kind in (keras.layers.BatchNormalization, FusedBatchNormalization):
        layer = kind(momentum=0.9)
        layer.build(x.shape)
        layer.gamma.assign([0.5, 1.0, 2.0])
        layer.beta.assign([0.1, -0.2, 0.3])

        @tf.function(jit_compile=jit_compile, input_signature=[spec])
        def step(x, layer=layer):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x, training=True)
                loss = tf.reduce_sum(y * weights) + tf.reduce_sum(y**3)
            return y, tape.gradient(loss, [x, layer.gamma, layer.beta])

        y, grads = step(x)
        inference = layer(x, training=False)
        got[kind] = [y, *grads, layer.moving_mean, layer.moving_variance, inference]
    for fused, stock in zip(got[FusedBatchNormalization], got[keras.layers.BatchNormalization], strict=True):
        np.testing.assert_allclose(np.asarray(fused), np.asarray(stock), rtol=1e-5, atol=1e-5)


def test_fused_batch_norm_runs_as_on_a_gpu(digits):
    """Under XLA and mixed precision (float16 convolutions, batch norms computed in float32), as a GPU
    trial runs; one SGD step (Adam's first step divides by the gradient's size, which turns last-place
    rounding of a near-zero gradient into a whole step)."""
    import numpy as np

    weights = {}
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        for fused in (False, True):
            keras.utils.set_random_seed(0)
            model = build_model(tiny().model, fused=fused)
            model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy", jit_compile=True)
            model.train_on_batch(digits.x_train[:32], digits.y_train[:32])
            weights[fused] = [w.numpy() for w in model.weights]
    finally:
        keras.mixed_precision.set_global_policy("float32")
    for fused_weight, stock_weight in zip(weights[True], weights[False], strict=True):
        np.testing.assert_allclose(fused_weight, stock_weight, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_fused_updates_run_as_on_a_gpu(digits, optimizer):
    """A GPU trial compiles with XLA and mixed precision (a loss-scale optimizer around the fused one);
    the same path runs on a CPU. One step: in float16, later steps amplify last-place rounding."""
    import numpy as np

    from jumpsearch.optimizers import make_optimizer

    config = TrainingConfig(optimizer=optimizer, weight_decay=1e-4, learning_rate=0.01)
    weights = {}
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        for fused in (False, True):
            keras.utils.set_random_seed(0)
            model = build_model(tiny().model)
            model.compile(make_optimizer(config, fused=fused), "sparse_categorical_crossentropy", jit_compile=True)
            model.train_on_batch(digits.x_train[:32], digits.y_train[:32])
            weights[fused] = [w.numpy() for w in model.trainable_weights]
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert type(model.optimizer.inner_optimizer).__name__.startswith("Fused")
    for fused_weight, stock_weight in zip(weights[True], weights[False], strict=True):
        np.testing.assert_allclose(fused_weight, stock_weight, rtol=1e-4, atol=1e-6)


def test_a_folder_holding_another_configuration_is_refused_before_anything_changes(digits, tmp_path, capsys):
    from jumpsearch import train_final
    from jumpsearch.cli import main
    from jumpsearch.errors import ConfigError
    from jumpsearch.results import Best, export_configs

    out = tmp_path / "run"
    train_final(tiny(), digits, out, epochs=1, verbose=0)
    saved = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    other = Candidate(dataclasses.replace(tiny().model, base_filters=16), tiny().training)
    with pytest.raises(ConfigError, match=r"run: holds the training of another configuration \(model.base_filters"):
        train_final(other, digits, out, epochs=1, verbose=0)
    path = export_configs([Best(other, 0.5, 1, 1, 0)], tmp_path / "other.yaml", {"dataset": "digits"})
    capsys.readouterr()
    assert main(["train", str(path), "--epochs", "1", "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "train into another folder (--out DIR)" in error
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == saved  # nothing stored was touched


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"num_classes": 3}, r"candidate 0: the model's num_classes 3, but digits has 10"),
        ({"input_shape": [16, 16, 1], "num_classes": 4},
         r"the model's input_shape \(16, 16, 1\), but digits has \(8, 8, 1\); its num_classes 4, but digits has 10"),
        ({"blocks_per_group": [1, 0]}, r"model.blocks_per_group: .*got \[1, 0\]"),
        ({"jump_spacing": [1]}, r"model.jump_spacing: .*got \[1\]"),
    ],
)  # fmt: skip
def test_an_exported_file_edited_by_hand_is_checked_against_the_data_set(tmp_path, capsys, model, message):
    import yaml

    from jumpsearch.cli import main

    document = {"data": {"dataset": "digits"}, "candidates": [{**tiny().to_dict()}]}
    document["candidates"][0]["model"].update(model)
    path = tmp_path / "edited.yaml"
    path.write_text(yaml.safe_dump(document))
    assert main(["train", str(path), "--epochs", "1", "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "edited.yaml: " in error
    assert re.search(message, error), error
    assert not (tmp_path / "out").exists()  # refused before the folder is made


def test_a_backend_keras_cannot_import_is_one_line(tmp_path, capsys, monkeypatch):
    from jumpsearch.cli import main

    monkeypatch.setenv("KERAS_BACKEND", "thenao")
    assert main(["train", str(tmp_path / "best.yaml")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "KERAS_BACKEND 'thenao': not a backend" in error
    assert error.endswith("(known: tensorflow, jax, torch)\n")
