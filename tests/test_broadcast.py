"""Broadcasting add / multiply / subtract, identity Lambda layers and the .h5 files tf-keras
cannot read back by itself (issue #15: larq_zoo RealToBinaryNet, QuickNetSmall,
BinaryDenseNet28).

The models are small seeded squeeze-and-excite blocks built from Keras / larq layers
(GlobalAveragePooling -> Dense -> Dense -> Reshape -> Multiply, as RealToBinaryNet scales its
binary convolutions). Oracles: TensorFlow for the float results, the Keras layer configs for
MACs (tests/independent_count.py) and Keras' output shapes for the per-element work.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import larq as lq
import numpy as np
import pytest
import tensorflow as tf

from hw_sim import load_graph, profile_model
from hw_sim.accelerators import ACCELERATORS
from hw_sim.analysis import analyze
from hw_sim.emulate import Emulator
from hw_sim.emulation_check import compare_with_keras
from hw_sim.errors import HwSimError
from hw_sim.ir import Graph, Op
from hw_sim.loaders.keras import _is_identity, from_keras_model
from hw_sim.ops import OPS, broadcast_shape
from hw_sim.technology import load_tech
from keras_ternary import Ternary
from keras_ternary.modelfile import ModelFileError, keras_load, plain_functions
from tests.independent_count import count_model
from tests.zoo import HAVE_LARQ_ZOO, ZOO

L = tf.keras.layers
MERGES = {"Multiply": "multiply", "Add": "add", "Subtract": "subtract"}


def _tern_conv(filters: int, name: str, **kwargs) -> L.Layer:
    return lq.layers.QuantConv2D(
        filters, 3, padding="same", use_bias=False, kernel_quantizer=Ternary(0.05), name=name,
        **kwargs,
    )  # fmt: skip


def squeeze_excite(float_stem: bool = False) -> tf.keras.Model:
    """conv -> (GAP -> Dense relu -> Dense sigmoid -> Reshape (1, 1, C)) scales the next conv:
    by a Multiply layer, ``x * s``, ``tf.math.multiply``; then a broadcast Add and Subtract of
    a per-channel vector, a conv on binarized inputs and a classifier. ``float_stem``: the
    convs are plain Conv2D with ternary-valued kernels (what a foreign .tflite holds)."""
    tf.keras.utils.set_random_seed(3)
    conv = (
        (lambda f, name, **kw: L.Conv2D(f, 3, padding="same", use_bias=False, name=name, **kw))
        if float_stem
        else _tern_conv
    )
    x_in = tf.keras.Input((6, 6, 3))
    x = conv(8, "stem")(x_in)
    z = L.GlobalAveragePooling2D(name="pool")(x)
    z = L.Dense(4, activation="relu", use_bias=False, name="reduce")(z)
    z = L.Dense(8, activation="sigmoid", use_bias=False, name="expand")(z)
    s = L.Reshape((1, 1, 8), name="scales")(z)
    y = L.Multiply(name="scale_layer")([conv(8, "conv_a")(x), s])
    if not float_stem:
        y = y * s  # TFOpLambda __operators__.mul
        y = tf.math.multiply(s, y)  # the small operand first
        y = L.Add(name="shift")([y, z])  # (6, 6, 8) + (8,): Keras expands (8,) to (1, 1, 8)
        y = L.Subtract(name="unshift")([y, s])
    y = conv(8, "conv_b", **({} if float_stem else {"input_quantizer": "ste_sign"}))(y)
    logits = L.Dense(5, name="logits")(L.Flatten()(y))
    model = tf.keras.Model(x_in, logits)
    if float_stem:  # ternary kernels times a per-channel scale, as a converter stores them
        rng = np.random.default_rng(0)
        for name in ("stem", "conv_a", "conv_b"):
            w = model.get_layer(name).kernel
            t = rng.choice([-1.0, 0.0, 1.0], size=w.shape, p=[0.3, 0.4, 0.3])
            w.assign((t * rng.uniform(0.5, 1.5, size=w.shape[-1])).astype(np.float32))
    return model


@pytest.fixture(scope="module")
def model() -> tf.keras.Model:
    return squeeze_excite()


def _x(model: tf.keras.Model, n: int = 8) -> np.ndarray:
    return np.random.default_rng(1).normal(size=(n, *model.input_shape[1:])).astype(np.float32)


# ----------------------------------------------------------------------------- the op table
@pytest.mark.parametrize(
    ("shapes", "out"),
    [
        ([(4, 5, 3), (1, 1, 3)], (4, 5, 3)),
        ([(1, 1, 3), (4, 5, 3)], (4, 5, 3)),
        ([(3,), (4, 5, 3)], (4, 5, 3)),
        ([(4, 1, 3), (1, 5, 1)], (4, 5, 3)),
        ([(4, 5, 3), (4, 5, 3)], (4, 5, 3)),
        ([(4, 5, 3), (5, 2)], None),
    ],
)
def test_broadcast_shape_is_numpys_rule(shapes, out):
    assert broadcast_shape(shapes) == out


@pytest.mark.parametrize("kind", ["multiply", "subtract", "add"])
@pytest.mark.parametrize("shapes", [[(4, 5, 3), (1, 1, 3)], [(3,), (4, 5, 3)], [(4, 1, 3), (5, 1)]])
def test_execute_broadcasts_like_tensorflow(kind, shapes):
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(2, *s)).astype(np.float32) for s in shapes]
    out = broadcast_shape(shapes)
    op = Op("o", kind, ["a", "b"], out)
    tf_op = {"multiply": tf.multiply, "subtract": tf.subtract, "add": tf.add}[kind]
    # TensorFlow aligns the batched shapes at their last axis: insert the per-sample axes
    aligned = [x.reshape(2, *(1,) * (len(out) - x.ndim + 1), *x.shape[1:]) for x in xs]
    np.testing.assert_allclose(OPS[kind].execute(op, xs), tf_op(*aligned), rtol=1e-6)


def test_add_of_three_broadcasts_and_validation_names_the_shapes():
    rng = np.random.default_rng(0)
    a, b, c = (rng.normal(size=(2, *s)).astype(np.float32) for s in [(4, 4, 2), (1, 1, 2), (2,)])
    op = Op("o", "add", ["a", "b", "c"], (4, 4, 2))
    np.testing.assert_allclose(OPS["add"].execute(op, [a, b, c]), a + b + c[:, None, None])
    x, s = Op("x", "input", [], (4, 4, 2)), Op("s", "input", [], (1, 3, 2))
    with pytest.raises(HwSimError, match=r"^op 'm' \(multiply\): .*do not broadcast"):
        Graph("g", [x, s, Op("m", "multiply", ["x", "s"], (4, 4, 2))], ["m"])
    with pytest.raises(HwSimError, match="do not broadcast"):  # output smaller than the inputs
        Graph("g", [x, s, Op("m", "multiply", ["x", "x"], (1, 1, 2))], ["m"])


def test_work_is_per_output_element_and_the_small_operand_is_read_once():
    w = np.ones((1, 1, 4, 4), np.int8)
    graph = Graph(
        "g",
        [
            Op("x", "input", [], (4, 4, 4)),
            Op("c", "conv2d", ["x"], (4, 4, 4), weights=w, weight_precision="ternary"),
            Op("p", "global_avgpool", ["c"], (4,)),
            Op("r", "reshape", ["p"], (1, 1, 4)),
            Op("m", "multiply", ["c", "r"], (4, 4, 4)),
            Op("a", "add", ["m", "p", "r"], (4, 4, 4)),
        ],
        ["a"],
    )
    rows = {r["name"]: r for r in analyze(graph, ACCELERATORS["bitwise"], load_tech())["layers"]}
    assert rows["m"]["actions"]["aux"] == {"fp32_mult": 64}
    assert rows["a"]["actions"]["aux"] == {"fp32_add": 2 * 64}
    bits = {n: rows[n]["act_bits_out"] // math.prod(rows[n]["output_shape"]) for n in rows}
    assert rows["m"]["act_bits_in"] == 64 * bits["c"] + 4 * bits["r"]  # (1, 1, 4) once


# ----------------------------------------------------------------------------- Keras loader
def test_keras_converters_keep_the_broadcast_shapes(model):
    graph = from_keras_model(model)
    merges = [op for op in graph.ops if op.kind in ("multiply", "add", "subtract")]
    assert [(op.kind, [graph.shape_of(n) for n in op.inputs]) for op in merges] == [
        ("multiply", [(6, 6, 8), (1, 1, 8)]),
        ("multiply", [(6, 6, 8), (1, 1, 8)]),
        ("multiply", [(1, 1, 8), (6, 6, 8)]),
        ("add", [(6, 6, 8), (8,)]),
        ("subtract", [(6, 6, 8), (1, 1, 8)]),
    ]
    assert {op.source_type for op in merges} == {*MERGES, "TFOpLambda"}


@pytest.mark.parametrize("fmt", [".h5", ".keras"])
def test_saved_block_counts_equal_an_independent_count(model, fmt, tmp_path):
    path = tmp_path / f"se{fmt}"
    model.save(path)
    report = profile_model(load_graph(path), accelerator="bitwise")
    rows = {r["name"]: r for r in report["layers"]}
    oracle = count_model(model)
    assert {n: (rows[n]["macs"], rows[n]["weights"]) for n in oracle} == {
        n: (c.macs, c.kernel_weights) for n, c in oracle.items()
    }
    for layer in model.layers:  # one fp32 op per output element of every merge
        kind = MERGES.get(type(layer).__name__) or {
            "__operators__.mul": "multiply",
            "math.multiply": "multiply",
        }.get(layer.get_config().get("function"))
        if kind:
            action = "fp32_mult" if kind == "multiply" else "fp32_add"
            assert rows[layer.name]["actions"]["aux"] == {action: math.prod(layer.output_shape[1:])}


def test_emulation_equals_keras(model):
    """conv_b binarizes the broadcast results: its popcount accumulators are exact integers."""
    x = _x(model)
    emulator = Emulator(from_keras_model(model), act_mode="float")
    agreement, result = compare_with_keras(model, emulator, x)
    assert agreement["accumulators"]["conv_b"]["values"] == 8 * 6 * 6 * 8
    assert agreement["accumulators_exact"] and agreement["top1_agreement"] == 1.0
    np.testing.assert_allclose(result.logits, model(x).numpy(), rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- TFLite loader
def test_tflite_mul_broadcasts(tmp_path):
    model = squeeze_excite(float_stem=True)
    path = tmp_path / "se.tflite"
    # a fixed batch of 1: Keras' Reshape with a dynamic batch becomes SHAPE/PACK operators
    fn = tf.function(model).get_concrete_function(tf.TensorSpec((1, 6, 6, 3), tf.float32))
    path.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([fn], model).convert())
    graph = load_graph(path)
    (mul,) = [op for op in graph.ops if op.kind == "multiply"]
    shapes = sorted((graph.shape_of(n) for n in mul.inputs), key=math.prod)
    assert math.prod(shapes[0]) == 8 and shapes[1] == (6, 6, 8)  # (8,) or (1, 1, 8)
    assert mul.source_type == "tflite:MUL"
    report = profile_model(graph, accelerator="bitwise")
    oracle = count_model(model)
    assert report["total"]["macs"] == sum(c.macs for c in oracle.values())
    assert {r["name"]: r["actions"].get("aux") for r in report["layers"]}[mul.name] == {
        "fp32_mult": 6 * 6 * 8
    }
    x = _x(model)
    emulated = Emulator(graph, act_mode="float").run(x).logits
    np.testing.assert_allclose(emulated, model(x).numpy(), rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- Lambda layers
def _second(x, y):
    return y


def test_identity_is_read_from_byte_code():
    assert _is_identity(lambda x: x)
    assert _is_identity(lambda t, scale=2.0: t)
    for fn in (lambda x: -x, lambda x: x * 2, _second, lambda: 0, len, tf.identity):
        assert not _is_identity(fn)


def test_identity_lambda_loads_and_other_lambdas_are_refused(tmp_path):
    x_in = tf.keras.Input((4, 4, 3))
    x = L.Lambda(lambda t: t, name="block_out")(_tern_conv(4, "conv")(x_in))
    model = tf.keras.Model(x_in, _tern_conv(2, "head")(x))
    path = tmp_path / "identity.h5"
    model.save(path)
    with pytest.raises(HwSimError, match=r"^[^\n]*Python code[^\n]*--unsafe-load[^\n]*$"):
        load_graph(path)
    graph = load_graph(path, safe_mode=False)
    assert graph.op("head").inputs == ["conv"] and len(graph.ops) == 3
    scaled = tf.keras.Model(x_in, L.Lambda(lambda t: t * 2.0, name="double")(x))
    with pytest.raises(HwSimError, match=r"^layer 'double' \(Lambda\): [^\n]*only the identity"):
        from_keras_model(scaled)


NO_LARQ_ZOO = pytest.mark.skipif(not HAVE_LARQ_ZOO, reason="larq_zoo not installed")


@NO_LARQ_ZOO
def test_real_to_binary_net_loads_unsafe_counts_and_emulates_exactly(tmp_path):
    model = ZOO["real_to_binary_net"].build()
    path = tmp_path / "r2b.h5"
    model.save(path)
    graph = load_graph(path, safe_mode=False)
    binary_convs = sum(type(layer).__name__ == "QuantConv2D" for layer in model.layers)
    assert sum(op.kind == "multiply" for op in graph.ops) == binary_convs == 16
    report = profile_model(graph, accelerator="bitwise")
    counted = {r["name"]: (r["macs"], r["weights"]) for r in report["layers"]}
    oracle = count_model(model)
    assert {n: counted.get(n) for n in oracle} == {
        n: (c.macs, c.kernel_weights) for n, c in oracle.items()
    }
    x = _x(model, 4)
    agreement, result = compare_with_keras(model, Emulator(graph, act_mode="float"), x)
    assert agreement["accumulators_exact"]
    assert (result.logits.argmax(-1) == agreement["keras_logits"].argmax(-1)).all()


# ----------------------------------------------------------------------------- .h5 repairs
def ones_initializer_fn(shape, dtype=None):
    """A plain function initializer, registered as larq's decorator registers larq_zoo's."""
    return tf.ones(shape, dtype=dtype)


class SubclassedModel(tf.keras.Model):
    """An unregistered Model subclass, as larq_zoo's BinaryDenseNet."""


