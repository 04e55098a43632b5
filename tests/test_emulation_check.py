"""``compare_with_keras`` on layers with a fused activation (``QuantDense(activation=...)``).

The integer accumulators are pre-activation values: they must be compared with the Keras
layer's output before its activation, so a model whose emulation is exact reports
``accumulators_exact`` whatever activations its layers fuse.
"""

from __future__ import annotations

import larq as lq
import numpy as np
import pytest
import tensorflow as tf

from hw_sim.emulate import Emulator
from hw_sim.emulation_check import compare_with_keras
from hw_sim.loaders.keras import from_keras_model
from keras_ternary import Ternary


def _fused_model(conv_act: str, dense_act: str, out_act: str) -> tf.keras.Model:
    init = tf.keras.initializers.RandomUniform(-0.5, 0.5, seed=4)

    def quant() -> dict:  # each layer owns its Ternary (its own Δ variable)
        return {"input_quantizer": "ste_sign", "kernel_quantizer": Ternary(0.15)}

    inputs = tf.keras.Input((8, 8, 3))
    x = lq.layers.QuantConv2D(
        8,
        3,
        padding="same",
        kernel_initializer=init,
        activation=conv_act,
        name="conv1",
        kernel_quantizer=Ternary(0.15),
    )(inputs)
    x = lq.layers.QuantConv2D(
        16,
        3,
        padding="same",
        use_bias=False,
        kernel_initializer=init,
        activation=conv_act,
        name="conv2",
        **quant(),
    )(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    x = lq.layers.QuantDense(
        12, kernel_initializer=init, activation=dense_act, name="fc1", **quant()
    )(x)
    x = lq.layers.QuantDense(5, kernel_initializer=init, activation=out_act, name="fc2", **quant())(
        x
    )
    return tf.keras.Model(inputs, x)


@pytest.mark.parametrize(
    "conv_act, dense_act, out_act",
    [("relu", "relu", "softmax"), ("linear", "relu", "linear"), ("relu", "linear", "softmax")],
)
def test_fused_activation_accumulators_exact(conv_act, dense_act, out_act):
    model = _fused_model(conv_act, dense_act, out_act)
    graph = from_keras_model(model)
    x = (np.random.default_rng(0).integers(-64, 64, (6, 8, 8, 3)) / 32).astype(np.float32)
    agreement, _ = compare_with_keras(model, Emulator(graph), x, batch_size=3)
    compared = agreement["accumulators"]
    assert {"conv2", "fc1", "fc2"} <= set(compared)  # the binary-input layers are integer
    assert agreement["accumulators_exact"], compared
    assert agreement["top1_agreement"] == 1.0
