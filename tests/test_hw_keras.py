"""Keras loader, the CLI and its error handling."""

import json
import subprocess
import sys

import larq as lq
import numpy as np
import pytest
import tensorflow as tf

import keras_ternary
from hw_sim import HwSimError, load_graph, register_loader
from hw_sim.analysis import profile_model
from hw_sim.ir import Graph, Op
from hw_sim.loaders.keras import from_keras_model
from hw_sim.profile import main


def textbook_macs(k: int, hw: int = 32, classes: int = 10) -> int:
    """ResNet-20* MACs from the architecture: 3 stages x 2 basic blocks, widths 16k/32k/64k."""
    c1, c2, c3 = 16 * k, 32 * k, 64 * k
    h1, h2, h3 = hw, hw // 2, hw // 4
    macs = h1 * h1 * 9 * 3 * c1  # stem
    macs += 4 * h1 * h1 * 9 * c1 * c1  # stage 1
    macs += h2 * h2 * (9 * c1 * c2 + c1 * c2 + 3 * 9 * c2 * c2)  # stage 2 (+1x1 shortcut)
    macs += h3 * h3 * (9 * c2 * c3 + c2 * c3 + 3 * 9 * c3 * c3)  # stage 3 (+1x1 shortcut)
    return macs + c3 * classes  # classifier


@pytest.mark.parametrize("k", [1, 5])
def test_resnet20_star_dense_macs_equal_textbook(k):
    graph = from_keras_model(keras_ternary.resnet20_star(inflation=k))
    report = profile_model(graph, "zeroskip")
    assert report["total"]["macs"] == textbook_macs(k)
    assert len(graph.compute_ops) == 1 + 12 + 2 + 1
    # every kernel of the default model is ternary; activations enter unquantized
    assert all(op.weight_precision == "ternary" for op in graph.compute_ops)
    assert report["total"]["weights"] == sum(op.n_weights for op in graph.compute_ops)


def tiny_model():
    x_in = tf.keras.Input((6, 6, 2), name="img")
    x = lq.layers.QuantConv2D(
        4,
        3,
        padding="same",
        use_bias=False,
        kernel_quantizer=lq.quantizers.SteTern(threshold_value=0.05),
        name="c1",
    )(x_in)
    x = tf.keras.layers.BatchNormalization(name="bn")(x)
    x1 = tf.keras.layers.Activation("relu", name="relu")(x)
    y = lq.layers.QuantConv2D(
        4,
        3,
        strides=1,
        padding="same",
        input_quantizer="ste_sign",
        kernel_quantizer=keras_ternary.Ternary(delta=0.3),
        name="c2",
    )(x1)
    y = tf.keras.layers.Add(name="add")([y, x1])
    y = tf.keras.layers.MaxPooling2D(2, name="pool")(y)
    y = tf.keras.layers.Flatten(name="flat")(y)
    y = tf.keras.layers.Dropout(0.5, name="drop")(y)
    y = lq.layers.QuantDense(
        3,
        input_quantizer=keras_ternary.Ternary(delta=0.2),
        kernel_quantizer="magnitude_aware_sign",
        name="fc",
    )(y)
    return tf.keras.Model(x_in, y, name="tiny")


def test_loader_quantizes_through_the_quantizers_and_keeps_the_graph(tmp_path):
    model = tiny_model()
    path = tmp_path / "tiny.h5"
    model.save(path)
    graph = load_graph(path)
    assert [op.kind for op in graph] == [
        "input", "conv2d", "batchnorm", "activation", "conv2d", "add", "maxpool", "flatten",
        "dense",
    ]  # fmt: skip
    c1, c2, fc = graph.op("c1"), graph.op("c2"), graph.op("fc")
    latent = model.get_layer("c1").kernel.latent_variable.numpy()
    expected = np.where(np.abs(latent) >= 0.05, np.sign(latent), 0)  # larq SteTern
    np.testing.assert_array_equal(c1.weights, expected)
    assert c1.weights.dtype == np.int8 and c1.padding == (1, 1, 1, 1)
    assert c1.act_precision == "float32" and c1.kernel_quantizer.kind == "ste_tern"
    latent2 = model.get_layer("c2").kernel.latent_variable.numpy()
    np.testing.assert_array_equal(c2.weights, np.where(np.abs(latent2) > 0.3, np.sign(latent2), 0))
    assert c2.kernel_quantizer.delta == pytest.approx(0.3)
    assert c2.act_precision == "binary" and c2.input_quantizer.kind == "sign"
    assert graph.op("add").inputs == ["c2", "relu"]
    assert fc.inputs == ["flat"] and graph.outputs == ["fc"]  # dropout dropped
    assert fc.weight_precision == "binary" and fc.weight_scale.shape == (3,)
    w = model.get_layer("fc").kernel.latent_variable.numpy()
    np.testing.assert_allclose(fc.weight_scale, np.abs(w).mean(axis=0), rtol=1e-5)
    assert fc.input_quantizer.kind == "ternary" and fc.input_quantizer.delta == pytest.approx(0.2)
    assert fc.act_precision == "ternary"
    bn = graph.op("bn")
    np.testing.assert_array_equal(bn.moving_variance, model.get_layer("bn").moving_variance)
    assert bn.epsilon == pytest.approx(model.get_layer("bn").epsilon)


