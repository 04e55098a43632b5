"""Export of ``QuantSeparableConv2D`` and binary / multiplier depthwise kernels (#15).

A tiny seeded model exports to float, int8 and int16x8 .tflite files that profile in hw_sim like its
.h5 (same ops, names, MACs, zero weights and energy per layer), keep every kernel exact,
and (float) compute what Keras computes.
"""

from __future__ import annotations

import larq as lq
import numpy as np
import pytest
import tensorflow as tf

import keras_ternary as kt
from hw_sim import load_graph, profile_model
from keras_ternary.contract.metadata import METADATA_NAME, ExportMetadata
from keras_ternary.export import to_tflite
from keras_ternary.export.flatbuffer import read_metadata
from keras_ternary.export.tflite import predict_tflite
from tests.helpers import random_batchnorms

_KERNELS = {"conv", "sep/depthwise", "sep", "bsep/depthwise", "bsep", "bdw", "fc"}


def _model(binary_inputs: bool = True) -> tf.keras.Model:
    """The test model; ``binary_inputs``: ``bsep`` binarizes its inputs (``ste_sign``)."""
    tf.keras.utils.set_random_seed(7)
    inputs = tf.keras.Input((8, 8, 3))
    x = lq.layers.QuantConv2D(
        4, 3, padding="same", use_bias=False, kernel_quantizer=kt.Ternary(0.05), name="conv"
    )(inputs)
    x = tf.keras.layers.BatchNormalization(name="bn1")(x)
    # ternary depthwise (multiplier 2) and pointwise kernels, batch-norm folded into pointwise
    x = lq.layers.QuantSeparableConv2D(
        6,
        3,
        padding="same",
        depth_multiplier=2,
        use_bias=False,
        depthwise_quantizer=kt.Ternary(0.05),
        pointwise_quantizer=kt.Ternary(0.05),
        name="sep",
    )(x)
    x = tf.keras.layers.BatchNormalization(name="bn2")(x)
    # binary inputs and kernels, a bias and a fused activation, stride 2
    x = lq.layers.QuantSeparableConv2D(
        8,
        3,
        strides=2,
        padding="same",
        input_quantizer="ste_sign" if binary_inputs else None,
        depthwise_quantizer="ste_sign",
        pointwise_quantizer="ste_sign",
        activation="relu",
        name="bsep",
    )(x)
    # binary depthwise kernel with depth multiplier 2, batch-norm folded per channel
    x = lq.layers.QuantDepthwiseConv2D(
        3,
        padding="same",
        depth_multiplier=2,
        use_bias=False,
        depthwise_quantizer="ste_sign",
        name="bdw",
    )(x)
    x = tf.keras.layers.BatchNormalization(name="bn3")(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    outputs = lq.layers.QuantDense(5, kernel_quantizer=kt.Ternary(0.05), name="fc")(x)
    model = tf.keras.Model(inputs, outputs)
    random_batchnorms(model, ("bn1", "bn2", "bn3"), seed=3)
    return model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("separable")
    model, float_inputs = _model(), _model(binary_inputs=False)
    model.save(tmp / "sep.h5")
    float_inputs.save(tmp / "sep_int16x8.h5")  # TFLite has no 16x8 SIGN: no binary inputs
    x = np.random.default_rng(0).normal(size=(8, 8, 8, 3)).astype("float32")
    results = {
        "float": to_tflite(model, tmp / "sep_float.tflite", "float"),
        "int8": to_tflite(model, tmp / "sep_int8.tflite", "int8", x),
        "int16x8": to_tflite(float_inputs, tmp / "sep_int16x8.tflite", "int16x8", x),
    }
    return tmp, model, x, results


@pytest.mark.parametrize("mode", ["float", "int8", "int16x8"])
def test_separable_kernels_exact_and_metadata(files, mode):
    tmp, _, _, results = files
    result = results[mode]
    assert {k.layer for k in result.kernels} == _KERNELS
    assert result.all_exact, [k for k in result.kernels if not k.exact]
    if mode != "float":  # int16x8 keeps int8 weights
        assert all(k.dtype == "INT8" and set(k.levels) <= {127} for k in result.kernels)
    assert result.folded == {"bn1": "conv", "bn2": "sep", "bn3": "bdw"}
    metadata = ExportMetadata.from_json(read_metadata(tmp / f"sep_{mode}.tflite", METADATA_NAME))
    meta = {layer.name: layer for layer in metadata.layers}
    assert list(meta) == ["conv", "sep/depthwise", "sep", "bsep/depthwise", "bsep", "bdw", "fc"]
    assert meta["sep/depthwise"].layer == "sep" and meta["sep"].layer is None
    assert meta["sep/depthwise"].folded_bn is None and meta["sep"].folded_bn == "bn2"
    assert meta["sep"].negative_channels  # bn2's negative scales moved into t
    assert meta["bsep/depthwise"].use_bias is False and meta["bsep"].use_bias is True
    assert {meta[n].quantizer for n in ("bsep/depthwise", "bsep", "bdw")} == {"binary"}
    assert metadata.batchnorms == []


@pytest.mark.parametrize("mode", ["float", "int8", "int16x8"])
def test_separable_profiles_like_its_h5(files, mode):
    tmp, _, _, _ = files
    h5 = "sep_int16x8.h5" if mode == "int16x8" else "sep.h5"
    g_h5, g_t = load_graph(tmp / h5), load_graph(tmp / f"sep_{mode}.tflite")
    assert g_t.op("sep/depthwise").groups == g_h5.op("sep/depthwise").groups == 4
    assert g_t.op("bdw").groups == 8
    quantizer = g_t.op("bsep/depthwise").input_quantizer  # on the first of the two ops
    assert (quantizer and quantizer.kind) == (None if mode == "int16x8" else "sign")
    assert g_t.op("bsep").input_quantizer is None
    fields = ("name", "kind", "weight_precision", "groups", "output_shape")
    ops_h5 = [tuple(getattr(op, f) for f in fields) for op in g_h5.compute_ops]
    assert ops_h5 == [tuple(getattr(op, f) for f in fields) for op in g_t.compute_ops]
    for a, b in zip(g_h5.compute_ops, g_t.compute_ops, strict=True):
        np.testing.assert_array_equal(a.weights, b.weights, err_msg=a.name)
    for accelerator in ("bitwise", "zeroskip"):
        h5, tfl = profile_model(g_h5, accelerator), profile_model(g_t, accelerator)
        rows_h5 = {r["name"]: r for r in h5["layers"]}
        rows_t = {r["name"]: r for r in tfl["layers"]}
        # the .tflite loader reads bsep's fused ReLU as an op of its own; Keras' keeps it in bsep
        relu = rows_t.pop("bsep_activation")
        assert rows_h5.keys() == rows_t.keys()
        for name, row in rows_h5.items():
            keys = ("op", "macs", "weights", "zero_weights")
            assert tuple(row[k] for k in keys) == tuple(rows_t[name][k] for k in keys), name
            energy = dict(rows_t[name]["energy_pj"])
            if name == "bsep":
                energy = {k: v + relu["energy_pj"][k] for k, v in energy.items()}
            assert energy == pytest.approx(row["energy_pj"], rel=1e-9), name
        assert tfl["total"]["energy_pj"] == pytest.approx(h5["total"]["energy_pj"], rel=1e-9)


def test_separable_float_tflite_matches_keras(files):
    tmp, model, x, _ = files
    expected = model.predict(x, verbose=0)
    got = predict_tflite(tmp / "sep_float.tflite", x)
    # float32 sums of at most 72 terms: differences of order 1e-6, far below the tolerance
    np.testing.assert_allclose(got, expected, atol=1e-4 * max(1.0, np.abs(expected).max()))
