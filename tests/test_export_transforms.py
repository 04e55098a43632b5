"""Each export rewrite on its own, on a tiny model: same function, expected structure."""

from __future__ import annotations

import larq as lq
import numpy as np
import pytest
import tensorflow as tf

from keras_ternary import Ternary
from keras_ternary.activations import HardTanh
from keras_ternary.export.graph import ConfigGraph, ExportError
from keras_ternary.export.transforms import (
    CUSTOM_OBJECTS,
    ConstantKernel,
    ConvBatchNormFold,
    FoldLog,
    InputQuantizerSplit,
    RangeClipInsert,
    ResidualBatchNormPushBack,
    Transform,
    is_ternary,
)

TOL = {"rtol": 1e-5, "atol": 1e-5}


def rewrite(model: tf.keras.Model, *transforms: Transform) -> tuple[tf.keras.Model, FoldLog]:
    graph, log = ConfigGraph.from_model(model), FoldLog()
    for transform in transforms:
        transform(graph, log)
    return graph.build(CUSTOM_OBJECTS), log


def images(n: int = 8, scale: float = 1.0, seed: int = 0) -> np.ndarray:
    return scale * np.random.default_rng(seed).normal(size=(n, 6, 6, 3)).astype("float32")


def bn(name: str, seed: int) -> tf.keras.layers.BatchNormalization:
    """A batch-norm that :func:`model` gives non-trivial statistics (negative γ included)."""
    layer = tf.keras.layers.BatchNormalization(name=name)
    layer.seed = seed
    return layer


def model_of(inputs: tf.Tensor, outputs: tf.Tensor) -> tf.keras.Model:
    """The functional model, its batch-norms' statistics drawn from their seeds."""
    model = tf.keras.Model(inputs, outputs)
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            rng, c = np.random.default_rng(layer.seed), layer.gamma.shape[0]
            gamma = rng.uniform(0.5, 1.5, c) * rng.choice([-1, 1], c)
            var = rng.uniform(0.5, 2.0, c)
            layer.set_weights([gamma, rng.normal(0, 0.3, c), rng.normal(0, 0.3, c), var])
    return model


def layer_names(model: tf.keras.Model) -> dict[str, str]:
    return {x.name: type(x).__name__ for x in model.layers}


def test_input_quantizer_split():
    inputs = tf.keras.Input((6, 6, 3))
    x = tf.keras.layers.Flatten(name="flat")(inputs)
    out = lq.layers.QuantDense(4, input_quantizer="ste_sign", name="fc")(x)
    model = tf.keras.Model(inputs, out)
    graph, log = ConfigGraph.from_model(model), FoldLog()
    InputQuantizerSplit()(graph, log)
    assert graph["fc"].inputs == ["fc_input_quantizer"]
    assert graph["fc_input_quantizer"].inputs == ["flat"]
    assert graph["fc_input_quantizer"].class_name == "QuantizerLayer"
    ConstantKernel()(graph, log)  # drops the layer's own input quantizer
    new = graph.build(CUSTOM_OBJECTS)
    x = images()
    np.testing.assert_allclose(new(x).numpy(), model(x).numpy(), **TOL)
    assert log.kernels == {}  # no kernel quantizer: nothing to record


def test_constant_kernel():
    inputs = tf.keras.Input((6, 6, 3))
    x = lq.layers.QuantConv2D(4, 3, kernel_quantizer=Ternary(0.05), name="conv")(inputs)
    x = tf.keras.layers.Flatten()(x)
    out = tf.keras.layers.Dense(2, name="fc")(x)  # a plain layer stays a plain layer
    model = tf.keras.Model(inputs, out)
    new, log = rewrite(model, ConstantKernel())
    assert layer_names(new)["conv"] == "Conv2D" and layer_names(new)["fc"] == "Dense"
    assert list(log.kernels) == ["conv"]
    record = log.kernels["conv"]
    assert record.kind == "ternary" and is_ternary(record.ternary)
    np.testing.assert_array_equal(record.scale, np.ones(4, np.float32))
    np.testing.assert_array_equal(new.get_layer("conv").get_weights()[0], record.ternary)
    np.testing.assert_allclose(new(images()).numpy(), model(images()).numpy(), **TOL)


def test_constant_kernel_moves_pad_values_into_a_constant_pad():
    inputs = tf.keras.Input((6, 6, 3))
    conv = lq.layers.QuantConv2D(
        4, 3, padding="same", pad_values=1.0, kernel_quantizer="ste_sign", name="conv"
    )
    model = model_of(inputs, conv(inputs))
    new, _ = rewrite(model, ConstantKernel())
    assert list(layer_names(new).values())[1:] == ["ConstantPad", "Conv2D"]
    assert list(layer_names(new))[1:] == ["conv_pad", "conv"]
    assert new.get_layer("conv").get_config()["padding"] == "valid"
    x = images()
    np.testing.assert_allclose(new(x), model(x), rtol=1e-5, atol=1e-5)


def test_constant_kernel_rejects_pad_values_it_cannot_move():
    inputs = tf.keras.Input((6, 6, 3))
    out = lq.layers.QuantConv2D(4, 3, padding="same", pad_values=1.0, dilation_rate=2, name="conv")(
        inputs
    )
    with pytest.raises(ExportError, match="pad_values != 0 is supported by export only"):
        rewrite(tf.keras.Model(inputs, out), ConstantKernel())


