"""Keras backends beside TensorFlow: the whole product under JAX, on a machine where TensorFlow is absent."""

import json
import os
import subprocess
import sys

import numpy as np
import optuna
import pytest

from jumpsearch.batches import Batches

SPACE = """\
name: jax
data: {dataset: digits}
model: {groups: {int: [1, 2]}, blocks_per_group: 1, stem_filters: [8, 8], base_filters: {choice: [8, 16]}}
training: {epochs: 1, steps_per_epoch: 2, batch_size: 32, learning_rate: {float: [1e-3, 1e-2]}}
sampler: random
trials: 2
"""


def test_batches_cover_every_image_each_epoch_in_a_new_order():
    x = np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1)
    batches = Batches(x, np.arange(10), batch_size=5, seed=0)
    assert len(batches) == 2
    first = np.concatenate([batches[i][0].ravel() for i in range(2)])
    batches.on_epoch_end()
    second = np.concatenate([batches[i][0].ravel() for i in range(2)])
    assert sorted(first) == sorted(second) == list(range(10)) and list(first) != list(second)
    images, labels = batches[0]
    assert np.array_equal(images.ravel(), labels)  # images keep their labels


def test_augmented_batches_crop_and_flip_within_the_padded_image():
    x = np.random.default_rng(0).random((64, 8, 8, 1)).astype(np.float32)
    images, _ = Batches(x, np.zeros(64, int), batch_size=64, seed=1, augment=True)[0]
    assert images.shape == (64, 8, 8, 1)
    assert not np.array_equal(images, x[Batches(x, np.zeros(64, int), 64, seed=1).order])


@pytest.fixture
def without_tensorflow(tmp_path):
    """An environment where `import tensorflow` fails, as on a machine that has only JAX."""
    pytest.importorskip("jax")
    blocker = tmp_path / "blocked" / "tensorflow"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text('raise ImportError("TensorFlow is not installed here")\n')
    return {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(blocker.parent)}


def test_search_train_and_reload_under_jax_without_tensorflow(tmp_path, without_tensorflow):
    def jumpsearch(*args):
        result = subprocess.run(
            [sys.executable, "-m", "jumpsearch", *args], cwd=tmp_path, env=without_tensorflow,
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    (tmp_path / "space.yaml").write_text(SPACE)
    jumpsearch("run", "--space", "space.yaml", "-q")
    study = optuna.load_study(study_name="jax", storage=f"sqlite:///{tmp_path}/studies/jax.db")
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(complete) == 2 and {t.user_attrs["backend"] for t in complete} == {"jax"}
    jumpsearch("export", "--space", "space.yaml", "-k", "1", "--out", "best.yaml")
    out = jumpsearch("train", "best.yaml", "--epochs", "1", "--out", "model").stdout
    assert "test accuracy 0." in out
    reload = (
        "import json, keras, numpy as np, sys\n"
        "model = keras.models.load_model('model/model.keras')\n"
        "print(json.dumps([keras.config.backend(), list(model.predict(np.zeros((3, 8, 8, 1)), verbose=0).shape),"
        " 'tensorflow' in sys.modules]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", reload], cwd=tmp_path, env=without_tensorflow, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.splitlines()[-1]) == ["jax", [3, 10], False]
