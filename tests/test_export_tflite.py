"""TFLite export: exact int8 ternary kernels in the flatbuffer, agreement with Keras."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from keras_ternary.export import (
    ExportError,
    check_ternary_kernels,
    compare_with_keras,
    inference_model,
    predict_tflite,
    read_weight_tensors,
    to_tflite,
)
from tests.test_export_models import generated_data, larq_model, trained_model


@pytest.fixture(scope="module")
def calib():
    return generated_data(128, seed=7)[0]


@pytest.fixture(scope="module")
def ternary_int8(tmp_path_factory, calib):
    """The trained ternary model exported once in int8 mode: (model, path, result)."""
    model = trained_model("ternary")
    path = tmp_path_factory.mktemp("tflite") / "ternary-int8.tflite"
    return model, path, to_tflite(model, path, "int8", calib)


@pytest.mark.parametrize(
    "kind, mode",
    [
        ("ternary", "int8"),
        ("ternary", "int16x8"),
        ("ternary", "float"),
        ("binary", "int8"),
        ("float", "int8"),
    ],
)
def test_export_every_mode(tmp_path, calib, ternary_int8, kind, mode):
    if (kind, mode) == ("ternary", "int8"):
        model, path, result = ternary_int8
    else:
        model = trained_model(kind)
        path = tmp_path / f"{kind}-{mode}.tflite"
        result = to_tflite(model, path, mode, None if mode == "float" else calib)
    assert path.stat().st_size == result.size_bytes > 0
    n_quantized = 0 if kind == "float" else 10
    assert len(result.kernels) == n_quantized
    assert result.all_exact
    tensors = read_weight_tensors(path)
    scales = [t for t in tensors if t.op == "DEPTHWISE_CONV_2D"]  # residual batch-norm scales
    folds = inference_model(model, fold_residual_bn=True).residual if mode == "int8" else []
    assert result.residual_folded == [f.bn for f in folds]
    assert len(scales) == sum(kind == "scaled" for f in folds for _, kind in f.branches)
    tensors = [t for t in tensors if t.op != "DEPTHWISE_CONV_2D"]
    assert len(tensors) == 10  # 9 convolutions + the classifier
    want = "FLOAT32" if mode == "float" else "INT8"  # int16x8 keeps int8 weights
    assert {t.dtype for t in tensors} == {want}
    x, y = generated_data(200, seed=11)
    agreement = compare_with_keras(model, path, x, y)
    if mode == "float":
        assert agreement.top1_agreement == 1.0 and agreement.max_abs_diff < 1e-3
    elif mode == "int16x8":  # int16 activations: much closer to the float model than int8
        ref = model.predict(x, verbose=0)
        err16 = np.abs(predict_tflite(path, x) - ref).mean()
        err8 = np.abs(predict_tflite(ternary_int8[1], x) - ref).mean()
        assert err16 < err8 / 10  # measured: 0.0004 vs 0.025
        assert agreement.top1_agreement >= 0.99
    else:
        assert agreement.top1_agreement >= 0.95
        assert abs(agreement.keras_accuracy - agreement.tflite_accuracy) <= 0.05


def test_int8_kernels_are_ternary_codes_in_the_flatbuffer(ternary_int8):
    """Read the file directly: each ternary kernel is int8 with codes {-q, 0, +q} per channel."""
    model, path, _ = ternary_int8
    graph = inference_model(model, fold_residual_bn=True)
    for tensor in read_weight_tensors(path):
        if tensor.op == "DEPTHWISE_CONV_2D":  # a residual batch-norm scale, not a kernel
            continue
        assert tensor.dtype == "INT8" and tensor.values.dtype == np.int8
        assert tensor.quantized_dimension == 0
        assert not np.any(tensor.zero_points)
        per_channel = np.abs(tensor.values.reshape(tensor.shape[0], -1).astype(int))
        assert len(tensor.scales) == tensor.shape[0]
        for row in per_channel:
            assert set(np.unique(row)) <= {0, row.max()}
            assert row.max() in (0, 127)
    # dequantized codes are the folded kernels s_c · t
    kernels = {k.layer: k for k in graph.ternary_kernels}
    conv1 = next(
        t for t in read_weight_tensors(path) if "conv1/" in t.name and "stage" not in t.name
    )
    expected = np.moveaxis(kernels["conv1"].kernel, -1, 0)
    np.testing.assert_allclose(
        conv1.values * conv1.scales[:, None, None, None], expected, rtol=1e-5
    )


def test_int8_with_float_io_and_batchnorm_stats(tmp_path, calib):
    model = trained_model("ternary")
    path = tmp_path / "io.tflite"
    result = to_tflite(model, path, "int8", calib, io_dtype="float32")
    assert result.all_exact and result.fold_max_abs_diff < 1e-3
    x, _ = generated_data(50, seed=3)
    assert predict_tflite(path, x).dtype == np.float32
    assert compare_with_keras(model, path, x).top1_agreement >= 0.95


def test_check_detects_a_kernel_that_is_not_in_the_file(ternary_int8):
    model, path, _ = ternary_int8
    graph = inference_model(model, fold_residual_bn=True)
    first = graph.ternary_kernels[0]
    wrong = dataclasses.replace(first, ternary=-first.ternary)
    wrong.ternary.flat[np.flatnonzero(wrong.ternary == 0)[:1]] = 1
    checks = check_ternary_kernels(path, [wrong, *graph.ternary_kernels[1:]])
    assert not checks[0].exact and checks[0].tensor is None
    assert all(c.exact for c in checks[1:])


def test_int8_needs_representative_data(tmp_path):
    with pytest.raises(ExportError, match="representative_data"):
        to_tflite(trained_model("ternary"), tmp_path / "x.tflite", "int8")
    assert not (tmp_path / "x.tflite").exists()


def test_wrong_mode_and_shape(tmp_path, calib):
    model = trained_model("ternary")
    with pytest.raises(ExportError, match="mode"):
        to_tflite(model, tmp_path / "x.tflite", "int4", calib)
    with pytest.raises(ExportError, match="shape"):
        to_tflite(model, tmp_path / "x.tflite", "int8", np.zeros((4, 5, 5, 3), np.float32))
    assert not (tmp_path / "x.tflite").exists()


def test_larq_sequential_float_export_with_activation_quantizer(tmp_path):
    model = larq_model(input_quantizer="ste_sign")
    path = tmp_path / "larq.tflite"
    result = to_tflite(model, path, "float")
    assert len(result.kernels) == 2 and result.all_exact
    x, _ = generated_data(40, seed=4)
    assert compare_with_keras(model, path, x).top1_agreement == 1.0


def test_agreement_rms_error_and_close_calls():
    from keras_ternary.export.tflite import agreement

    ref = np.array([[2.0, 0.0, -1.0], [0.10, 0.05, 0.0], [1.0, 0.99, 0.0], [0.0, 3.0, 1.0]])
    got = ref + np.array([[0.1, 0, 0], [-0.1, 0, 0], [-0.1, 0, 0], [0, 0.1, 0]])
    a = agreement(ref, got, y=np.array([0, 1, 0, 1]))
    assert a.n == 4 and a.top1_agreement == 0.5  # rows 2 and 3 flip to class 1
    assert a.keras_accuracy == 0.75 and a.tflite_accuracy == 0.75
    assert np.isclose(a.rms_diff, np.sqrt(4 * 0.01 / 12)) and np.isclose(a.max_abs_diff, 0.1)
    # margins 2.0, 0.05, 0.01, 2.0 against 2 * rms = 0.115: the two flipped rows are close calls
    assert a.close_calls == 0.5
    assert agreement(ref, ref).rms_diff == 0.0 and agreement(ref, ref).close_calls == 0.0