def test_conv_batchnorm_fold():
    inputs = tf.keras.Input((6, 6, 3))
    a = tf.keras.layers.Conv2D(4, 3, use_bias=False, name="conv")(inputs)
    a = bn("bn", 1)(a)
    b = tf.keras.layers.Conv2D(4, 3, activation="relu", name="relu_conv")(inputs)
    b = bn("bn_after_relu", 2)(b)  # not linear before the BN: stays
    c = tf.keras.layers.Conv2D(4, 3, name="shared")(inputs)
    c = tf.keras.layers.Add(name="add")([bn("bn_shared", 3)(c), c])  # conv used twice: stays
    model = model_of(inputs, tf.keras.layers.Concatenate()([a, b, c]))
    new, log = rewrite(model, ConvBatchNormFold())
    assert log.folded == {"bn": "conv"}
    names = layer_names(new)
    assert "bn" not in names and {"bn_after_relu", "bn_shared"} <= set(names)
    assert new.get_layer("conv").use_bias
    for scale in (1.0, 10.0):
        x = images(scale=scale)
        np.testing.assert_allclose(new(x).numpy(), model(x, training=False).numpy(), **TOL)


def residual_block(pooled: bool = False) -> tf.keras.Model:
    """hard-tanh → [conv branch, identity] → add → (pool →) BN → hard-tanh → dense."""
    inputs = tf.keras.Input((6, 6, 3))
    h = HardTanh(name="tanh0")(tf.keras.layers.Conv2D(4, 3, padding="same", name="conv0")(inputs))
    x = tf.keras.layers.Conv2D(4, 3, padding="same", name="conv1")(h)
    x = tf.keras.layers.Add(name="add")([x, h])
    if pooled:
        x = tf.keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = HardTanh(name="tanh1")(bn("bn", 5)(x))
    out = tf.keras.layers.Dense(2, name="fc")(tf.keras.layers.Flatten(name="flat")(x))
    return model_of(inputs, out)


@pytest.mark.parametrize("pooled", [False, True])
def test_residual_batchnorm_push_back(pooled):
    model = residual_block(pooled)
    new, log = rewrite(model, ResidualBatchNormPushBack())
    (fold,) = log.residual
    assert (fold.bn, fold.add, fold.via) == ("bn", "add", "pool" if pooled else None)
    assert fold.branches == [("conv1", "folded"), ("bn_scale1", "scaled")]
    assert fold.shift_branch == "conv1" and fold.clips == []
    names = layer_names(new)
    assert "bn" not in names and names["bn_scale1"] == "DepthwiseConv2D"
    assert new.get_layer("add").input[1].node.layer.name == "bn_scale1"
    for scale in (1.0, 10.0):
        x = images(scale=scale)
        np.testing.assert_allclose(new(x).numpy(), model(x, training=False).numpy(), **TOL)


def test_residual_batchnorm_stays_without_a_depthwise_layer():
    """A 2-D sum with an identity branch has no depthwise layer to hold the scale."""
    inputs = tf.keras.Input((4,))
    x = tf.keras.layers.Add(name="add")([tf.keras.layers.Dense(4, name="d")(inputs), inputs])
    model = model_of(inputs, bn("bn", 6)(x))
    new, log = rewrite(model, ResidualBatchNormPushBack())
    assert log.residual == [] and "bn" in layer_names(new)


@pytest.mark.parametrize("pooled", [False, True])
def test_range_clip_insert(pooled):
    model = residual_block(pooled)
    new, log = rewrite(model, ResidualBatchNormPushBack(), RangeClipInsert())
    (fold,) = log.residual
    clips = {x.name: x for x in new.layers if type(x).__name__ == "RangeClip"}
    if pooled:  # the pooled sum, just wider than the hard-tanh after it
        assert fold.clips == ["bn_clip"] and set(clips) == {"bn_clip"}
        assert clips["bn_clip"].bound == 1.0 + 2.0**-6
        assert new.get_layer("tanh1").input.node.layer.name == "bn_clip"
    else:  # the folded branch, by 1 + the peak of the scaled identity branch
        assert fold.clips == ["bn_clip0"] and set(clips) == {"bn_clip0"}
        (scale,) = new.get_layer("bn_scale1").get_weights()  # the shift went to conv1
        assert np.isclose(clips["bn_clip0"].bound, 1.0 + np.max(np.abs(scale)))
        assert new.get_layer("add").input[0].node.layer.name == "bn_clip0"
    for scale in (1.0, 50.0):  # 50: the clips saturate, the result must not change
        x = images(scale=scale)
        np.testing.assert_allclose(new(x).numpy(), model(x, training=False).numpy(), **TOL)


def test_range_clip_insert_needs_bounded_branches_and_a_fold():
    model = residual_block()
    new, log = rewrite(model, RangeClipInsert())  # nothing pushed back: nothing to clip
    assert log.residual == [] and "RangeClip" not in layer_names(new).values()
    inputs = tf.keras.Input((6, 6, 3))  # branch input not a hard-tanh: bound unknown
    h = tf.keras.layers.Conv2D(4, 3, padding="same", name="conv0")(inputs)
    x = tf.keras.layers.Add(name="add")([tf.keras.layers.Conv2D(4, 1, name="conv1")(h), h])
    model = model_of(inputs, HardTanh(name="tanh1")(bn("bn", 7)(x)))
    new, log = rewrite(model, ResidualBatchNormPushBack(), RangeClipInsert())
    assert [f.clips for f in log.residual] == [[]]
    np.testing.assert_allclose(new(images()).numpy(), model(images()).numpy(), **TOL)
