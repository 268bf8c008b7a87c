"""Fused optimizer updates and batch normalization for the TensorFlow backend: a smaller graph to trace
for each brief trial.

Keras writes every optimizer update as a dozen small ops per variable; for the small models of a search,
tracing those ops (and the per-variable ``tf.distribute`` bookkeeping around them) was 40% of a trial's
first-epoch cost. TensorFlow has one fused kernel per variable for the same update rules
(``ResourceApplyAdam``, ``ResourceApplyKerasMomentum``), which compute the same formulas as Keras 3's
``Adam`` and ``SGD`` (the tests hold them equal to float rounding). Keras 3's batch normalization is
likewise a dozen ops forward and twice that backward, where TensorFlow has one kernel each way
(``FusedBatchNorm`` and its gradient), which also updates the moving statistics; it was most of what
remained of the forward pass's trace.

They are used for a search's brief trials only, and only where Keras runs on TensorFlow
(``optimizers.make_optimizer`` and ``models.build_model`` decide): they bypass ``tf.distribute`` (a search
worker runs one device, without a strategy), and a model saved by ``jumpsearch train`` keeps stock Keras
layers and optimizer that any Keras, on any backend, loads.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf


def _tf_variable(variable: Any) -> tf.Variable:
    return variable.value if isinstance(variable, keras.Variable) else variable


class _Fused:
    """One kernel per variable for the update, its scalars made once per step, no per-variable merge calls.

    Subclasses give the step's scalars and the one-variable update; Keras still does clipping,
    accumulation, EMA and the iteration count around them.
    """

    def _apply_weight_decay(self, variables: list) -> None:
        if self.weight_decay is None:
            return
        rates: dict[tf.DType, tuple[tf.Tensor, tf.Tensor]] = {}
        for variable in variables:
            if self._use_weight_decay(variable):
                var = _tf_variable(variable)
                if var.dtype not in rates:
                    rates[var.dtype] = (tf.cast(self.weight_decay, var.dtype), tf.cast(self.learning_rate, var.dtype))
                wd, lr = rates[var.dtype]
                var.assign_sub(var * wd * lr)  # Keras's expression, in Keras's order

    def _backend_update_step(self, grads: list, trainable_variables: list, learning_rate: Any) -> None:
        scalars: dict[tf.DType, dict[str, tf.Tensor]] = {}
        for grad, variable in zip(grads, trainable_variables, strict=True):
            var = _tf_variable(variable)
            if var.dtype not in scalars:
                scalars[var.dtype] = self._step_scalars(tf.cast(learning_rate, var.dtype), var.dtype)
            index = self._get_variable_index(variable)
            self._fused_update(index, var, tf.cast(grad, var.dtype), scalars[var.dtype])

    def _step_scalars(self, lr: tf.Tensor, dtype: tf.DType) -> dict[str, tf.Tensor]:
        raise NotImplementedError

    def _fused_update(self, index: int, var: tf.Variable, grad: tf.Tensor, scalars: dict[str, tf.Tensor]) -> None:
        raise NotImplementedError


class FusedAdam(_Fused, keras.optimizers.Adam):
    def _step_scalars(self, lr: tf.Tensor, dtype: tf.DType) -> dict[str, tf.Tensor]:
        step = tf.cast(self.iterations + 1, dtype)
        beta1, beta2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        epsilon = tf.cast(self.epsilon, dtype)
        powers = {"beta1_power": tf.pow(beta1, step), "beta2_power": tf.pow(beta2, step)}
        return {"lr": lr, "beta1": beta1, "beta2": beta2, "epsilon": epsilon, **powers}

    def _fused_update(self, index: int, var: tf.Variable, grad: tf.Tensor, scalars: dict[str, tf.Tensor]) -> None:
        m, v = _tf_variable(self._momentums[index]), _tf_variable(self._velocities[index])
        tf.raw_ops.ResourceApplyAdam(var=var.handle, m=m.handle, v=v.handle, grad=grad, **scalars)


class FusedAdamW(FusedAdam, keras.optimizers.AdamW):
    pass


class FusedSGD(_Fused, keras.optimizers.SGD):
    def _step_scalars(self, lr: tf.Tensor, dtype: tf.DType) -> dict[str, tf.Tensor]:
        return {"lr": lr, "momentum": tf.cast(self.momentum, dtype)}

    def _fused_update(self, index: int, var: tf.Variable, grad: tf.Tensor, scalars: dict[str, tf.Tensor]) -> None:
        accum = _tf_variable(self.momentums[index])
        tf.raw_ops.ResourceApplyKerasMomentum(
            var=var.handle, accum=accum.handle, grad=grad, use_nesterov=self.nesterov, **scalars
        )


FUSED = {"adam": FusedAdam, "adamw": FusedAdamW, "sgd": FusedSGD}


def _biased(x: tf.Tensor) -> tf.Tensor | float:
    """max(n - 1, 1) / n for the n values per channel of a 4-D batch: the inverse of the factor by which
    the kernel turns the biased variance into the unbiased one (1 where n is 1: a single value's variance
    is 0 either way). A number where the shape is known when traced (no shape ops in the graph), else a
    tensor."""
    if x.shape[:3].is_fully_defined():
        n = x.shape[0] * x.shape[1] * x.shape[2]
        return max(n - 1, 1) / n
    n = tf.cast(tf.size(x), tf.float32) / x.shape[3]
    return tf.maximum(n - 1.0, 1.0) / n


@keras.saving.register_keras_serializable(package="jumpsearch")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """Keras's batch normalization, computed by TensorFlow's fused kernel for the case a template builds
    (4-D channels-last input, float32 weights, scale and offset; anything else — a mask, renormalization,
    synchronized statistics — is Keras's own code).

    The same formulas as the stock layer: the batch is normalized by its biased variance, and the moving
    statistics follow Keras's update, ``moving * momentum + batch * (1 - momentum)``, with the biased
    variance too (the kernel's update uses the unbiased one, n / (n - 1) times larger: it is scaled back).
    """

    def call(self, inputs: Any, training: Any = None, mask: Any = None) -> Any:
        stock = mask is not None or self.renorm or self.synchronized or not (self.center and self.scale)
        if stock or len(inputs.shape) != 4 or self.axis not in (-1, 3) or self.variable_dtype != "float32":
            return super().call(inputs, training=training, mask=mask)
        x = tf.cast(inputs, tf.float32)  # as the stock layer: statistics in float32 under mixed precision
        gamma, beta = _tf_variable(self.gamma), _tf_variable(self.beta)
        moving_mean, moving_variance = _tf_variable(self.moving_mean), _tf_variable(self.moving_variance)
        if training and self.trainable:
            # The kernel also makes the moving statistics, running * (1 - f) + batch * f with f = 1 -
            # momentum (Keras's update), but from the batch's unbiased variance, n / (n - 1) times the biased
            # one Keras uses: handed the moving variance divided by c = (n - 1) / n (``_biased``), c times its result is
            # Keras's. Version 1 of the kernel: TensorFlow's tape knows that its gradient ignores the
            # statistics and makes no zeros for them. 15 ops per layer to trace (47 with the update apart).
            c = _biased(x)
            y, mean, variance, *_ = tf.raw_ops.FusedBatchNorm(
                x=x, scale=gamma, offset=beta, mean=moving_mean, variance=moving_variance / c,
                epsilon=self.epsilon, exponential_avg_factor=1.0 - self.momentum, data_format="NHWC",
                is_training=True,
            )  # fmt: skip
            moving_mean.assign(mean)
            moving_variance.assign(variance * c)
        else:
            y, *_ = tf.raw_ops.FusedBatchNorm(
                x=x, scale=gamma, offset=beta, mean=moving_mean, variance=moving_variance,
                epsilon=self.epsilon, data_format="NHWC", is_training=False,
            )  # fmt: skip
        return tf.cast(y, self.compute_dtype)
