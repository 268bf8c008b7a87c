"""Data sets as in-memory arrays, with the validation split carved from the training data.

The search ranks on ``x_val``/``y_val`` only. ``x_test``/``y_test`` are kept for the final report of a
chosen, fully trained model and are never passed to a search.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jumpsearch.config import DataConfig
from jumpsearch.errors import JumpsearchError

CIFAR_ORIGINS = {
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
}
CIFAR_FILES = {
    "cifar10": ([f"data_batch_{i}" for i in range(1, 6)], "test_batch", b"labels"),
    "cifar100": (["train"], "test", b"fine_labels"),
}
DIGITS_TEST_FRACTION = 0.2
SPLIT_SEED = 0  # fixed, so the test and validation splits never move between runs or workers


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, int, int]:
        h, w, c = self.x_train.shape[1:]
        return (int(h), int(w), int(c))


def _images(x: np.ndarray, scale: float | None = None) -> np.ndarray:
    """float32 NHWC in [0, 1]: uint8 pixels are divided by 255, other types by ``scale`` if given."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if scale is None and x.dtype == np.uint8:
        scale = 255.0
    x = x.astype(np.float32)
    return x / scale if scale else x


def _labels(y: np.ndarray) -> np.ndarray:
    return np.asarray(y).reshape(-1).astype(np.int32)


def _split(x: np.ndarray, y: np.ndarray, fraction: float) -> tuple[np.ndarray, ...]:
    """Stratified split (first part kept, second held out); stratification keeps small sets balanced."""
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y)
    stratify = y if counts[counts > 0].min() >= 2 else None
    return tuple(train_test_split(x, y, test_size=fraction, random_state=SPLIT_SEED, stratify=stratify))


def _load_digits() -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, y = _images(digits.images, scale=16.0), _labels(digits.target)
    return _split(x, y, DIGITS_TEST_FRACTION)


def _read_cifar_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    x = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return x, np.asarray(batch[label_key])


def load_cifar_folder(name: str, folder: str | Path) -> tuple[np.ndarray, ...]:
    """Read the python batches of CIFAR-10 (``data_batch_1``…``5``, ``test_batch``) or CIFAR-100
    (``train``, ``test``) from a folder, or from its ``cifar-10-batches-py``/``cifar-100-python`` child."""
    train_files, test_file, label_key = CIFAR_FILES[name]
    folder = Path(folder)
    for candidate in (folder, folder / "cifar-10-batches-py", folder / "cifar-100-python"):
        if (candidate / test_file).is_file():
            folder = candidate
            break
    missing = [f for f in [*train_files, test_file] if not (folder / f).is_file()]
    if missing:
        raise JumpsearchError(
            f"{folder}: not a folder of extracted {name} python batches (missing {', '.join(missing)}); "
            f"extract {CIFAR_ORIGINS[name]} and name the folder it makes"
        )
    try:
        parts = [_read_cifar_batch(folder / f, label_key) for f in train_files]
        x_test, y_test = _read_cifar_batch(folder / test_file, label_key)
    except (OSError, pickle.UnpicklingError, KeyError, ValueError, EOFError) as e:
        raise JumpsearchError(f"{folder}: cannot read the {name} batches ({e!r})") from None
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    return _images(x_train), _images(x_test), _labels(y_train), _labels(y_test)


def _load_cifar_keras(name: str) -> tuple[np.ndarray, ...]:
    import keras

    module = keras.datasets.cifar10 if name == "cifar10" else keras.datasets.cifar100
    try:
        (x_train, y_train), (x_test, y_test) = module.load_data()
    except Exception as e:  # keras raises plain Exception on a failed download
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise JumpsearchError(
            f"{name}: download through keras.datasets failed ({reason}); "
            f"offline, fetch {CIFAR_ORIGINS[name]} elsewhere, extract it, and pass --data-dir FOLDER "
            "(or set data.path in the space file)"
        ) from None
    return _images(x_train), _images(x_test), _labels(y_train), _labels(y_test)


def _load_npz(path: str) -> tuple[np.ndarray | None, ...]:
    try:
        with np.load(path) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        raise JumpsearchError(f"{path}: cannot read the .npz file ({e})") from None
    missing = [k for k in ("x_train", "y_train") if k not in arrays]
    if missing:
        raise JumpsearchError(f"{path}: the .npz needs arrays x_train and y_train (missing {', '.join(missing)})")
    if arrays["x_train"].ndim not in (3, 4) or len(arrays["x_train"]) != len(arrays["y_train"]):
        raise JumpsearchError(f"{path}: x_train must be N×H×W or N×H×W×C images with one label each in y_train")
    has_test = "x_test" in arrays and "y_test" in arrays
    return (
        _images(arrays["x_train"]),
        _images(arrays["x_test"]) if has_test else None,
        _labels(arrays["y_train"]),
        _labels(arrays["y_test"]) if has_test else None,
    )


def load_dataset(config: DataConfig, data_dir: str | Path | None = None) -> Dataset:
    """Load a data set and carve the validation split (stratified, fixed seed) from its training part.

    ``data_dir`` (the CLI's ``--data-dir``) overrides ``config.path``.
    """
    path = str(data_dir) if data_dir is not None else config.path
    if config.dataset == "digits":
        x_train, x_test, y_train, y_test = _load_digits()
    elif config.dataset in CIFAR_FILES:
        x_train, x_test, y_train, y_test = (
            load_cifar_folder(config.dataset, path) if path else _load_cifar_keras(config.dataset)
        )
    else:
        assert path is not None  # DataConfig.from_dict requires it
        x_train, x_test, y_train, y_test = _load_npz(path)
    x_fit, x_val, y_fit, y_val = _split(x_train, y_train, config.validation_fraction)
    labels = [y_train] + ([y_test] if y_test is not None else [])
    num_classes = int(max(int(y.max()) for y in labels)) + 1
    return Dataset(config.dataset, x_fit, y_fit, x_val, y_val, x_test, y_test, num_classes)
