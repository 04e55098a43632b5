"""keras_ternary.contract: TF-free, metadata round trip, geometry / activations / affine vs TF."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from keras_ternary.contract import activations, affine, entropy, geometry, ternary
from keras_ternary.contract.errors import ContractError
from keras_ternary.contract.metadata import (
    SCHEMA_VERSION,
    ExportMetadata,
    LayerEntry,
    ResidualEntry,
)

MODULES = (
    "activations",
    "affine",
    "entropy",
    "errors",
    "geometry",
    "metadata",
    "ternary",
    "tflite_reader",
)


def test_contract_modules_do_not_import_tensorflow():
    # keras_ternary/__init__ registers its Keras classes (importing TensorFlow) unless it is
    # being located by ``python -m``; pretend that, then import every contract module.
    code = (
        "import sys; sys.argv[:1] = ['-m']\n"
        f"for m in {MODULES!r}: __import__('keras_ternary.contract.' + m)\n"
        "import keras_ternary.contract.tflite_reader as r; r.schema()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"


def _metadata() -> ExportMetadata:
    return ExportMetadata(
        producer="keras-ternary 0.1.0",
        mode="int8",
        model_name="m",
        input="input_1",
        layers=[
            LayerEntry("conv1", "ternary", 0.05, False, "bn1", 1e-3, [2, 5], None),
            LayerEntry("sep/depthwise", "binary", None, False, layer="sep"),
            LayerEntry("sep", "ternary", 0.05, True),
            LayerEntry("dense", None, None, True),
        ],
        batchnorms=["bn_kept"],
        residual=[
            ResidualEntry(
                "bn2",
                "add",
                None,
                np.array([0.5, -2.0]),
                np.array([1.0, 0.25]),
                1e-3,
                [("conv2", "folded"), ("conv1", "scaled")],
                "conv2",
                ["bn2_clip"],
            )
        ],
    )


def test_metadata_round_trip():
    meta = _metadata()
    back = ExportMetadata.from_json(meta.to_json())
    assert back.to_dict() == meta.to_dict()
    assert back.layers == meta.layers
    np.testing.assert_array_equal(back.residual[0].scale, [0.5, -2.0])
    assert back.residual[0].branches == [("conv2", "folded"), ("conv1", "scaled")]
    assert json.loads(meta.to_json())["version"] == SCHEMA_VERSION


def test_metadata_layer_of_a_kernel_is_optional():
    """Only a part of a layer (a separable convolution's depthwise op) writes ``layer``."""
    entries = _metadata().to_dict()["layers"]
    assert [e.get("layer") for e in entries] == [None, "sep", None, None]
    assert "layer" not in entries[0]  # files of single-kernel layers are as before
    back = [LayerEntry.from_dict(e) for e in entries]
    assert [e.keras_layer for e in back] == ["conv1", "sep", "sep", "dense"]


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"version": SCHEMA_VERSION + 1}, "newer than this reader"),
        ({"version": "1"}, "no valid version"),
        ({"version": None}, "no valid version"),
        ({"residual": [{"bn": "x"}]}, "malformed 'residual'"),
        ({"layers": [{"delta": 1}]}, "malformed 'layers'"),
    ],
)
def test_metadata_bad_version_or_entry_is_a_clear_error(change, match):
    d = {**_metadata().to_dict(), **change}
    with pytest.raises(ContractError, match=match):
        ExportMetadata.from_json(json.dumps(d))


def test_metadata_not_json():
    with pytest.raises(ContractError, match="not JSON"):
        ExportMetadata.from_json(b"\xff{")


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize(("size", "kernel", "stride"), [(8, 3, 1), (9, 3, 2), (7, 1, 2), (5, 5, 3)])
def test_geometry_matches_tf_conv_output_shape(padding, size, kernel, stride):
    x = tf.zeros((1, size, size + 1, 1))
    w = tf.zeros((kernel, kernel, 1, 1))
    want = tuple(tf.nn.conv2d(x, w, stride, padding).shape[1:3])
    pad = geometry.window_padding(padding, (size, size + 1), (kernel, kernel), (stride, stride))
    assert geometry.output_hw((size, size + 1), (kernel, kernel), (stride, stride), pad) == want
    # the padded positions are exactly what TF pads: a ones-image convolved with ones counts taps
    ones = tf.nn.conv2d(tf.ones_like(x), tf.ones_like(w), stride, padding).numpy()[0, ..., 0]
    rows = geometry.tap_validity(size, kernel, stride, pad[0], want[0]).sum(axis=1)
    cols = geometry.tap_validity(size + 1, kernel, stride, pad[2], want[1]).sum(axis=1)
    np.testing.assert_array_equal(np.outer(rows, cols), ones)


