"""Batches of in-memory arrays for ``fit`` on any Keras backend (TensorFlow's trials use tf.data)."""

from __future__ import annotations

import math
from collections.abc import Callable

import keras
import numpy as np


class Batches(keras.utils.PyDataset):
    """Shuffled (optionally augmented) batches: a new order every epoch from ``seed``, ``steps`` batches
    an epoch (a short epoch takes the first batches of a new order).

    Augmentation is CIFAR's standard: pad 4 pixels, take a random crop back, flip left-right at random.
    """

    def __init__(
        self, x: np.ndarray, y: np.ndarray, batch_size: int, steps: int | None = None, seed: int = 0,
        augment: bool = False, transform: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        self.x, self.y, self.batch_size, self.augment = x, y, batch_size, augment
        self.transform = transform  # applied to each training batch after the crop and flip (random erasing)
        self.steps = steps or math.ceil(len(x) / batch_size)
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(x))

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        start = (index * self.batch_size) % len(self.x)
        rows = np.take(self.order, range(start, start + min(self.batch_size, len(self.x))), mode="wrap")
        x, y = self.x[rows], self.y[rows]
        x = self._augmented(x) if self.augment else x
        return (self.transform(x) if self.transform is not None else x), y

    def _augmented(self, x: np.ndarray) -> np.ndarray:
        n, h, w, _ = x.shape
        padded = np.pad(x, ((0, 0), (4, 4), (4, 4), (0, 0)))
        dy, dx = self.rng.integers(0, 9, size=n), self.rng.integers(0, 9, size=n)
        out = np.stack([padded[i, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])
        flip = self.rng.random(n) < 0.5
        out[flip] = out[flip, :, ::-1]
        return out

    def on_epoch_end(self) -> None:
        self.order = self.rng.permutation(len(self.x))