def test_sequential_and_keras_format(tmp_path):
    model = tf.keras.Sequential(
        [
            tf.keras.layers.InputLayer((8,)),
            lq.layers.QuantDense(4, kernel_quantizer="ternary", use_bias=False, name="d"),
        ]
    )
    path = tmp_path / "seq.keras"
    model.save(path)
    graph = load_graph(path)
    assert [op.kind for op in graph] == ["input", "dense"]
    assert graph.op("d").weight_precision == "ternary"


def test_unsupported_layer_names_layer_and_type():
    x_in = tf.keras.Input((4, 4, 2))
    x = tf.keras.layers.UpSampling2D(name="up")(x_in)
    x = lq.layers.QuantConv2D(2, 1, kernel_quantizer="ternary")(x)
    with pytest.raises(HwSimError, match=r"^layer 'up' \(UpSampling2D\): [^\n]*$"):
        from_keras_model(tf.keras.Model(x_in, x))


def test_loader_registry_plugs_in_new_suffix(tmp_path):
    graph = Graph(
        "g",
        [Op("x", "input", [], (2,)),
         Op("d", "dense", ["x"], (1,), weights=np.ones((2, 1), np.int8),
            weight_precision="ternary")],
        ["d"],
    )  # fmt: skip
    register_loader((".fakefmt",), lambda path: graph)
    path = tmp_path / "m.fakefmt"
    path.write_text("x")
    assert load_graph(path) is graph
    path = tmp_path / "m.unknown"
    path.write_text("x")
    with pytest.raises(HwSimError, match=r"no loader.*\.h5.*\.keras"):
        load_graph(path)


# --- CLI -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_h5(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "tiny.h5"
    tiny_model().save(path)
    return path


def test_cli_formats_and_outputs(tiny_h5, tmp_path, capsys):
    out, png = tmp_path / "r.json", tmp_path / "e.png"
    assert main([str(tiny_h5), "--format", "json", "--out", str(out), "--plot", str(png)]) == 0
    said = capsys.readouterr().out
    assert said == f"wrote {out}: json report of {tiny_h5} on bitwise; plot {png}\n"
    data = json.loads(out.read_text())
    for layer in data["layers"]:
        assert {"name", "op", "weights", "zero_weights", "macs", "energy_pj"} <= set(layer)
        assert {"compute", "aux", "sram", "dram", "total"} <= set(layer["energy_pj"])
    assert {"macs", "energy_pj", "baselines"} <= set(data["total"])
    assert set(data["total"]["baselines"]) == {"fp32", "int8", "binary"}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main([str(tiny_h5), "--format", "csv", "--accelerator", "all"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 + 3 * (len(data["layers"]) + 1)
    assert main([str(tiny_h5), "--accelerator", "cim"]) == 0
    table = capsys.readouterr().out
    assert "TOTAL" in table and "vs FP32 MAC" in table and "c2" in table


def one_error_line(capsys, argv, out=None):
    capsys.readouterr()  # drop what the test's own set-up printed (model.save's HDF5 warning)
    code = main(argv)
    err = capsys.readouterr().err
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hw_sim: error:"), err
    assert "Traceback" not in err
    if out is not None:
        assert not out.exists()
    return lines[0]


def test_cli_bad_inputs(tiny_h5, tmp_path, capsys):
    out = tmp_path / "never.json"
    line = one_error_line(capsys, [str(tmp_path / "missing.h5"), "--out", str(out)], out)
    assert "not found" in line
    data = tiny_h5.read_bytes()
    trunc = tmp_path / "trunc.h5"
    trunc.write_bytes(data[: len(data) // 3])
    one_error_line(capsys, [str(trunc), "--out", str(out)], out)
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    assert "HDF5" in one_error_line(capsys, [str(corrupt)])
    corrupt_keras = tmp_path / "corrupt.keras"
    corrupt_keras.write_bytes(b"PK\x03\x04 not really a zip")
    assert ".keras" in one_error_line(capsys, [str(corrupt_keras)])
    weights_only = tmp_path / "weights.h5"
    tiny_model().save_weights(weights_only)
    assert "no model" in one_error_line(capsys, [str(weights_only)])
    plain = tmp_path / "plain.h5"
    tf.keras.Sequential([tf.keras.layers.InputLayer((3,)), tf.keras.layers.Dense(2)]).save(plain)
    assert "no quantized layer" in one_error_line(capsys, [str(plain), "--out", str(out)], out)
    bad_tech = tmp_path / "tech.yaml"
    bad_tech.write_text("energy_pj: {fp32_add: banana}\n")
    assert "finite number" in one_error_line(capsys, [str(tiny_h5), "--tech", str(bad_tech)])
    one_error_line(capsys, [str(tiny_h5), "--accelerator", "gpu"])
    one_error_line(capsys, [str(tiny_h5), "--plot", str(tmp_path / "e.jpg")])
    one_error_line(capsys, [str(tiny_h5), "--out", str(tmp_path / "no" / "dir.json")])


def test_cli_subprocess_one_line_and_exit_code(tmp_path):
    corrupt = tmp_path / "bad.h5"
    corrupt.write_bytes(b"\x00" * 100)
    proc = subprocess.run(
        [sys.executable, "-m", "hw_sim.profile", str(corrupt)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0 and "HDF5" in proc.stderr
