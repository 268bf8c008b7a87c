import pickle

import numpy as np
import pytest

from jumpsearch import JumpsearchError
from jumpsearch.config import DataConfig
from jumpsearch.data import load_cifar_folder, load_dataset


def write_cifar_batch(path, images, labels, label_key=b"labels"):
    """The real format: a pickled dict whose b'data' rows are 1024 red, 1024 green, 1024 blue bytes."""
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": b"test", label_key: list(labels), b"data": rows}, f)


@pytest.fixture
def cifar10_folder(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        images = rng.integers(0, 256, size=(20, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, size=20)
        labels[:10] = np.arange(10)
        write_cifar_batch(folder / name, images, labels)
        batches.append((images, labels))
    return tmp_path, batches


def test_cifar10_batches_read_in_channels_last_order(cifar10_folder):
    parent, batches = cifar10_folder
    x_train, x_test, y_train, y_test = load_cifar_folder("cifar10", parent)  # finds the child folder
    assert x_train.shape == (100, 32, 32, 3) and x_test.shape == (20, 32, 32, 3)
    assert x_train.dtype == np.float32
    np.testing.assert_allclose(x_train[0], batches[0][0][0] / 255.0)
    np.testing.assert_allclose(x_test[-1], batches[5][0][-1] / 255.0)
    np.testing.assert_array_equal(y_train[20:40], batches[1][1])


def test_cifar100_reads_fine_labels(tmp_path):
    rng = np.random.default_rng(1)
    for name in ("train", "test"):
        images = rng.integers(0, 256, size=(8, 32, 32, 3), dtype=np.uint8)
        write_cifar_batch(tmp_path / name, images, np.arange(8) * 12, label_key=b"fine_labels")
    x_train, _, y_train, _ = load_cifar_folder("cifar100", tmp_path)
    assert x_train.shape == (8, 32, 32, 3)
    assert y_train.max() == 84


def test_validation_is_carved_from_training_data_and_test_stays_apart(cifar10_folder):
    parent, batches = cifar10_folder
    data = load_dataset(DataConfig(dataset="cifar10", validation_fraction=0.25), data_dir=parent)
    assert len(data.x_train) == 75 and len(data.x_val) == 25
    np.testing.assert_allclose(data.x_test, batches[5][0] / 255.0)  # untouched, in order
    train_rows = {row.tobytes() for row in np.concatenate([data.x_train, data.x_val])}
    assert not train_rows & {row.tobytes() for row in data.x_test}
    assert data.num_classes == 10 and data.input_shape == (32, 32, 3)


def test_missing_cifar_batches_say_what_is_missing(tmp_path):
    with pytest.raises(JumpsearchError, match="missing data_batch_1.*extract https://"):
        load_cifar_folder("cifar10", tmp_path)


def test_offline_cifar_download_says_where_the_archive_goes(monkeypatch):
    import keras

    def offline():
        raise Exception("URL fetch failure on https://www.cs.toronto.edu/: None -- [Errno -3] name resolution")

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", offline)
    with pytest.raises(JumpsearchError, match="cifar-10-python.tar.gz elsewhere, extract it, and pass data_dir=FOLDER"):
        load_dataset(DataConfig(dataset="cifar10"))


def test_digits_split_is_fixed_and_disjoint():
    a = load_dataset(DataConfig(dataset="digits", validation_fraction=0.2))
    b = load_dataset(DataConfig(dataset="digits", validation_fraction=0.5))
    assert len(a.x_train) + len(a.x_val) + len(a.x_test) == 1797
    np.testing.assert_array_equal(a.x_test, b.x_test)  # the test split never moves
    assert a.input_shape == (8, 8, 1) and 0.0 <= a.x_train.min() and a.x_train.max() <= 1.0
    assert set(np.unique(a.y_val)) == set(range(10))  # stratified


def test_npz_files_load_with_and_without_a_test_split(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, size=(40, 12, 12), dtype=np.uint8)
    y = np.arange(40) % 4
    np.savez(tmp_path / "a.npz", x_train=x, y_train=y)
    data = load_dataset(DataConfig(dataset="npz", path=str(tmp_path / "a.npz"), validation_fraction=0.25))
    assert data.input_shape == (12, 12, 1) and data.num_classes == 4 and data.x_test is None
    np.savez(tmp_path / "b.npz", x_train=x)
    with pytest.raises(JumpsearchError, match="b.npz: the .npz needs arrays x_train and y_train"):
        load_dataset(DataConfig(dataset="npz", path=str(tmp_path / "b.npz")))
    with pytest.raises(JumpsearchError, match="missing.npz: cannot read"):
        load_dataset(DataConfig(dataset="npz", path=str(tmp_path / "missing.npz")))


def npz(tmp_path, **arrays):
    rng = np.random.default_rng(3)
    base = {"x_train": rng.random((40, 8, 8)).astype(np.float32), "y_train": np.arange(40) % 4}
    base.update(arrays)
    path = tmp_path / "d.npz"
    np.savez(path, **{k: v for k, v in base.items() if v is not None})
    return DataConfig(dataset="npz", path=str(path))


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"y_train": np.zeros(40, dtype=int)}, "y_train holds one class .*at least 2"),
        ({"y_train": np.arange(40) % 4 - 1}, "y_train holds the negative label -1"),
        ({"y_train": np.where(np.arange(40) % 4 == 3, 10**9, np.arange(40) % 4)},
         "labels must be class indices 0…K-1, but y_train has 4 classes up to 1000000000 .no image of class 3"),
        ({"y_train": (np.arange(40) % 4) + 0.5}, "y_train holds values of type float64; labels must be integer"),
        ({"x_train": np.ones((40, 8, 8), dtype=np.complex64)}, "x_train holds values of type complex64; pixels must"),
        ({"x_train": np.zeros((40, 8, 8), dtype="datetime64[s]")}, "x_train holds values of type datetime64"),
        ({"x_train": np.full((40, 8, 8), "1")}, "x_train holds values of type <U1; pixels must be real numbers"),
        ({"x_test": np.zeros((5, 8, 8), dtype=np.timedelta64), "y_test": np.arange(5) % 4}, "x_test holds values"),
        ({"y_train": (np.arange(40) % 4).astype(np.complex128)}, "y_train holds values of type complex128"),
        ({"x_test": np.zeros((5, 8, 8)), "y_test": np.array(["a"] * 5)}, "y_test holds values of type <U1"),
        ({"x_train": np.zeros((40, 8, 0))}, r"x_train must hold .* images, got shape \(40, 8, 0, 1\)"),
        ({"x_train": np.full((40, 8, 8), np.nan)}, "x_train holds 2560 NaN or infinite pixels"),
        ({"x_test": np.zeros((5, 9, 9)), "y_test": np.arange(5) % 4}, r"x_test images are \(9, 9, 1\), x_train"),
        ({"x_test": np.zeros((5, 8, 8)), "y_test": np.arange(5)}, "y_test holds labels outside the training classes"),
    ],
)  # fmt: skip
def test_data_is_checked_when_it_loads(tmp_path, arrays, message):
    with pytest.raises(JumpsearchError, match=message) as error:
        load_dataset(npz(tmp_path, **arrays))
    assert "d.npz" in str(error.value) and "\n" not in str(error.value)