def test_geometry_window_too_large_and_unknown_padding():
    with pytest.raises(ContractError, match="does not fit"):
        geometry.output_hw((2, 2), (3, 3), (1, 1), (0, 0, 0, 0))
    with pytest.raises(ContractError, match="unknown padding"):
        geometry.window_padding("causal", (4, 4), (3, 3), (1, 1))
    assert geometry.conv_macs((4, 4), (3, 3), 2, 5) == 4 * 4 * 9 * 2 * 5


@pytest.mark.parametrize("name", sorted(activations.ACTIVATIONS))
def test_activation_table_matches_keras(name):
    from keras_ternary.activations import hard_tanh

    x = np.linspace(-8, 8, 64, dtype=np.float32).reshape(4, 16)
    act = activations.ACTIVATIONS[name]
    for keras_name in act.keras:
        fn = hard_tanh if keras_name == "hard_tanh" else tf.keras.activations.get(keras_name)
        np.testing.assert_allclose(act.fn(x), fn(tf.constant(x)).numpy(), rtol=1e-5, atol=1e-6)
        assert activations.from_keras(keras_name) == name
    if act.bound is not None:
        assert np.abs(act.fn(np.float32([-50, 50]))).max() <= act.bound
    with pytest.raises(ContractError, match="unsupported activation"):
        activations.apply("gelu", x)


def test_activation_table_names_tflite():
    assert activations.from_tflite_fused("RELU_N1_TO_1") == "hard_tanh"
    assert activations.from_tflite_fused("NONE") == "linear"
    assert activations.from_tflite_fused("SIGN_BIT") is None
    assert activations.from_tflite_op("LOGISTIC") == "sigmoid"


def test_affine_matches_keras_batchnorm_inference():
    rng = np.random.default_rng(0)
    bn = tf.keras.layers.BatchNormalization(epsilon=1e-3)
    bn.build((None, 5))
    gamma, beta, mean = (rng.normal(size=5) for _ in range(3))
    var = rng.uniform(0.1, 2.0, size=5)
    bn.set_weights([gamma, beta, mean, var])
    x = rng.normal(size=(7, 5)).astype(np.float32)
    scale, shift = affine.batchnorm_affine(gamma, beta, mean, var, 1e-3)
    want = bn(x, training=False).numpy()
    np.testing.assert_allclose(x * scale + shift, want, rtol=1e-5, atol=1e-5)
    back = affine.batchnorm_from_affine(scale, shift, 1e-3)
    s2, t2 = affine.batchnorm_affine(
        back["gamma"], back["beta"], back["moving_mean"], back["moving_variance"], 1e-3
    )
    np.testing.assert_allclose(x * s2 + t2, want, rtol=1e-5, atol=1e-5)


def test_split_kernel_one_tolerance():
    t = np.array([[1, 0, -1], [-1, 1, 0]], np.int8)
    scale = np.array([0.5, 2.0, 1.0])
    levels, s = ternary.split_kernel(t * scale)
    np.testing.assert_array_equal(levels, t)
    np.testing.assert_allclose(s, scale)
    assert ternary.split_kernel(t * scale * (1 + 10 * ternary.TOLERANCE * t)) is None
    assert ternary.split_kernel(np.array([[0.5, 1.0]]).T) is None
    assert ternary.is_unit_scale(np.float32([1.0, 1.0 + ternary.TOLERANCE / 10]))


def test_entropy():
    assert entropy.entropy_bits([5, 0, 5]) == pytest.approx(1.0)
    assert entropy.values_entropy_bits(np.array([-1, 0, 1, 1], np.int8)) == pytest.approx(1.5)
    assert entropy.values_entropy_bits(np.array([0.5, 0.5])) == 0.0
    assert entropy.values_entropy_bits(np.array([], np.int8)) == 0.0
