"""Three interpreters of one template: Keras layers, arithmetic on shapes, and the graph as data.

Each family's template is written once against the ``Ops`` protocol. ``KerasOps`` turns it into a Keras
graph; ``CountOps`` walks the same code over ``(height, width, channels)`` tuples and adds up weights,
multiply-accumulates and activations, so a count never needs a model built (microseconds, no TensorFlow
import); ``TraceOps`` records the layers and their wiring, so two configurations that build the same
network (``growth_rate`` 1.0 and 1.1 can round to the same widths) are known to be one.
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
    def max_pool(self, x: T, size: int, stride: int) -> T: ...
    def classifier(self, x: T, num_classes: int) -> T: ...
    def channels(self, x: T) -> int: ...


class CountOps:
    """Counts trainable and non-trainable weights, the MACs of convolutions, batch norms and the dense
    layer, and the
    activations (values every layer outputs for one image, which training keeps for the backward pass)."""

    def __init__(self) -> None:
        self.trainable = 0
        self.non_trainable = 0
        self.macs = 0
        self.activations = 0

    def _out(self, shape: Shape) -> Shape:
        self.activations += shape[0] * shape[1] * shape[2]
        return shape

    def conv(self, x: Shape, filters: int, kernel: int, stride: int = 1) -> Shape:
        h, w, c = _down(x[0], stride), _down(x[1], stride), x[2]
        weights = kernel * kernel * c * filters
        self.trainable += weights
        self.macs += h * w * weights
        return self._out((h, w, filters))

    def bn(self, x: Shape) -> Shape:
        self.trainable += 2 * x[2]  # gamma, beta
        self.non_trainable += 2 * x[2]  # moving mean, moving variance
        # At inference a scale and shift per value: a pre-activation BN (BN → ReLU → conv) has no
        # convolution before it to fold into, so it is real work.
        self.macs += x[0] * x[1] * x[2]
        return self._out(x)

    def relu(self, x: Shape) -> Shape:
        return self._out(x)

    def add(self, a: Shape, b: Shape) -> Shape:
        return self._out(a)

    def concat(self, xs: list[Shape]) -> Shape:
        return self._out((xs[0][0], xs[0][1], sum(x[2] for x in xs)))

    def avg_pool(self, x: Shape, size: int) -> Shape:
        return self._out((_down(x[0], size), _down(x[1], size), x[2]))

    def max_pool(self, x: Shape, size: int, stride: int) -> Shape:
        return self._out((_down(x[0], stride), _down(x[1], stride), x[2]))

    def classifier(self, x: Shape, num_classes: int) -> Shape:
        self.trainable += x[2] * num_classes + num_classes
        self.macs += x[2] * num_classes
        return (1, 1, num_classes)

    def channels(self, x: Shape) -> int:
        return x[2]


Node = tuple[int, Shape]  # (index in the trace, shape)


class TraceOps:
    """Records each layer with its settings and the layers it reads: the network as plain data."""

    def __init__(self, input_shape: Shape) -> None:
        self.shapes = CountOps()
        self.layers: list[tuple] = [("input", input_shape)]

    def _layer(self, kind: str, inputs: list[Node], shape: Shape, *settings: Any) -> Node:
        self.layers.append((kind, *settings, [i for i, _ in inputs]))
        return (len(self.layers) - 1, shape)

    @property
    def input(self) -> Node:
        return (0, self.layers[0][1])

    def conv(self, x: Node, filters: int, kernel: int, stride: int = 1) -> Node:
        return self._layer("conv", [x], self.shapes.conv(x[1], filters, kernel, stride), filters, kernel, stride)

    def bn(self, x: Node) -> Node:
        return self._layer("bn", [x], x[1])

    def relu(self, x: Node) -> Node:
        return self._layer("relu", [x], x[1])

    def add(self, a: Node, b: Node) -> Node:
        return self._layer("add", [a, b], a[1])

    def concat(self, xs: list[Node]) -> Node:
        return self._layer("concat", xs, self.shapes.concat([x[1] for x in xs]))

    def avg_pool(self, x: Node, size: int) -> Node:
        return self._layer("avg_pool", [x], self.shapes.avg_pool(x[1], size), size)

    def max_pool(self, x: Node, size: int, stride: int) -> Node:
        return self._layer("max_pool", [x], self.shapes.max_pool(x[1], size, stride), size, stride)

    def classifier(self, x: Node, num_classes: int) -> Node:
        return self._layer("classifier", [x], (1, 1, num_classes), num_classes)

    def channels(self, x: Node) -> int:
        return x[1][2]


class KerasOps:
    """Builds Keras layers: bias-free 'same' convolutions, plain BatchNormalization (``fused``: its
    TensorFlow-kernel twin, same weights and formulas, where Keras runs on TensorFlow)."""

    def __init__(self, fused: bool = False) -> None:
        import keras
        from keras import layers

        self.layers = layers
        self.batch_norm = layers.BatchNormalization
        if fused and keras.config.backend() == "tensorflow":
            from jumpsearch.fused_tf import FusedBatchNormalization

            self.batch_norm = FusedBatchNormalization

    def conv(self, x: Any, filters: int, kernel: int, stride: int = 1) -> Any:
        return self.layers.Conv2D(
            filters, kernel, strides=stride, padding="same", use_bias=False, kernel_initializer="he_normal"
        )(x)

    def bn(self, x: Any) -> Any:
        # momentum 0.9 (not Keras's 0.99): brief trials run a few hundred steps, and with 0.99 the moving
        # statistics used at validation would still mostly be their initial values.
        return self.batch_norm(momentum=0.9)(x)

    def relu(self, x: Any) -> Any:
        return self.layers.ReLU()(x)

    def add(self, a: Any, b: Any) -> Any:
        return self.layers.Add()([a, b])

    def concat(self, xs: list[Any]) -> Any:
        return self.layers.Concatenate()(xs)

    def avg_pool(self, x: Any, size: int) -> Any:
        return self.layers.AveragePooling2D(size, padding="same")(x)

    def max_pool(self, x: Any, size: int, stride: int) -> Any:
        return self.layers.MaxPooling2D(size, strides=stride, padding="same")(x)

    def classifier(self, x: Any, num_classes: int) -> Any:
        x = self.layers.GlobalAveragePooling2D()(x)
        # float32 softmax keeps mixed precision numerically safe; it adds no weights.
        return self.layers.Dense(num_classes, activation="softmax", dtype="float32")(x)

    def channels(self, x: Any) -> int:
        return int(x.shape[-1])