def _plain_function_model() -> tf.keras.Model:
    tf.keras.utils.get_custom_objects()["ones_initializer_fn"] = ones_initializer_fn
    x_in = tf.keras.Input((4, 4, 3))
    x = L.DepthwiseConv2D(3, padding="same", depthwise_initializer=ones_initializer_fn)(x_in)
    model = tf.keras.Model(x_in, _tern_conv(2, "head")(x))
    model.get_layer(index=1).depthwise_kernel.assign(np.full((3, 3, 3, 1), 0.5, np.float32))
    return model


def test_h5_with_a_plain_function_initializer_loads(tmp_path):
    model = _plain_function_model()
    path = tmp_path / "fn.h5"
    model.save(path)
    with pytest.raises((TypeError, ValueError), match="Unknown initializer: 'function'"):
        tf.keras.models.load_model(path, compile=False)  # tf-keras' own bug (see plain_functions)
    from keras_ternary.modelfile import h5_model_config

    assert plain_functions(h5_model_config(path)) == ["ones_initializer_fn"]
    loaded = keras_load(path, compile=False)
    x = _x(model, 2)
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
    assert load_graph(path).op("head").kind == "conv2d"
    del tf.keras.utils.get_custom_objects()["ones_initializer_fn"]
    with pytest.raises(ModelFileError, match=r"'ones_initializer_fn'.*--import the package"):
        keras_load(path, compile=False)


def test_h5_of_an_unregistered_model_subclass_loads(tmp_path):
    x_in = tf.keras.Input((4, 4, 3))
    model = SubclassedModel(x_in, _tern_conv(2, "head")(x_in))
    path = tmp_path / "sub.h5"
    model.save(path)
    loaded = keras_load(path, compile=False)
    assert type(loaded) is SubclassedModel

    class Hidden(tf.keras.Model):  # defined by no module: cannot be found
        pass

    Hidden(x_in, _tern_conv(2, "head2")(x_in)).save(path)
    with pytest.raises(HwSimError, match=r"^[^\n]*model class 'Hidden' is not registered[^\n]*$"):
        load_graph(path)


def test_cli_says_what_to_import(tmp_path):
    model = _plain_function_model()
    path = tmp_path / "fn.h5"
    model.save(path)
    del tf.keras.utils.get_custom_objects()["ones_initializer_fn"]
    run = subprocess.run(
        [sys.executable, "-m", "hw_sim", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).parents[1],
    )
    lines = run.stderr.strip().splitlines()
    assert run.returncode != 0 and lines[-1].startswith("hw_sim: error:")
    assert "'ones_initializer_fn'" in lines[-1] and "--import" in lines[-1]
