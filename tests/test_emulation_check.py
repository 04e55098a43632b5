"""``compare_with_keras``: fused activations (``QuantDense(activation=...)``), teacher forcing.

The integer accumulators are pre-activation values: they must be compared with the Keras
layer's output before its activation, so a model whose emulation is exact reports
``accumulators_exact`` whatever activations its layers fuse. The teacher-forced comparison
keeps the emulator's input quantizer apart from its kernels.
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


def _ternary_input_model() -> tf.keras.Model:
    init = tf.keras.initializers.RandomUniform(-0.5, 0.5, seed=5)
    inputs = tf.keras.Input((4, 4, 2))
    x = lq.layers.QuantConv2D(
        6,
        2,
        kernel_initializer=init,
        input_quantizer=Ternary(0.25),
        kernel_quantizer=Ternary(0.1),
        name="conv",
    )(inputs)
    x = tf.keras.layers.Flatten()(x)
    x = lq.layers.QuantDense(
        3, kernel_initializer=init, input_quantizer="ste_sign", kernel_quantizer="ste_sign"
    )(x)
    return tf.keras.Model(inputs, x)


@pytest.mark.parametrize(
    "broken, at_threshold",
    [
        (lambda x, q: np.where(np.abs(x) >= q.delta, np.sign(x), 0).astype(np.int8), True),
        (lambda x, q: -np.sign(x).astype(np.int8), False),
    ],
    ids=["ge-instead-of-gt", "negated"],
)
def test_teacher_forced_separates_quantizer_from_kernel(broken, at_threshold, monkeypatch):
    """Teacher-forced, a wrong input quantizer in the emulator leaves the accumulators exact
    (both sides are fed TensorFlow's quantization of Keras' input) and is counted on its own:
    a disagreement only at ``|x| == Δ`` (values exactly at the threshold: multiples of 1/4,
    Δ = 0.25) as at a threshold, a plain one as a mismatch."""
    import hw_sim.emulate

    model = _ternary_input_model()
    graph = from_keras_model(model)
    x = (np.random.default_rng(1).integers(-8, 9, (5, 4, 4, 2)) / 4).astype(np.float32)
    assert np.any(np.abs(x) == 0.25)
    true = hw_sim.emulate.apply_quantizer
    monkeypatch.setattr(
        hw_sim.emulate,
        "apply_quantizer",
        lambda x, q: broken(np.asarray(x, np.float32), q) if q.kind == "ternary" else true(x, q),
    )
    forced = compare_with_keras(model, Emulator(graph), x)[0]["teacher_forced"]
    conv = forced["layers"]["conv"]
    assert conv["kind"] == "integer" and conv["exact"], conv
    assert forced["accumulators_exact"]
    if at_threshold:
        assert conv["quantizer_at_threshold"] == np.count_nonzero(np.abs(x) == 0.25) > 0
        assert conv["quantizer_mismatches"] == 0 and forced["agrees"]
    else:
        assert conv["quantizer_mismatches"] > 0 and not forced["agrees"]
