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
