"""The Keras loader's converters (hw_sim/loaders/keras.py): the IR each layer type becomes.

Checked on the IR itself (kinds, shapes, groups, kernel layout) with a small numpy reference
convolution, independent of hw_sim's emulator.
"""

import re

import larq as lq
import numpy as np
import pytest
import tensorflow as tf

from hw_sim.errors import HwSimError
from hw_sim.loaders.keras import from_keras_model
from keras_ternary import Ternary

L = tf.keras.layers


def grouped_conv(x: np.ndarray, op) -> np.ndarray:
    """Reference conv2d of an IR op on ``x`` (N, H, W, C): explicit padding, groups, scale, bias."""
    top, bottom, left, right = op.padding
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=op.pad_value)
    w = op.weights.astype(np.float64)
    if op.weight_scale is not None:
        w = w * op.weight_scale
    kh, kw, c_group, c_out = w.shape
    out_group = c_out // op.groups
    sh, sw = op.strides
    h_out = (xp.shape[1] - kh) // sh + 1
    w_out = (xp.shape[2] - kw) // sw + 1
    out = np.zeros((x.shape[0], h_out, w_out, c_out))
    for g in range(op.groups):
        xs = xp[..., g * c_group : (g + 1) * c_group]
        ws = w[..., g * out_group : (g + 1) * out_group]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, i : i + h_out * sh : sh, j : j + w_out * sw : sw, :]
                out[..., g * out_group : (g + 1) * out_group] += patch @ ws[i, j]
    return out + (0.0 if op.bias is None else op.bias)


def _outputs(model, name: str, x: np.ndarray) -> np.ndarray:
    return tf.keras.Model(model.input, model.get_layer(name).output)(x).numpy()


def _x(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(2, *shape)).astype(np.float32)


def _quant_head(x):
    return lq.layers.QuantConv2D(2, 1, kernel_quantizer="ternary", name="head")(x)


@pytest.mark.parametrize("quantized", [False, True])
def test_depthwise_is_grouped_conv_in_tensorflow_channel_order(quantized):
    x_in = tf.keras.Input((7, 7, 3))
    if quantized:
        layer = lq.layers.QuantDepthwiseConv2D(
            3, strides=2, padding="same", depth_multiplier=2,
            depthwise_quantizer=Ternary(0.05), use_bias=True, bias_initializer="glorot_uniform",
            name="dw",
        )  # fmt: skip
    else:
        layer = L.DepthwiseConv2D(
            3, strides=2, padding="same", depth_multiplier=2,
            bias_initializer="glorot_uniform", name="dw",
        )  # fmt: skip
    model = tf.keras.Model(x_in, _quant_head(layer(x_in)))
    op = from_keras_model(model).op("dw")
    assert (op.kind, op.groups, op.weights.shape, op.output_shape) == (
        "conv2d", 3, (3, 3, 1, 6), (4, 4, 6),
    )  # fmt: skip
    assert op.is_depthwise and op.fan_in == 9
    assert op.weight_precision == ("ternary" if quantized else "float32")
    x = _x((7, 7, 3))
    np.testing.assert_allclose(grouped_conv(x, op), _outputs(model, "dw", x), atol=1e-4)


def test_grouped_conv2d():
    x_in = tf.keras.Input((5, 5, 4))
    conv = lq.layers.QuantConv2D(6, 3, groups=2, kernel_quantizer=Ternary(0.05), name="g")
    model = tf.keras.Model(x_in, conv(x_in))
    op = from_keras_model(model).op("g")
    assert (op.groups, op.weights.shape, op.is_depthwise) == (2, (3, 3, 2, 6), False)
    x = _x((5, 5, 4))
    np.testing.assert_allclose(grouped_conv(x, op), model(x).numpy(), atol=1e-4)


def test_separable_is_depthwise_then_pointwise():
    x_in = tf.keras.Input((6, 6, 3))
    sep = lq.layers.QuantSeparableConv2D(
        5, 3, depth_multiplier=2, padding="same", strides=2, activation="relu",
        depthwise_quantizer=Ternary(0.05), pointwise_quantizer=Ternary(0.05),
        bias_initializer="glorot_uniform", name="sep",
    )  # fmt: skip
    model = tf.keras.Model(x_in, sep(x_in))
    graph = from_keras_model(model)
    dw, pw = graph.op("sep/depthwise"), graph.op("sep")
    assert pw.inputs == ["sep/depthwise"] and graph.outputs == ["sep"]
    assert (dw.groups, dw.weights.shape, dw.output_shape, dw.bias, dw.activation) == (
        3, (3, 3, 1, 6), (3, 3, 6), None, "linear",
    )  # fmt: skip
    assert (pw.groups, pw.weights.shape, pw.strides, pw.activation) == (
        1,
        (1, 1, 6, 5),
        (1, 1),
        "relu",
    )
    assert pw.bias is not None and pw.input_quantizer is None
    x = _x((6, 6, 3))
    expect = np.maximum(grouped_conv(grouped_conv(x, dw), pw), 0.0)
    np.testing.assert_allclose(expect, model(x).numpy(), atol=1e-4)


