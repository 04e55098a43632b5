"""Hand-computed action counts of every hw_sim model on tiny layers (the contract)."""

import numpy as np
import pytest

from hw_sim.accelerators import ACCELERATORS, BASELINES
from hw_sim.accelerators.common import count_sparse_adds
from hw_sim.analysis import analyze, energy_pj, profile_model
from hw_sim.geometry import dense_macs, valid_tap_counts
from hw_sim.ir import Graph, Op, Quantizer, same_padding
from hw_sim.technology import load_tech

TECH = load_tech()
FP32_TECH = load_tech({"other_precision": "float32"})
TERNARY_IN = Quantizer("ternary", delta=0.1)
SIGN_IN = Quantizer("sign")


def dense_graph(weights, act="ternary", wprec="ternary", n_in=None):
    n_in = weights.shape[0] if n_in is None else n_in
    iq = {"ternary": TERNARY_IN, "binary": SIGN_IN}.get(act)
    ops = [
        Op("x", "input", [], (n_in,)),
        Op(
            "fc",
            "dense",
            ["x"],
            (weights.shape[1],),
            act_precision=act,
            weights=weights.astype(np.int8 if wprec != "float32" else np.float32),
            weight_precision=wprec,
            input_quantizer=iq,
        ),
    ]
    return Graph("dense", ops, ["fc"])


