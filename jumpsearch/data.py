"""Data sets as in-memory arrays, with the validation split carved from the training data.

The search ranks on ``x_val``/``y_val`` only. ``x_test``/``y_test`` are kept for the final report of a
chosen, fully trained model and are never passed to a search.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jumpsearch.config import DataConfig, clip
from jumpsearch.errors import JumpsearchError

CIFAR_ORIGINS = {
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
}
CIFAR_FILES = {
    "cifar10": ([f"data_batch_{i}" for i in range(1, 6)], "test_batch", b"labels"),
    "cifar100": (["train"], "test", b"fine_labels"),
}
FASHION_MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
FASHION_MNIST_OFFLINE = (
    "pass data_dir=FOLDER (or set data.path) naming a folder of its four original files "
    f"({', '.join(FASHION_MNIST_FILES.values())}); on Debian or Ubuntu, "
    "'apt-get install dataset-fashion-mnist' puts them in /usr/share/datasets/fashion-mnist"
)
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


def _images(x: np.ndarray, scale: float | None = None, name: str = "x_train") -> np.ndarray:
    """float32 NHWC in [0, 1]: uint8 pixels are divided by 255, other types by ``scale`` if given. Pixels
    must be real numbers: a cast would drop an imaginary part, or turn dates and strings into numbers."""
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise JumpsearchError(f"{name} holds values of type {x.dtype}; pixels must be real numbers")
    if x.ndim == 3:
        x = x[..., None]
    if scale is None and x.dtype == np.uint8:
        scale = 255.0
    x = x.astype(np.float32)
    return x / scale if scale else x


def _labels(y: np.ndarray, name: str = "y_train") -> np.ndarray:
    """Labels as integer class indices; the values themselves are checked in ``_validate``."""
    y = np.asarray(y).reshape(-1)
    if y.dtype.kind not in "iuf" or (y.dtype.kind == "f" and not np.all(np.isfinite(y) & (y == np.round(y)))):
        raise JumpsearchError(f"{name} holds values of type {y.dtype}; labels must be integer class indices")
    return y.astype(np.int64)


def _validate(source: str, x_train: np.ndarray, y_train: np.ndarray, x_test, y_test) -> int:
    """Check what a search would otherwise find late, or never: return the number of classes."""
    if x_train.ndim != 4 or min(x_train.shape) == 0:
        raise JumpsearchError(f"{source}: x_train must hold N×H×W or N×H×W×C images, got shape {x_train.shape}")
    if len(x_train) != len(y_train):
        raise JumpsearchError(f"{source}: {len(x_train)} training images but {len(y_train)} labels")
    for split, x in (("x_train", x_train), ("x_test", x_test)):
        if x is not None and not np.all(np.isfinite(x)):
            raise JumpsearchError(f"{source}: {split} holds {int(np.sum(~np.isfinite(x)))} NaN or infinite pixels")
    low, high = int(y_train.min()), int(y_train.max())
    present = np.unique(y_train)
    if low < 0:
        raise JumpsearchError(f"{source}: y_train holds the negative label {low}; labels are class indices 0…K-1")
    if len(present) < 2:
        raise JumpsearchError(f"{source}: y_train holds one class ({low}); a classifier needs at least 2")
    if len(present) != high + 1:
        missing = next(i for i, label in enumerate(present.tolist()) if label != i)  # present is sorted
        raise JumpsearchError(
            f"{source}: labels must be class indices 0…K-1, but y_train has {len(present)} classes up to {high} "
            f"(no image of class {missing})"
        )
    if x_test is not None:
        if x_test.shape[1:] != x_train.shape[1:]:
            raise JumpsearchError(
                f"{source}: x_test images are {x_test.shape[1:]}, x_train images {x_train.shape[1:]}; they must match"
            )
        if len(x_test) != len(y_test):
            raise JumpsearchError(f"{source}: {len(x_test)} test images but {len(y_test)} labels")
        if len(y_test) and (y_test.min() < 0 or y_test.max() > high):
            raise JumpsearchError(f"{source}: y_test holds labels outside the training classes 0…{high}")
    return high + 1


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
        raise JumpsearchError(f"{folder}: cannot read the {name} batches ({clip(repr(e))})") from None
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    return _images(x_train), _images(x_test, name="x_test"), _labels(y_train), _labels(y_test, name="y_test")


def read_idx(path: Path) -> np.ndarray:
    """One array of the IDX format (MNIST's and Fashion-MNIST's files), gzipped or not: a big-endian
    header of two zero bytes, a type code (0x08: unsigned bytes), the number of dimensions and their sizes."""
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise JumpsearchError(f"{path}: cannot read the IDX file ({e})") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise JumpsearchError(f"{path}: not an IDX file of unsigned bytes (header {raw[:4].hex() or 'empty'})")
    ndim = raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    size = int(np.prod(shape))
    if len(raw) != 4 + 4 * ndim + size:
        raise JumpsearchError(
            f"{path}: the header announces {shape} bytes of data, the file holds {len(raw) - 4 - 4 * ndim}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion_mnist_folder(folder: str | Path) -> tuple[np.ndarray, ...]:
    """Read Fashion-MNIST's four original files (gzipped IDX, as published and as Debian installs them)."""
    folder = Path(folder)
    missing = [name for name in FASHION_MNIST_FILES.values() if not (folder / name).is_file()]
    if missing:
        raise JumpsearchError(
            f"{folder}: not a Fashion-MNIST folder (missing {', '.join(missing)}); {FASHION_MNIST_OFFLINE}"
        )
    arrays = {key: read_idx(folder / name) for key, name in FASHION_MNIST_FILES.items()}
    for split in ("x_train", "x_test"):
        if arrays[split].ndim != 3:
            raise JumpsearchError(
                f"{folder / FASHION_MNIST_FILES[split]}: expected N×28×28 images, got {arrays[split].shape}"
            )
    x_train, x_test = _images(arrays["x_train"]), _images(arrays["x_test"], name="x_test")
    return x_train, x_test, _labels(arrays["y_train"]), _labels(arrays["y_test"], name="y_test")