def _two_branches(merge, shape=(4, 4, 3)):
    x_in = tf.keras.Input(shape)
    a = lq.layers.QuantConv2D(4, 1, kernel_quantizer="ternary", name="a")(x_in)
    b = lq.layers.QuantConv2D(4, 1, kernel_quantizer="ternary", name="b")(x_in)
    return tf.keras.Model(x_in, merge(a, b))


@pytest.mark.parametrize(
    ("merge", "kind"),
    [
        (lambda a, b: a + b, "add"),
        (lambda a, b: tf.math.add(a, b), "add"),
        (lambda a, b: a * b, "multiply"),
        (lambda a, b: a - b, "subtract"),
        (lambda a, b: tf.math.subtract(a, b), "subtract"),
        (lambda a, b: L.Subtract()([a, b]), "subtract"),
        (lambda a, b: L.Multiply()([a, b]), "multiply"),
        (lambda a, b: L.Add()([a, b]), "add"),
        (lambda a, b: L.Concatenate()([a, b]), "concat"),
        (lambda a, b: tf.concat([a, b], axis=-1), "concat"),
    ],
)
def test_merges_and_tf_operators(merge, kind):
    graph = from_keras_model(_two_branches(merge))
    op = graph.op(graph.outputs[0])
    assert (op.kind, op.inputs) == (kind, ["a", "b"])
    assert op.output_shape == ((4, 4, 8) if kind == "concat" else (4, 4, 4))


@pytest.mark.parametrize(
    ("merge", "why"),
    [
        (lambda a, b: a + 1.0, r"constant operand"),
        (lambda a, b: tf.concat([a, b], axis=1), r"axis 1 \(only the channel axis"),
        (lambda a, b: L.Concatenate(axis=1)([a, b]), r"axis 1 \(only the channel axis"),
        (lambda a, b: a[:, :, :, :2], r"TF function"),
    ],
)
def test_refused_merges_name_the_layer_in_one_line(merge, why):
    with pytest.raises(HwSimError, match=rf"^layer '[^']+' \([A-Za-z]+[^)]*\): [^\n]*{why}[^\n]*$"):
        from_keras_model(_two_branches(merge))


def _single(layer, shape=(4, 4, 3)):
    x_in = tf.keras.Input(shape)
    x = lq.layers.QuantConv2D(4, 1, kernel_quantizer="ternary", name="a")(x_in)
    graph = from_keras_model(tf.keras.Model(x_in, layer(x)))
    return graph.op(graph.outputs[0])


def test_padding_reshape_and_activation_layers():
    pad = _single(L.ZeroPadding2D(((1, 2), (0, 3))))
    assert (pad.kind, pad.padding, pad.pad_value, pad.output_shape) == (
        "pad", (1, 2, 0, 3), 0.0, (7, 7, 4),
    )  # fmt: skip
    reshape = _single(L.Reshape((16, 4)))
    assert (reshape.kind, reshape.output_shape) == ("reshape", (16, 4))
    assert _single(lambda x: tf.reshape(x, (-1, 64))).kind == "reshape"
    assert _single(L.Flatten()).kind == "flatten"
    relu6 = _single(L.ReLU(max_value=6.0))
    assert (relu6.kind, relu6.activation) == ("activation", "relu6")
    leaky = _single(L.LeakyReLU(0.25))
    assert (leaky.kind, leaky.extra["alpha"]) == ("prelu", 0.25)
    slope = _single(L.ReLU(negative_slope=0.1))
    assert (slope.kind, slope.extra["alpha"]) == ("prelu", pytest.approx(0.1))
    prelu = _single(L.PReLU(alpha_initializer="glorot_uniform", shared_axes=[1, 2]))
    assert prelu.kind == "prelu" and prelu.extra["alpha"].shape == (1, 1, 4)
    with pytest.raises(HwSimError, match=r"^layer '[^']+' \(ReLU\): thresholded"):
        _single(L.ReLU(threshold=0.5))


def test_docs_list_every_registered_converter():
    from pathlib import Path

    from hw_sim.loaders import keras

    text = " ".join(Path("docs/hw_sim.md").read_text(encoding="utf-8").split())
    hidden = {"TFOpLambda", "SlicingOpLambda", *keras._IDENTITY_LAYERS}
    for name in sorted(set(keras._CONVERTERS) - hidden) + sorted(keras._TF_FUNCTIONS):
        assert re.search(rf"(?<![\w.]){re.escape(name)}(?![\w.])", text), name
