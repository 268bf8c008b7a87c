"""Two interpreters of one template: Keras layers, and arithmetic on shapes.

Each family's template is written once against the ``Ops`` protocol. ``KerasOps`` turns it into a Keras
graph; ``CountOps`` walks the same code over ``(height, width, channels)`` tuples and adds up weights and
multiply-accumulates, so a count never needs a model built (microseconds, no TensorFlow import).
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

T = TypeVar("T")

Shape = tuple[int, int, int]


def _down(n: int, stride: int) -> int:
    """Output size of a 'same'-padded stride: ceil(n / stride)."""
    return -(-n // stride)


class Ops(Protocol[T]):
    def conv(self, x: T, filters: int, kernel: int, stride: int = 1) -> T: ...
    def bn(self, x: T) -> T: ...
    def relu(self, x: T) -> T: ...
    def add(self, a: T, b: T) -> T: ...
    def concat(self, xs: list[T]) -> T: ...
    def avg_pool(self, x: T, size: int) -> T: ...
    def classifier(self, x: T, num_classes: int) -> T: ...
    def channels(self, x: T) -> int: ...


class CountOps:
    """Counts trainable and non-trainable weights and the MACs of convolutions and dense layers."""

    def __init__(self) -> None:
        self.trainable = 0
        self.non_trainable = 0
        self.macs = 0

    def conv(self, x: Shape, filters: int, kernel: int, stride: int = 1) -> Shape:
        h, w, c = _down(x[0], stride), _down(x[1], stride), x[2]
        weights = kernel * kernel * c * filters
        self.trainable += weights
        self.macs += h * w * weights
        return (h, w, filters)

    def bn(self, x: Shape) -> Shape:
        self.trainable += 2 * x[2]  # gamma, beta
        self.non_trainable += 2 * x[2]  # moving mean, moving variance
        return x

    def relu(self, x: Shape) -> Shape:
        return x

    def add(self, a: Shape, b: Shape) -> Shape:
        return a

    def concat(self, xs: list[Shape]) -> Shape:
        return (xs[0][0], xs[0][1], sum(x[2] for x in xs))

    def avg_pool(self, x: Shape, size: int) -> Shape:
        return (_down(x[0], size), _down(x[1], size), x[2])

    def classifier(self, x: Shape, num_classes: int) -> Shape:
        self.trainable += x[2] * num_classes + num_classes
        self.macs += x[2] * num_classes
        return (1, 1, num_classes)

    def channels(self, x: Shape) -> int:
        return x[2]


class KerasOps:
    """Builds Keras layers: bias-free 'same' convolutions, plain BatchNormalization (DESIGN.md)."""

    def __init__(self) -> None:
        from keras import layers

        self.layers = layers

    def conv(self, x: Any, filters: int, kernel: int, stride: int = 1) -> Any:
        return self.layers.Conv2D(
            filters, kernel, strides=stride, padding="same", use_bias=False, kernel_initializer="he_normal"
        )(x)

    def bn(self, x: Any) -> Any:
        # momentum 0.9 (not Keras's 0.99): brief trials run a few hundred steps, and with 0.99 the moving
        # statistics used at validation would still mostly be their initial values.
        return self.layers.BatchNormalization(momentum=0.9)(x)

    def relu(self, x: Any) -> Any:
        return self.layers.ReLU()(x)

    def add(self, a: Any, b: Any) -> Any:
        return self.layers.Add()([a, b])

    def concat(self, xs: list[Any]) -> Any:
        return self.layers.Concatenate()(xs)

    def avg_pool(self, x: Any, size: int) -> Any:
        return self.layers.AveragePooling2D(size, padding="same")(x)

    def classifier(self, x: Any, num_classes: int) -> Any:
        x = self.layers.GlobalAveragePooling2D()(x)
        # float32 softmax keeps mixed precision numerically safe; it adds no weights.
        return self.layers.Dense(num_classes, activation="softmax", dtype="float32")(x)

    def channels(self, x: Any) -> int:
        return int(x.shape[-1])
