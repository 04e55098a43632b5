"""Activations of the paper's network, registered so saved models load without custom_objects."""

from __future__ import annotations

import larq as lq
import tensorflow as tf

from keras_ternary.contract.activations import ACTIVATIONS

_BOUND = ACTIVATIONS["hard_tanh"].bound

__all__ = ["HardTanh", "hard_tanh"]


def hard_tanh(x: tf.Tensor) -> tf.Tensor:
    """Hardtanh, ``clip(x, -1, 1)``, as BinaryNet's ``nn.Hardtanh``."""
    return tf.clip_by_value(x, -_BOUND, _BOUND)


@lq.utils.register_keras_custom_object
@tf.keras.utils.register_keras_serializable(package="keras_ternary", name="HardTanh")
class HardTanh(tf.keras.layers.Layer):
    """Layer form of :func:`hard_tanh`.

    A layer rather than ``Activation(fn)``: tf-keras cannot reload a custom activation
    function from the legacy .h5 format, while a registered layer round-trips in both .h5
    and .keras without ``custom_objects``.
    """

    def call(self, inputs):
        return hard_tanh(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape
