"""The quantized-weights table (keras_ternary/layer_table.py): stats and DeltaGrowth use it."""

import larq as lq
import numpy as np
import pytest
import tensorflow as tf

from keras_ternary import DeltaGrowth, Ternary, layer_table
from keras_ternary.callbacks import find_ternary_quantizers
from keras_ternary.layer_table import (
    LAYER_WEIGHTS,
    kernel_op_names,
    kernel_weights,
    layer_of_earlier_kernel_op,
)
from keras_ternary.stats import quantized_kernels, ternary_stats
from tests.helpers import tiny_data

L = tf.keras.layers


def _depthwise_model() -> tf.keras.Model:
    """A QuantDepthwiseConv2D and a QuantSeparableConv2D with Ternary kernels, a QuantDense."""
    x_in = tf.keras.Input((8, 8, 3))
    x = lq.layers.QuantDepthwiseConv2D(
        3, depth_multiplier=2, depthwise_quantizer=Ternary(0.05), use_bias=False, name="dw"
    )(x_in)
    x = lq.layers.QuantSeparableConv2D(
        4, 3, depthwise_quantizer=Ternary(0.05), pointwise_quantizer=Ternary(0.05), name="sep"
    )(x)
    x = L.GlobalAveragePooling2D()(x)
    return tf.keras.Model(x_in, lq.layers.QuantDense(10, kernel_quantizer=Ternary(0.05))(x))


def test_table_is_found_through_the_class_hierarchy():
    assert (
        kernel_weights(lq.layers.QuantDepthwiseConv2D(3)) == LAYER_WEIGHTS["QuantDepthwiseConv2D"]
    )
    assert [w.kernel_attr for w in kernel_weights(L.SeparableConv2D(2, 3))] == [
        "depthwise_kernel",
        "pointwise_kernel",
    ]
    assert [w.kernel_attr for w in kernel_weights(L.Conv2DTranspose(2, 3))] == ["kernel"]
    assert kernel_weights(L.BatchNormalization()) == ()


def test_stats_count_depthwise_and_separable_kernels():
    model = _depthwise_model()
    stats = ternary_stats(model, histogram=False)
    by_name = {s.name: s for s in stats.layers}
    assert set(by_name) == {
        "dw",
        "sep/depthwise_kernel",
        "sep/pointwise_kernel",
        model.layers[-1].name,
    }
    assert by_name["dw"].n_weights == 3 * 3 * 3 * 2
    assert by_name["sep/pointwise_kernel"].n_weights == 6 * 4
    dw = model.get_layer("dw")
    q = np.asarray(dw.depthwise_quantizer(tf.constant(dw.depthwise_kernel.numpy())))
    assert by_name["dw"].n_zero == int((q == 0).sum())
    # the (layer, kernel_quantizer) view keeps to ``kernel`` attributes
    assert [layer.name for layer, _ in quantized_kernels(model)] == [model.layers[-1].name]


def test_delta_growth_drives_depthwise_quantizers():
    model = _depthwise_model()
    found = find_ternary_quantizers(model)
    assert model.get_layer("dw").depthwise_quantizer in found
    assert len(found) == 4
    x, y = tiny_data()
    model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(
        x, y, epochs=2, batch_size=32, verbose=0, callbacks=[DeltaGrowth("linear", 0.1, 1.0, 0.9)]
    )
    assert float(model.get_layer("dw").depthwise_quantizer.delta) == pytest.approx(0.3)
    assert len(history.history["sparsity"]) == 2


def test_a_layer_outside_the_table_with_larq_attributes_has_its_kernel():
    class Custom:  # neither a Keras nor a larq class: found by larq's attribute names
        kernel = "k"
        kernel_quantizer = "q"

    assert [(w.kernel_attr, k, q) for w, k, q in layer_table.quantized_weights(Custom())] == [
        ("kernel", "k", "q")
    ]
    assert layer_table.kernel_weights(object()) == ()


def test_layer_of_earlier_kernel_op_inverts_kernel_op_names() -> None:
    for class_name, weights in LAYER_WEIGHTS.items():
        names = kernel_op_names("block/sep", weights)
        assert [layer_of_earlier_kernel_op(n) for n in names] == [
            "block/sep" if i < len(names) - 1 else None for i in range(len(names))
        ], class_name
    for name in ("conv", "depthwise", "/depthwise", "dw/pointwise", "a/kernel"):
        assert layer_of_earlier_kernel_op(name) is None, name
