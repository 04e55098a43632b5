"""Export -> profile round trips: every exporter mode loads in hw_sim like its .h5 (#15)."""

from __future__ import annotations

import numpy as np
import pytest

from hw_sim import HwSimError, load_graph, profile_model
from keras_ternary import resnet20_star
from keras_ternary.export import to_tflite

ACCELERATORS = ("bitwise", "zeroskip")
# model variant -> resnet20_star keyword arguments
VARIANTS = {
    "ternary": {},
    "binary_in_sign": {"quantizer": "binary", "input_quantizer": "ste_sign"},
    "float_first_last": {"input_quantizer": "ternary", "quantize_first_last": False},
}
# export modes; int16x8 cannot convert SIGN (TFLite), so only models without input quantizers
MODES = ("int8", "float", "int16x8")
CASES = [(v, m) for v in VARIANTS for m in MODES if m != "int16x8" or v == "ternary"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("roundtrip")
    x = np.random.default_rng(0).normal(size=(8, 8, 8, 3)).astype("float32")
    for variant, kwargs in VARIANTS.items():
        model = resnet20_star(
            inflation=1, blocks_per_stage=1, delta=0.05, seed=3, input_shape=(8, 8, 3), **kwargs
        )
        model.save(tmp / f"{variant}.h5")
        for mode in MODES:
            if (variant, mode) in CASES:
                data = None if mode == "float" else x
                to_tflite(model, tmp / f"{variant}_{mode}.tflite", mode, data)
    return tmp


def _rows(report) -> dict[str, dict]:
    return {r["name"]: r for r in report["layers"]}


@pytest.mark.parametrize(("variant", "mode"), CASES)
def test_exported_tflite_profiles_like_its_h5(files, variant, mode):
    g_h5 = load_graph(files / f"{variant}.h5")
    g_t = load_graph(files / f"{variant}_{mode}.tflite")
    assert sorted(op.name for op in g_h5.ops) == sorted(op.name for op in g_t.ops)
    for a, b in zip(g_h5.compute_ops, g_t.compute_ops, strict=True):
        assert (a.weight_precision, a.act_precision, a.groups) == (
            b.weight_precision,
            b.act_precision,
            b.groups,
        ), a.name
        assert (a.input_quantizer is None) == (b.input_quantizer is None), a.name
        if a.input_quantizer is not None:
            assert a.input_quantizer.kind == b.input_quantizer.kind
    for accelerator in ACCELERATORS:
        h5, tfl = profile_model(g_h5, accelerator), profile_model(g_t, accelerator)
        rows_h5, rows_t = _rows(h5), _rows(tfl)
        assert rows_h5.keys() == rows_t.keys()
        for name, row in rows_h5.items():
            other = rows_t[name]
            assert (row["op"], row["macs"], row["weights"]) == (
                other["op"],
                other["macs"],
                other["weights"],
            ), name
            float_layer = row.get("weight_precision") == "float32"
            if float_layer and mode != "float":
                # the int8 file stores the float kernel rounded to int8: only more zeros
                assert other["zero_weights"] >= row["zero_weights"], name
            else:
                assert row["zero_weights"] == other["zero_weights"], name
        assert h5["total"]["energy_pj"] == pytest.approx(tfl["total"]["energy_pj"], rel=1e-9)


def test_ternary_input_quantizer_keeps_delta(files):
    g = load_graph(files / "float_first_last_float.tflite")
    q = g.op("stage1_block1_conv1").input_quantizer
    assert q.kind == "ternary" and q.delta == pytest.approx(0.05)
    assert g.op("conv1").input_quantizer is None


def test_foreign_tflite_gets_names_from_tensors(tmp_path):
    """A plain Keras model converted by TFLiteConverter, ternary kernels set by hand."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    inputs = tf.keras.Input((8, 8, 3))
    x = tf.keras.layers.Conv2D(4, 3, padding="same", name="stem")(inputs)
    x = tf.keras.layers.ReLU(name="stem_relu")(x)
    x = tf.keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw")(x)
    x = tf.keras.layers.ZeroPadding2D(1, name="zpad")(x)
    x = tf.keras.layers.Conv2D(8, 3, name="body")(x)
    y = tf.keras.layers.Conv2D(8, 1, name="side")(x)
    x = tf.keras.layers.Concatenate(name="cat")([x, y])
    x = tf.keras.layers.GlobalAveragePooling2D(name="gap")(x)
    out = tf.keras.layers.Dense(3, name="classifier")(x)
    model = tf.keras.Model(inputs, out)
    for name in ("dw", "body", "classifier"):
        layer = model.get_layer(name)
        kernel = rng.integers(-1, 2, size=layer.get_weights()[0].shape).astype("float32")
        layer.set_weights([kernel * 0.5, *layer.get_weights()[1:]])
    path = tmp_path / "foreign.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    g = load_graph(path)
    kinds = {op.name: op.kind for op in g.ops}
    for name, kind in [
        ("stem", "conv2d"),
        ("dw", "conv2d"),
        ("body", "conv2d"),
        ("cat", "concat"),
        ("classifier", "dense"),
    ]:
        assert kinds.get(name) == kind, (name, kinds)
    assert g.op("stem").weight_precision == "float32"
    dw = g.op("dw")
    assert dw.groups == 4 and dw.weights.shape == (3, 3, 1, 8) and dw.is_depthwise
    assert dw.weight_precision == "ternary"
    keras_dw = model.get_layer("dw").get_weights()[0]  # (3, 3, 4, 2): channel c·2 + j
    np.testing.assert_array_equal(dw.weights != 0, keras_dw.reshape(3, 3, 1, 8) != 0)
    # the converter may fold ZeroPadding2D into the next convolution's padding
    assert sum(op.padding[0] for op in g.ops if op.name in ("zpad", "body")) == 1
    assert g.op("body").weight_precision == "ternary"
    assert g.op("classifier").weight_precision == "ternary"


def test_unknown_operator_names_the_layer(tmp_path):
    import tensorflow as tf

    inputs = tf.keras.Input((4, 4, 2))
    x = tf.keras.layers.Conv2D(2, 1, name="c", kernel_initializer="ones")(inputs)
    out = tf.keras.layers.Lambda(lambda t: tf.math.exp(t), name="expo")(x)
    model = tf.keras.Model(inputs, out)
    path = tmp_path / "exp.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    with pytest.raises(HwSimError, match="layer '[a-z_]+': TFLite operator EXP"):
        load_graph(path)