def conv_graph(weights, in_shape, strides=(1, 1), act="ternary", wprec="ternary"):
    kh, kw = weights.shape[:2]
    top, bottom = same_padding(in_shape[0], kh, strides[0])
    left, right = same_padding(in_shape[1], kw, strides[1])
    out = (-(-in_shape[0] // strides[0]), -(-in_shape[1] // strides[1]), weights.shape[3])
    iq = {"ternary": TERNARY_IN, "binary": SIGN_IN}.get(act)
    ops = [
        Op("x", "input", [], in_shape),
        Op(
            "conv",
            "conv2d",
            ["x"],
            out,
            act_precision=act,
            weights=weights.astype(np.int8),
            weight_precision=wprec,
            input_quantizer=iq,
            strides=strides,
            padding=(top, bottom, left, right),
        ),
    ]
    return Graph("conv", ops, ["conv"])


def compute_actions(graph, model, tech=TECH):
    op = graph.op(graph.outputs[0])
    bound = ACCELERATORS.get(model, BASELINES.get(model)).for_tech(tech)
    return bound.count_compute(op, graph, tech)


# --- bitwise ---------------------------------------------------------------------------


def test_bitwise_ternary_x_ternary_word_skipping():
    w = np.zeros((70, 2))
    w[0, 0], w[5, 0] = 1, -1  # filter 0: only word 0 nonzero
    w[65, 1] = 1  # filter 1: only word 1 nonzero
    lc = compute_actions(dense_graph(w), "bitwise")
    # 2 words per filter, 2 of 4 nonzero; per word 1 XOR, 2 AND, 2 POPCNT, 2 ADD; +1 ADD/output
    assert lc.actions["compute"] == {"xor64": 2, "and64": 4, "popcnt64": 4, "int32_add": 6}
    assert (lc.executed, lc.skipped, lc.unit) == (2, 2, "word-ops")
    e = energy_pj(lc.actions, TECH)["compute"]
    assert e == pytest.approx(2 * 0.072 + 4 * 0.024 + 4 * 0.24 + 6 * 0.1)


def test_bitwise_ternary_act_x_binary_weight_conv_shares_activation_popcount():
    w = np.where(np.arange(54).reshape(3, 3, 3, 2) % 2, 1, -1)
    lc = compute_actions(conv_graph(w, (4, 4, 3), wprec="binary"), "bitwise")
    # 16 positions x 2 filters x 9 words = 288 word steps (1 XOR, 1 AND, 1 POPCNT, 1 ADD);
    # popcnt(m_a): 16 positions x 9 words, shared by both filters (+1 ADD each); +32 combines
    assert lc.actions["compute"] == {
        "xor64": 288,
        "and64": 288,
        "popcnt64": 288 + 144,
        "int32_add": 288 + 144 + 32,
    }
    assert (lc.executed, lc.skipped) == (288, 0)


def test_bitwise_binary_x_binary_and_binary_x_ternary():
    w = np.ones((128, 3))
    lc = compute_actions(dense_graph(w, act="binary", wprec="binary"), "bitwise")
    assert lc.actions["compute"] == {"xor64": 6, "popcnt64": 6, "int32_add": 6 + 3}
    w = np.zeros((64, 2))
    w[10, 0] = -1  # filter 1 all zero: its only word is skipped
    lc = compute_actions(dense_graph(w, act="binary"), "bitwise")
    assert lc.actions["compute"] == {"xor64": 1, "and64": 1, "popcnt64": 1, "int32_add": 1 + 2}
    assert (lc.executed, lc.skipped) == (1, 1)


def test_bitwise_falls_back_to_adds_for_float_activations():
    w = np.zeros((3, 3, 1, 1))
    w[1, 1, 0, 0] = 1
    lc = compute_actions(conv_graph(w, (3, 3, 1), act="float32"), "bitwise")
    assert lc.actions["compute"] == {"int32_add": 9}  # float tensors held at int8 (default)
    assert lc.mode.startswith("fallback")
    lc = compute_actions(conv_graph(w, (3, 3, 1), act="float32"), "bitwise", FP32_TECH)
    assert lc.actions["compute"] == {"fp32_add": 9}


# --- zeroskip --------------------------------------------------------------------------


def test_valid_taps_same_padding_stride_1_and_2():
    g = conv_graph(np.ones((3, 3, 1, 1)), (3, 3, 1))
    expected = np.outer([2, 3, 2], [2, 3, 2])  # e.g. the corner tap misses row 0 and column 0
    np.testing.assert_array_equal(valid_tap_counts(g.op("conv"), (3, 3, 1)), expected)
    g = conv_graph(np.ones((3, 3, 1, 1)), (4, 4, 1), strides=(2, 2))
    assert g.op("conv").padding == (0, 1, 0, 1)
    expected = np.outer([2, 2, 1], [2, 2, 1])  # TF 'same': the extra pad goes after
    np.testing.assert_array_equal(valid_tap_counts(g.op("conv"), (4, 4, 1)), expected)


def test_zeroskip_conv_skips_zero_weights_and_padding():
    w = np.ones((3, 3, 1, 1))
    w[1, 1] = 0  # the centre tap sees all 9 outputs
    g = conv_graph(w, (3, 3, 1), act="float32")
    lc = compute_actions(g, "zeroskip")
    # 81 dense MACs: 49 touch real inputs, 32 padding; of the 49, 9 meet the zero weight
    assert dense_macs(g.op("conv")) == 81
    assert lc.actions["compute"] == {"int32_add": 40}  # float input held at int8 (default)
    assert compute_actions(g, "zeroskip", FP32_TECH).actions["compute"] == {"fp32_add": 40}
    assert lc.details["skipped_zero_weight"] == 9 and lc.details["skipped_padding"] == 32
    assert lc.executed + lc.skipped == 81
    lc = compute_actions(conv_graph(w, (3, 3, 1), act="ternary"), "zeroskip")
    assert lc.actions["compute"] == {"int32_add": 40}


def test_zeroskip_dynamic_activation_skipping():
    w = np.ones((3, 3, 1, 1))
    w[1, 1] = 0
    g = conv_graph(w, (3, 3, 1), act="int8")
    adds = count_sparse_adds(g.op("conv"), g, activation_sparsity=0.25)
    assert adds["adds"] == 30 and adds["skipped_zero_activation"] == 10
    tech = load_tech({"accelerators": {"zeroskip": {"activation_sparsity": 0.25}}})
    lc = compute_actions(g, "zeroskip", tech)
    assert lc.actions["compute"] == {"int32_add": 30}
    assert lc.executed + lc.skipped == 81


# --- cim -------------------------------------------------------------------------------


def test_cim_tiles_blocks_adc_and_utilisation():
    w = np.zeros((40, 3))
    w[3, 0] = 1  # block 0, column tile 0
    w[39, 2] = -1  # block 4, column tile 1
    tech = load_tech(
        {"accelerators": {"cim": {"rows": 16, "cols": 4, "block_rows": 8, "ternary_cells": 2}}}
    )
    lc = compute_actions(dense_graph(w), "cim", tech)
    d = lc.details
    # 3 row tiles x 2 column tiles (2 channels x 2 cells per tile); 240 cells of 384
    assert (d["row_tiles"], d["col_tiles"], d["arrays"]) == (3, 2, 6)
    assert d["utilisation"] == pytest.approx(240 / 384)
    # per pulse: 2 of 10 blocks driven: 8 rows x 4 columns + 8 rows x 2 columns = 48 cells;
    # ADC: 4 columns (row tile 0, col tile 0) + 2 columns (row tile 2, col tile 1) = 6
    assert (d["cell_ops"], d["conversions"], d["active_blocks"], d["blocks"]) == (48, 6, 2, 10)
    # ternary activations: 2 pulses
    assert lc.actions["compute"] == {"cim_cell": 96, "adc_conversion": 12, "int32_add": 12}
    assert (lc.executed, lc.skipped) == (4, 16)
    e = energy_pj(lc.actions, tech, ACCELERATORS["cim"])["compute"]
    assert e == pytest.approx(96 * 0.00243 + 12 * 0.01 * 2**5 + 12 * 0.1)


def test_cim_one_ternary_cell_and_int8_pulses():
    w = np.ones((16, 4))
    tech = load_tech({"accelerators": {"cim": {"rows": 16, "cols": 4, "ternary_cells": 1}}})
    lc = compute_actions(dense_graph(w, act="int8"), "cim", tech)
    assert lc.details["arrays"] == 1 and lc.details["utilisation"] == 1.0
    assert lc.details["pulses"] == 8
    assert lc.actions["compute"]["adc_conversion"] == 8 * 4
    assert lc.actions["compute"]["cim_cell"] == 8 * 64


# --- baselines -------------------------------------------------------------------------


def test_baselines_on_a_conv():
    w = np.where(np.arange(54).reshape(3, 3, 3, 2) % 3, 1, 0)
    g = conv_graph(w, (4, 4, 3))
    macs = 16 * 27 * 2
    assert compute_actions(g, "fp32").actions["compute"] == {"fp32_mult": macs, "fp32_add": macs}
    assert compute_actions(g, "int8").actions["compute"] == {"int8_mult": macs, "int32_add": macs}
    # 32 outputs x 9 words: 1 XOR + 1 POPCNT + 1 ADD per word, +1 ADD per output
    assert compute_actions(g, "binary").actions["compute"] == {
        "xor64": 288,
        "popcnt64": 288,
        "int32_add": 288 + 32,
    }


# --- memory and totals -----------------------------------------------------------------


def test_memory_model_hand_counts():
    w = np.zeros((3, 3, 3, 2))
    w[0, 0, 0, 0] = 1
    g = conv_graph(w, (4, 4, 3))
    rows = {r["name"]: r for r in analyze(g, ACCELERATORS["bitwise"], TECH)["layers"]}
    x, conv = rows["x"], rows["conv"]
    # the input is quantized on write (its only reader has a ternary input quantizer)
    assert x["act_bits_out"] == 48 * 2 and x["dram_reads"] == 2 and x["sram_act_writes"] == 2
    assert conv["weight_bits_packed"] == 54 * 2
    assert conv["dram_reads"] == 2  # 108 bits
    # weight SRAM: fill 2 words + (1 nonzero word x 2 planes + 1 skip-mask word) x 1 pass
    assert conv["sram_weight_accesses"] == 2 + 3
    assert conv["sram_act_reads"] == 2  # window reuse: the 96-bit input once, 1 fetch group
    # the float output is stored at other_precision: int8 (default) 32 x 8 bits = 4 words
    assert conv["act_bits_out"] == 32 * 8 and conv["sram_act_writes"] == 4
    assert conv["dram_writes"] == 4  # graph output
    e = conv["energy_pj"]
    # weight buffer 32 KiB: 20 pJ; activation buffer 256 KiB: the 1 MiB entry, 100 pJ
    assert e["sram"] == pytest.approx(5 * 20 + (2 + 4) * 100)
    assert e["dram"] == pytest.approx((2 + 4) * 1950)
    fp32 = load_tech({"other_precision": "float32"})
    conv32 = {r["name"]: r for r in analyze(g, ACCELERATORS["bitwise"], fp32)["layers"]}["conv"]
    assert conv32["act_bits_out"] == 32 * 32 and conv32["sram_act_writes"] == 16
    assert conv32["energy_pj"]["dram"] == pytest.approx((2 + 16) * 1950)


def test_totals_are_sums_of_layers_and_all_matches_single():
    rng = np.random.default_rng(0)
    w = rng.integers(-1, 2, size=(3, 3, 3, 4))
    g = conv_graph(w, (6, 6, 3))
    everything = profile_model(g, "all")
    for name in ACCELERATORS:
        single = profile_model(g, name)
        assert single["total"] == everything["accelerators"][name]["total"]
        for key in ("macs", "weights", "zero_weights", "dram_reads", "sram_act_reads"):
            assert single["total"][key] == sum(r[key] for r in single["layers"])
        for c in ("compute", "aux", "sram", "dram", "total"):
            assert single["total"]["energy_pj"][c] == pytest.approx(
                sum(r["energy_pj"][c] for r in single["layers"])
            )
        base = single["total"]["baselines"]["fp32"]
        assert base["saving_x"] == pytest.approx(
            base["energy_pj"]["total"] / single["total"]["energy_pj"]["total"]
        )


def test_elementwise_fusion_stores_only_the_chain_output():
    w = np.ones((1, 1, 2, 2))
    g = conv_graph(w, (2, 2, 2))
    bn = Op(
        "bn",
        "batchnorm",
        ["conv"],
        (2, 2, 2),
        gamma=np.ones(2),
        beta=np.zeros(2),
        moving_mean=np.zeros(2),
        moving_variance=np.ones(2),
    )
    act = Op("act", "activation", ["bn"], (2, 2, 2), activation="hard_tanh")
    g = Graph("chain", [*g.ops, bn, act], ["act"])
    model = ACCELERATORS["zeroskip"]
    tech = load_tech({"other_precision": "float32"})  # 8 float values = 256 bits = 4 words
    fused = {r["name"]: r for r in analyze(g, model, tech)["layers"]}
    # conv output (8 values) and bn output stay in the datapath
    assert fused["conv"]["sram_act_writes"] == 0 and fused["bn"]["sram_act_reads"] == 0
    assert fused["bn"]["sram_act_writes"] == 0 and fused["act"]["sram_act_reads"] == 0
    assert fused["act"]["sram_act_writes"] == 4 and fused["act"]["dram_writes"] == 4
    plain_tech = load_tech({"buffer": {"fuse_elementwise": False}, "other_precision": "float32"})
    plain = {r["name"]: r for r in analyze(g, model, plain_tech)["layers"]}
    assert plain["conv"]["sram_act_writes"] == 4 and plain["bn"]["sram_act_reads"] == 4
    assert plain["bn"]["sram_act_writes"] == 4 and plain["act"]["sram_act_reads"] == 4
    # compute and aux counts do not depend on the buffer model
    for name in ("conv", "bn", "act"):
        assert {k: v for k, v in fused[name]["actions"].items() if k in ("compute", "aux")} == {
            k: v for k, v in plain[name]["actions"].items() if k in ("compute", "aux")
        }