def _load_keras(name: str) -> tuple[np.ndarray, ...]:
    """A data set through ``keras.datasets``, which downloads it once into the Keras cache."""
    import keras

    module = getattr(keras.datasets, name)
    try:
        (x_train, y_train), (x_test, y_test) = module.load_data()
    except Exception as e:  # keras raises plain Exception on a failed download
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        offline = (
            FASHION_MNIST_OFFLINE
            if name == "fashion_mnist"
            else f"fetch {CIFAR_ORIGINS[name]} elsewhere, extract it, and pass data_dir=FOLDER (or set data.path)"
        )
        raise JumpsearchError(
            f"{name}: download through keras.datasets failed ({reason}); offline, {offline}"
        ) from None
    return _images(x_train), _images(x_test, name="x_test"), _labels(y_train), _labels(y_test, name="y_test")


def _load_npz(path: str) -> tuple[np.ndarray | None, ...]:
    try:
        with np.load(path) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        raise JumpsearchError(f"{path}: cannot read the .npz file ({e})") from None
    missing = [k for k in ("x_train", "y_train") if k not in arrays]
    if missing:
        raise JumpsearchError(f"{path}: the .npz needs arrays x_train and y_train (missing {', '.join(missing)})")
    if arrays["x_train"].ndim not in (3, 4):
        raise JumpsearchError(f"{path}: x_train must be N×H×W or N×H×W×C images, got shape {arrays['x_train'].shape}")
    has_test = "x_test" in arrays and "y_test" in arrays
    try:
        return (
            _images(arrays["x_train"]),
            _images(arrays["x_test"], name="x_test") if has_test else None,
            _labels(arrays["y_train"]),
            _labels(arrays["y_test"], name="y_test") if has_test else None,
        )
    except JumpsearchError as e:
        raise JumpsearchError(f"{path}: {e}") from None


def load_dataset(config: DataConfig, data_dir: str | Path | None = None) -> Dataset:
    """Load a data set and carve the validation split (stratified, fixed seed) from its training part.

    ``data_dir`` (the CLI's ``--data-dir``) overrides ``config.path``.
    """
    path = str(data_dir) if data_dir is not None else config.path
    if config.dataset == "digits":
        x_train, x_test, y_train, y_test = _load_digits()
    elif config.dataset == "fashion_mnist":
        x_train, x_test, y_train, y_test = load_fashion_mnist_folder(path) if path else _load_keras(config.dataset)
    elif config.dataset in CIFAR_FILES:
        x_train, x_test, y_train, y_test = (
            load_cifar_folder(config.dataset, path) if path else _load_keras(config.dataset)
        )
    else:
        assert path is not None  # DataConfig.from_dict requires it
        x_train, x_test, y_train, y_test = _load_npz(path)
    num_classes = _validate(path or config.dataset, x_train, y_train, x_test, y_test)
    if config.subset is not None and config.subset < len(x_train):
        x_train, _, y_train, _ = _split(x_train, y_train, 1 - config.subset / len(x_train))
    x_fit, x_val, y_fit, y_val = _split(x_train, y_train.astype(np.int32), config.validation_fraction)
    y_test = y_test.astype(np.int32) if y_test is not None else None
    return Dataset(config.dataset, x_fit, y_fit, x_val, y_val, x_test, y_test, num_classes)
