"""The recipe ``train`` uses to get the most out of a chosen network: what a search's brief trials leave
out because it only pays over many epochs.

Each switch is plain data (``Recipe``, the ``recipe:`` section of an exported file) and each is off, or
as before, by default:

- ``augment``: random crop after 4 pixels of padding, and a left-right flip (``auto``: on for natural
  images — CIFAR, Fashion-MNIST — off for digits and arrays of unknown content, where a flip changes a
  digit).
- ``random_erasing``: the probability that a training image has a random rectangle erased (Zhong et al.
  2017, "Random Erasing Data Augmentation"; Keras's ``RandomErasing``).
- ``label_smoothing``: ε of label smoothing (Szegedy et al. 2016, "Rethinking the Inception
  Architecture"): the target puts 1 − ε + ε/K on the label and ε/K on each of the K classes.
- ``schedule``: ``cosine`` decay of the rate to 0 over the run (Loshchilov & Hutter 2017, SGDR, without
  restarts) or ``constant``; ``warmup_epochs`` of linear warm-up from 0 first (Goyal et al. 2017).
- ``weight_decay``: replaces the searched recipe's (null: keep it).
- ``ema_momentum``: keep an exponential moving average of the weights (Polyak averaging) and end with it
  (null: off); Keras's optimizers do the averaging, and the batch-normalization statistics are then
  estimated again for the averaged weights (``recompute_batch_norm``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from jumpsearch.config import _PlainData, at_least, one_of, rule
from jumpsearch.errors import ConfigError

SCHEDULES = ("cosine", "constant")


def _probability(value: float) -> bool:
    return 0 <= value <= 1


@dataclass(frozen=True)
class Recipe(_PlainData):
    """How ``train`` trains a chosen configuration; see the module's docstring for each switch."""

    section: ClassVar[str] = "recipe"
    augment: str = rule("auto", one_of("auto", "on", "off"), "expected auto, on or off")
    random_erasing: float = rule(0.0, _probability, "must be a probability between 0 and 1")
    label_smoothing: float = rule(0.0, lambda v: 0 <= v < 1, "must lie in [0, 1)")
    schedule: str = rule("cosine", one_of(*SCHEDULES), f"unknown schedule (known: {', '.join(SCHEDULES)})")
    warmup_epochs: int = rule(0, at_least(0), "must not be negative")
    weight_decay: float | None = rule(None, at_least(0), "must not be negative, or null for the searched one")
    ema_momentum: float | None = rule(None, lambda v: 0 < v < 1, "must lie in (0, 1), or null for no averaging")

    @staticmethod
    def from_dict(data: Any, where: str = "recipe") -> Recipe:
        recipe: Recipe = Recipe._from_fields(data or {}, where)
        return recipe

    def check_epochs(self, epochs: int) -> None:
        """Warm-up must leave epochs to train at the full rate."""
        if self.warmup_epochs >= epochs:
            raise ConfigError(f"recipe.warmup_epochs: {self.warmup_epochs} leaves nothing of epochs={epochs}")


def smoothed_crossentropy(num_classes: int, label_smoothing: float) -> Any:
    """Cross-entropy of softmax outputs against integer labels smoothed by ``label_smoothing`` (a Keras
    loss; Keras's sparse cross-entropy takes no smoothing, its dense one does)."""
    import keras

    def loss(y_true: Any, y_pred: Any) -> Any:
        labels = keras.ops.one_hot(keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32"), num_classes)
        return keras.losses.categorical_crossentropy(labels, y_pred, label_smoothing=label_smoothing)

    return loss


def learning_rate(recipe: Recipe, rate: float, epochs: int, steps: int) -> Any:
    """The rate, or its schedule over ``epochs`` of ``steps`` batches (warm-up included in ``epochs``)."""
    import keras

    if recipe.schedule == "constant" and not recipe.warmup_epochs:
        return rate
    warmup = recipe.warmup_epochs * steps
    decay = (epochs - recipe.warmup_epochs) * steps
    alpha = 1.0 if recipe.schedule == "constant" else 0.0  # constant: the rate stays where warm-up left it
    if not warmup:
        return keras.optimizers.schedules.CosineDecay(rate, decay_steps=decay, alpha=alpha)
    return keras.optimizers.schedules.CosineDecay(0.0, decay, alpha=alpha, warmup_target=rate, warmup_steps=warmup)


def random_erasing(probability: float, seed: int = 0) -> Any:
    """A batch transform (NHWC images in [0, 1] → the same, as numpy) that erases a random rectangle of
    each image with ``probability``, by Keras's ``RandomErasing``; None when ``probability`` is 0."""
    if not probability:
        return None
    import keras

    layer = keras.layers.RandomErasing(factor=(probability, probability), value_range=(0, 1), seed=seed)
    return lambda x: keras.ops.convert_to_numpy(layer(x, training=True))


def recompute_batch_norm(model: Any, batches: Any, count: int = 100) -> int:
    """Estimate every BatchNormalization layer's moving mean and variance again, for the weights the
    model holds now: their mean over ``count`` training batches (``batches[i]`` → (images, labels)),
    run forward in training mode, with no weight updated. Returns the batches used.

    Averaged weights need this: the statistics Keras kept while training belong to the weights before
    averaging, and the averaged network scores far below either with them (Izmailov et al. 2018,
    "Averaging Weights Leads to Wider Optima and Better Generalization", section 3.2; PyTorch's
    ``swa_utils.update_bn`` does the same)."""
    import keras

    def walk(layer: Any) -> list[Any]:
        inner = [x for child in getattr(layer, "layers", []) for x in walk(child)]
        return inner + ([layer] if isinstance(layer, keras.layers.BatchNormalization) else [])

    norms = walk(model)
    if not norms:
        return 0
    momenta = [layer.momentum for layer in norms]
    count = min(count, len(batches))
    for layer in norms:  # from zero, so that statistics gone NaN cannot survive the first batch's weight 0
        layer.moving_mean.assign(keras.ops.zeros_like(layer.moving_mean))
        layer.moving_variance.assign(keras.ops.zeros_like(layer.moving_variance))
    try:
        for k in range(1, count + 1):
            for layer in norms:
                layer.momentum = (k - 1) / k  # a running mean: the first batch replaces, the k-th weighs 1/k
            model(batches[k - 1][0], training=True)
    finally:
        for layer, momentum in zip(norms, momenta, strict=True):
            layer.momentum = momentum
    return count
