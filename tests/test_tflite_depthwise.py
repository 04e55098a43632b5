"""Export of a ternary ``QuantDepthwiseConv2D`` (#15): exports, profiles like its .h5, runs."""

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


def _model() -> tf.keras.Model:
    tf.keras.utils.set_random_seed(5)
    inputs = tf.keras.Input((8, 8, 4))
    x = lq.layers.QuantConv2D(
        8, 3, padding="same", use_bias=False, kernel_quantizer=kt.Ternary(0.05), name="conv"
    )(inputs)
    x = tf.keras.layers.BatchNormalization(name="bn1")(x)
    x = lq.layers.QuantDepthwiseConv2D(
        3, padding="same", use_bias=False, depthwise_quantizer=kt.Ternary(0.05), name="dw"
    )(x)
    x = tf.keras.layers.BatchNormalization(name="bn2")(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    outputs = lq.layers.QuantDense(5, kernel_quantizer=kt.Ternary(0.05), name="fc")(x)
    model = tf.keras.Model(inputs, outputs)
    random_batchnorms(model, ("bn1", "bn2"), seed=1)
    return model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("depthwise")
    model = _model()
    model.save(tmp / "dw.h5")
    x = np.random.default_rng(0).normal(size=(8, 8, 8, 4)).astype("float32")
    results = {
        "float": to_tflite(model, tmp / "dw_float.tflite", "float"),
        "int8": to_tflite(model, tmp / "dw_int8.tflite", "int8", x),
    }
    return tmp, model, x, results


@pytest.mark.parametrize("mode", ["float", "int8"])
def test_depthwise_exports_and_profiles_like_its_h5(files, mode):
    tmp, _, _, results = files
    result = results[mode]
    assert result.all_exact and {k.layer for k in result.kernels} == {"conv", "dw", "fc"}
    assert result.folded == {"bn1": "conv", "bn2": "dw"}
    path = tmp / f"dw_{mode}.tflite"
    metadata = ExportMetadata.from_json(read_metadata(path, METADATA_NAME))
    meta = {layer.name: layer for layer in metadata.layers}
    assert list(meta) == ["conv", "dw", "fc"]
    assert meta["dw"].quantizer == "ternary" and meta["dw"].folded_bn == "bn2"
    assert meta["dw"].negative_channels  # bn2 has negative scales: the sign moved into t
    assert metadata.batchnorms == []
    g_h5, g_t = load_graph(tmp / "dw.h5"), load_graph(tmp / f"dw_{mode}.tflite")
    assert g_t.op("dw").groups == g_h5.op("dw").groups == 8
    for a, b in zip(g_h5.compute_ops, g_t.compute_ops, strict=True):
        assert (a.name, a.weight_precision, a.groups) == (b.name, b.weight_precision, b.groups)
    for accelerator in ("bitwise", "zeroskip"):
        h5, tfl = profile_model(g_h5, accelerator), profile_model(g_t, accelerator)
        rows_h5 = {r["name"]: r for r in h5["layers"]}
        rows_t = {r["name"]: r for r in tfl["layers"]}
        assert rows_h5.keys() == rows_t.keys()
        for name, row in rows_h5.items():
            keys = ("op", "macs", "weights", "zero_weights")
            assert tuple(row[k] for k in keys) == tuple(rows_t[name][k] for k in keys), name


def test_depthwise_float_tflite_matches_keras(files):
    tmp, model, x, _ = files
    expected = model.predict(x, verbose=0)
    got = predict_tflite(tmp / "dw_float.tflite", x)
    np.testing.assert_allclose(got, expected, atol=1e-4)
