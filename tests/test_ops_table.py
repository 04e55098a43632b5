"""The op-kind table (hw_sim/ops.py): new kinds and grouped / depthwise convolutions.

Float references come from TensorFlow ops; integer accumulators from a plain float64 numpy
convolution per group; MACs from the textbook formula.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import tensorflow as tf

from hw_sim.accelerators import ACCELERATORS, BASELINES
from hw_sim.accelerators.cim import CimConfig, crossbar_mapping
from hw_sim.accelerators.common import count_sparse_adds, fetch_groups
from hw_sim.analysis import analyze
from hw_sim.calibrate import quantize_int8, static_bound
from hw_sim.emulate import Emulator
from hw_sim.errors import HwSimError
from hw_sim.geometry import dense_macs
from hw_sim.ir import OP_KINDS, Graph, Op, Quantizer, same_padding
from hw_sim.kernels import available_backends
from hw_sim.kernels.conv import addsub_conv2d, bit_conv2d, grouped, pack_kernel, split_groups
from hw_sim.memory import consumer_map, fused_tensors
from hw_sim.ops import OPS, OpSpec, spec, tensor_precision
from hw_sim.technology import load_tech

TECH = load_tech()
QUANTIZERS = {"ternary": Quantizer("ternary", delta=0.3), "binary": Quantizer("sign")}


def close(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


def values(rng, shape, kind):
    if kind == "binary":
        return rng.choice(np.array([-1, 1], np.int8), size=shape)
    if kind == "int8":
        return rng.integers(-127, 128, size=shape).astype(np.int8)
    return rng.choice(np.array([-1, 0, 1], np.int8), size=shape, p=[0.3, 0.4, 0.3])


def reference_grouped(x, w, groups, strides, padding, pad_value=0.0):
    """float64 grouped convolution: pad, then Σ over taps of x_window · w_tap, per group."""
    top, bottom, left, right = padding
    xp = np.pad(
        x.astype(np.float64),
        ((0, 0), (top, bottom), (left, right), (0, 0)),
        constant_values=pad_value,
    )
    kh, kw, cg, n = w.shape
    ng = n // groups
    sh, sw = strides
    ho, wo = (xp.shape[1] - kh) // sh + 1, (xp.shape[2] - kw) // sw + 1
    out = np.zeros((x.shape[0], ho, wo, n))
    for g, i, j in itertools.product(range(groups), range(kh), range(kw)):
        win = xp[:, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw]
        out[..., g * ng : (g + 1) * ng] += np.einsum(
            "bhwc,cn->bhwn", win[..., g * cg : (g + 1) * cg], w[i, j, :, g * ng : (g + 1) * ng]
        )
    return out


def conv_op(name, src, in_shape, w, groups, strides=(1, 1), same=True, **kw):
    kh, kwid = w.shape[:2]
    if same:
        pad = (
            *same_padding(in_shape[0], kh, strides[0]),
            *same_padding(in_shape[1], kwid, strides[1]),
        )
    else:
        pad = (0, 0, 0, 0)
    ho = (in_shape[0] + pad[0] + pad[1] - kh) // strides[0] + 1
    wo = (in_shape[1] + pad[2] + pad[3] - kwid) // strides[1] + 1
    return Op(
        name, "conv2d", [src], (ho, wo, w.shape[3]), weights=w, groups=groups, strides=strides,
        padding=pad, **kw,
    )  # fmt: skip


# ----------------------------------------------------------------------------- the table
def test_every_kind_has_every_behaviour():
    assert tuple(OPS) == OP_KINDS
    for kind, s in OPS.items():
        assert s.kind == kind
        for name in ("execute", "aux_actions", "out_precision", "check", "check_inputs"):
            assert callable(getattr(s, name)), (kind, name)


def test_a_missing_behaviour_fails_loudly():
    good = OPS["add"]
    with pytest.raises(HwSimError, match="behaviour 'aux_actions' is missing"):
        OpSpec("new", good.execute, None, good.out_precision, good.check, good.check_inputs,
               False, False, False)  # fmt: skip
    with pytest.raises(HwSimError, match="unknown op kind 'swish_pool'"):
        spec("swish_pool")
    with pytest.raises(HwSimError, match="unknown kind"):
        Op("y", "swish_pool", [], (1,))
    with pytest.raises(HwSimError, match="fed, not executed"):
        OPS["input"].execute(Op("x", "input", [], (2,)), [])


def test_per_kind_validation():
    w = np.ones((3, 3, 2, 6), np.float32)
    with pytest.raises(HwSimError, match="groups=4 must divide"):
        Op("c", "conv2d", ["x"], (4, 4, 6), weights=w, groups=4)
    x = Op("x", "input", [], (4, 4, 5))
    with pytest.raises(HwSimError, match="reads 5 channels, kernel expects 3 x 2"):
        Graph("g", [x, Op("c", "conv2d", ["x"], (2, 2, 6), weights=w, groups=3)], ["c"])
    with pytest.raises(HwSimError, match="expects 2 input"):
        Op("m", "multiply", ["x", "x", "x"], (4, 4, 5))
    with pytest.raises(HwSimError, match="needs extra"):
        Op("p", "prelu", ["x"], (4, 4, 5))
    y = Op("y", "input", [], (3, 4, 5))
    with pytest.raises(HwSimError, match="cannot concatenate"):
        Graph("g", [x, y, Op("c", "concat", ["x", "y"], (4, 4, 10))], ["c"])
    with pytest.raises(HwSimError, match="cannot reshape"):
        Graph("g", [x, Op("r", "reshape", ["x"], (7, 11))], ["r"])
    with pytest.raises(HwSimError, match="gives"):
        Graph("g", [x, Op("p", "pad", ["x"], (5, 5, 5), padding=(1, 1, 1, 1))], ["p"])
    with pytest.raises(HwSimError, match="do not broadcast"):
        Graph("g", [x, y, Op("s", "subtract", ["x", "y"], (4, 4, 5))], ["s"])


# ----------------------------------------------------------------------------- float execution
def test_execute_matches_tensorflow():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 4, 5, 3)).astype(np.float32)
    y = rng.normal(size=(2, 4, 5, 3)).astype(np.float32)
    z = rng.normal(size=(2, 4, 5, 2)).astype(np.float32)

    def run(kind, inputs, shape, **kw):
        op = Op("o", kind, [f"i{k}" for k in range(len(inputs))], shape, **kw)
        return OPS[kind].execute(op, inputs)

    pad = run("pad", [x], (7, 6, 3), padding=(1, 2, 0, 1), pad_value=-1.0)
    close(pad, tf.pad(x, [[0, 0], [1, 2], [0, 1], [0, 0]], constant_values=-1.0))
    close(run("concat", [x, z], (4, 5, 5)), tf.concat([x, z], axis=-1))
    close(run("multiply", [x, y], (4, 5, 3)), tf.multiply(x, y))
    close(run("subtract", [x, y], (4, 5, 3)), tf.subtract(x, y))
    close(run("reshape", [x], (20, 3)), tf.reshape(x, (2, 20, 3)))
    close(run("flatten", [x], (60,)), tf.reshape(x, (2, 60)))
    leaky = run("prelu", [x], (4, 5, 3), extra={"alpha": 0.2})
    close(leaky, tf.nn.leaky_relu(x, alpha=0.2))
    alpha = rng.uniform(0, 0.5, size=(1, 1, 3)).astype(np.float32)
    prelu = run("prelu", [x], (4, 5, 3), extra={"alpha": alpha})
    close(prelu, tf.nn.relu(x) - alpha * tf.nn.relu(-x))


@pytest.mark.parametrize("groups,multiplier,stride", [(3, 1, 1), (3, 2, 2), (1, 1, 1)])
def test_depthwise_execute_matches_tf(groups, multiplier, stride):
    rng = np.random.default_rng(groups * 10 + multiplier)
    c = 3
    x = rng.normal(size=(2, 7, 6, c)).astype(np.float32)
    dw = rng.normal(size=(3, 3, c, multiplier)).astype(np.float32)  # Keras' depthwise kernel
    op = conv_op("d", "x", (7, 6, c), dw.reshape(3, 3, 1, c * multiplier), groups=c,
                 strides=(stride, stride))  # fmt: skip
    assert op.is_depthwise
    expect = tf.nn.depthwise_conv2d(x, dw, (1, stride, stride, 1), "SAME")
    close(OPS["conv2d"].execute(op, [x]), expect)


def test_grouped_execute_matches_tf_on_split_channels():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 6, 6, 8)).astype(np.float32)
    w = rng.normal(size=(3, 3, 2, 12)).astype(np.float32)
    bias = rng.normal(size=12).astype(np.float32)
    op = conv_op("g", "x", (6, 6, 8), w, groups=4, bias=bias, activation="relu")
    parts = [
        tf.nn.conv2d(xg, wg, 1, "SAME")
        for xg, wg in zip(tf.split(x, 4, axis=-1), tf.split(w, 4, axis=-1), strict=True)
    ]
    close(OPS["conv2d"].execute(op, [x]), tf.nn.relu(tf.concat(parts, axis=-1) + bias))


def test_emulator_runs_every_new_kind_like_tensorflow():
    """input -> pad -> depthwise (float kernel) -> prelu -> concat(., pad) -> multiply /
    subtract -> reshape -> flatten -> dense, emulated with float activations."""
    rng = np.random.default_rng(2)
    dw = rng.normal(size=(3, 3, 2, 2)).astype(np.float32)
    alpha = rng.uniform(0, 0.3, size=(1, 1, 4)).astype(np.float32)
    fc = rng.normal(size=(6 * 6 * 6, 3)).astype(np.float32)
    ops = [
        Op("x", "input", [], (6, 6, 2)),
        Op("pad", "pad", ["x"], (8, 8, 2), padding=(1, 1, 1, 1)),
        conv_op(
            "dw",
            "pad",
            (8, 8, 2),
            dw.reshape(3, 3, 1, 4),
            groups=2,
            same=False,
            weight_precision="float32",
        ),  # fmt: skip
        Op("pr", "prelu", ["dw"], (6, 6, 4), extra={"alpha": alpha}),
        Op("cat", "concat", ["pr", "x"], (6, 6, 6)),
        Op("mul", "multiply", ["cat", "cat"], (6, 6, 6)),
        Op("sub", "subtract", ["mul", "cat"], (6, 6, 6)),
        Op("rs", "reshape", ["sub"], (36, 6)),
        Op("fl", "flatten", ["rs"], (216,)),
        Op("fc", "dense", ["fl"], (3,), weights=fc, weight_precision="float32"),
    ]
    graph = Graph("all", ops, ["fc"])
    x = rng.normal(size=(3, 6, 6, 2)).astype(np.float32)
    got = Emulator(graph, act_mode="float").forward(x).outputs[0]
    t = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
    t = tf.nn.depthwise_conv2d(t, dw, (1, 1, 1, 1), "VALID")
    t = tf.nn.relu(t) - alpha * tf.nn.relu(-t)
    t = tf.concat([t, x], axis=-1)
    t = t * t - t
    t = tf.reshape(t, (3, -1)) @ fc
    np.testing.assert_allclose(got, t.numpy(), rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- integer kernels
GROUP_CASES = [
    # (c_in, c_out, groups, kernel, stride)
    (4, 4, 4, 3, 1),  # depthwise
    (3, 6, 3, 3, 2),  # depthwise, multiplier 2, strided
    (130, 130, 2, 3, 1),  # groups of 65 channels: 2 words with a tail
    (8, 4, 2, 1, 1),  # grouped 1x1
]


@pytest.mark.parametrize("backend", available_backends())
@pytest.mark.parametrize("act,weight", list(itertools.product(["ternary", "binary"], repeat=2)))
@pytest.mark.parametrize("case", range(len(GROUP_CASES)))
def test_grouped_bit_conv_is_exact(backend, act, weight, case):
    cin, cout, groups, k, s = GROUP_CASES[case]
    rng = np.random.default_rng(case)
    x = values(rng, (2, 5, 6, cin), act)
    w = values(rng, (k, k, cin // groups, cout), weight)
    padding = (*same_padding(5, k, s), *same_padding(6, k, s))
    kernels = [pack_kernel(g, weight) for g in split_groups(w, groups)]
    acc, counts = grouped(bit_conv2d, x, kernels, act=act, strides=(s, s), padding=padding,
                          backend=backend)  # fmt: skip
    assert acc.dtype == np.int32
    np.testing.assert_array_equal(acc, reference_grouped(x, w, groups, (s, s), padding))
    assert counts["macs"] == acc.size * k * k * cin // groups
    assert counts["act_values"] == x.size


@pytest.mark.parametrize("backend", available_backends())
@pytest.mark.parametrize("weight", ["ternary", "binary"])
def test_grouped_addsub_int8_is_exact(backend, weight):
    rng = np.random.default_rng(5)
    x = values(rng, (2, 6, 5, 6), "int8")
    w = values(rng, (3, 3, 1, 12), weight)
    padding = (1, 1, 1, 1)
    kernels = [pack_kernel(g, weight) for g in split_groups(w, 6)]
    acc, _ = grouped(addsub_conv2d, x, kernels, padding=padding, backend=backend)
    np.testing.assert_array_equal(acc, reference_grouped(x, w, 6, (1, 1), padding))


@pytest.mark.parametrize("act", ["ternary", "binary", "int8"])
@pytest.mark.parametrize("weight", ["ternary", "binary"])
def test_emulator_depthwise_accumulators_exact(act, weight):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(3, 6, 6, 4)).astype(np.float32)
    w = values(rng, (3, 3, 1, 8), weight)
    q = QUANTIZERS.get(act)
    op = conv_op("dw", "x", (6, 6, 4), w, groups=4, strides=(2, 2), weight_precision=weight,
                 act_precision=act, input_quantizer=q)  # fmt: skip
    graph = Graph("dw", [Op("x", "input", [], (6, 6, 4)), op], ["dw"])
    if act == "int8":
        emu = Emulator(graph, act_mode="int8", scales={"x": {"scale": 0.02}})
        xq = quantize_int8(x, 0.02)
    else:
        emu = Emulator(graph)
        xq = np.where(x >= 0, 1, -1) if act == "binary" else np.sign(x) * (np.abs(x) > 0.3)
    acc = emu.forward(x, keep_accumulators=True).accumulators["dw"]
    assert emu.plans["dw"].integer
    np.testing.assert_array_equal(acc, reference_grouped(xq, w, 4, (2, 2), op.padding))


# ----------------------------------------------------------------------------- counts
def depthwise_graph(weight="ternary", act="ternary"):
    rng = np.random.default_rng(3)
    w = values(rng, (3, 3, 1, 8), weight)
    op = conv_op("dw", "x", (6, 6, 4), w, groups=4, weight_precision=weight, act_precision=act,
                 input_quantizer=QUANTIZERS.get(act))  # fmt: skip
    ops = [
        Op("x", "input", [], (6, 6, 4)),
        op,
        Op("pr", "prelu", ["dw"], (6, 6, 8), extra={"alpha": 0.1}),
        Op("mul", "multiply", ["pr", "dw"], (6, 6, 8)),
        Op("sub", "subtract", ["mul", "pr"], (6, 6, 8)),
        Op("cat", "concat", ["sub", "x"], (6, 6, 12)),
        Op("pad", "pad", ["cat"], (8, 8, 12), padding=(1, 1, 1, 1)),
        Op("rs", "reshape", ["pad"], (64, 12)),
    ]
    return Graph("dw", ops, ["rs"])


def test_grouped_macs_and_sparse_adds():
    graph = depthwise_graph()
    op = graph.op("dw")
    assert dense_macs(op) == 6 * 6 * 8 * 3 * 3 * 4 // 4
    adds = count_sparse_adds(op, graph)
    assert adds["adds"] + adds["skipped_zero_weight"] + adds["skipped_padding"] == dense_macs(op)
    valid = np.outer([5, 6, 5], [5, 6, 5])  # output positions where each 3x3 tap is real
    assert adds["adds"] == int((valid * (op.weights != 0).reshape(3, 3, -1).sum(-1)).sum())
    assert fetch_groups(op, pe_cols=1) == 2  # each input channel feeds its 2 outputs


def test_aux_actions_of_the_new_kinds():
    graph = depthwise_graph()
    layers = analyze(graph, ACCELERATORS["bitwise"], TECH)["layers"]
    rows = {r["name"]: r["actions"].get("aux", {}) for r in layers}
    n = 6 * 6 * 8
    assert rows["pr"] == {"fp32_mult": n, "fp32_add": n}
    assert rows["mul"] == {"fp32_mult": n}
    assert rows["sub"] == {"fp32_add": n}
    assert rows["cat"] == rows["pad"] == rows["rs"] == {}


@pytest.mark.parametrize("model", [*ACCELERATORS, *BASELINES])
def test_every_model_counts_a_depthwise_graph(model):
    m = {**ACCELERATORS, **BASELINES}[model]
    for weight, act in [("ternary", "ternary"), ("binary", "binary"), ("ternary", "float32")]:
        out = analyze(depthwise_graph(weight, act), m, TECH)
        assert out["total"]["macs"] == 6 * 6 * 8 * 9
        assert out["total"]["energy_pj"]["total"] > 0


def test_bitwise_depthwise_words():
    from hw_sim.accelerators.bitwise import bitwise_word_ops

    op = depthwise_graph().op("dw")
    w = bitwise_word_ops(op)
    assert w["total_words"] == 9 * 8  # one word per tap and filter: 1 channel per group
    assert w["act_words"] == 9 * 4  # one word per tap and group
    assert w["nonzero_words"] == int((op.weights != 0).sum())


def test_cim_maps_groups_block_diagonally():
    op = depthwise_graph().op("dw")
    cim = CimConfig()  # 128 x 128, 16-row blocks, 2 cells per ternary weight
    m = crossbar_mapping(op, cim)
    assert (m["arrays"], m["row_tiles"], m["col_tiles"]) == (1, 1, 1)  # 36 rows x 16 cells
    assert m["blocks"] == math.ceil(4 * 9 / 16)
    assert m["utilisation"] == pytest.approx(72 * 2 / (128 * 128))
    big = Op("b", "conv2d", ["x"], (4, 4, 256), weights=np.ones((3, 3, 1, 256), np.int8),
             weight_precision="ternary", groups=256)  # fmt: skip
    mb = crossbar_mapping(big, cim)
    # 2304 rows = 18 row tiles; 512 cells = 4 column tiles; only diagonal arrays hold weights
    assert (mb["row_tiles"], mb["col_tiles"]) == (18, 4)
    held = {(r, g // 64) for g in range(256) for r in range(9 * g // 128, (9 * g + 8) // 128 + 1)}
    assert mb["arrays"] == len(held) < 18 * 4
    assert mb["utilisation"] == pytest.approx(2304 * 2 / (mb["arrays"] * 128 * 128))


def test_elementwise_fusion_and_precisions():
    graph = depthwise_graph()
    readers = consumer_map(graph)
    assert "dw" not in fused_tensors(graph, readers)  # read by prelu and multiply
    chain = Graph("c", graph.ops[:3], ["pr"])
    assert "dw" in fused_tensors(chain, consumer_map(chain))  # prelu is element-wise
    p = {"a": "int32", "b": "int32", "f": "float32", "t": "binary"}
    cat = Op("c", "concat", ["a", "b"], (1, 1, 2))
    assert tensor_precision(cat, ["a", "b"], p) == "int32"
    assert tensor_precision(cat, ["a", "f"], p) == "float32"
    pad = Op("p", "pad", ["t"], (3, 3, 1), padding=(1, 1, 1, 1))
    assert tensor_precision(pad, ["t"], p) == "ternary"  # binary padded with 0
    assert tensor_precision(Op("r", "reshape", ["a"], (2,)), ["a"], p) == "int32"
    assert tensor_precision(Op("s", "subtract", ["a", "b"], (2,)), ["a", "b"], p) == "int32"
    assert tensor_precision(Op("m", "multiply", ["a", "b"], (2,)), ["a", "b"], p) == "float32"
    from hw_sim.loaders import keras as keras_loader

    assert keras_loader.tensor_precision is tensor_precision


def test_static_bound_passes_through_reshape():
    ops = [
        Op("x", "input", [], (2, 2, 1)),
        Op("t", "activation", ["x"], (2, 2, 1), activation="hard_tanh"),
        Op("r", "reshape", ["t"], (4,)),
        Op("pr", "prelu", ["r"], (4,), extra={"alpha": 0.1}),
    ]
    graph = Graph("b", ops, ["pr"])
    assert static_bound(graph, "r") == 1.0
    assert static_bound(graph, "pr") is None


@pytest.mark.parametrize("act", ["ternary", "binary", "int8"])
def test_emulated_depthwise_counts_equal_the_analytic_ones(act):
    graph = depthwise_graph("ternary", "float32" if act == "int8" else act)
    graph = Graph("dw", graph.ops[:2], ["dw"])
    op = graph.op("dw")
    x = np.random.default_rng(4).normal(size=(2, 6, 6, 4)).astype(np.float32)
    scales = {"x": {"scale": 0.02}} if act == "int8" else None
    emu = Emulator(graph, act_mode="int8" if act == "int8" else "auto", scales=scales)
    counts = emu.forward(x).counts["dw"]
    assert counts["macs"] == 2 * dense_macs(op)
    if act == "int8":
        assert counts["adds_static"] == 2 * count_sparse_adds(op, graph)["adds"]
    else:
        lc = ACCELERATORS["bitwise"].count_compute(op, graph, TECH)
        assert counts["words_executed_static"] == 2 * lc.executed
