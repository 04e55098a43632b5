"""One tensor-storage rule for every model: a tensor is stored at the same precision, and its
memory traffic counted the same number of times, on each accelerator and baseline, unless a
layer the baseline replaces (a ternary/binary kernel) reads it.

The model is DenseNet-like (larq BinaryDenseNet's block): binary convolutions whose int32
accumulators (binary x binary, no bias or scale) are concatenated with float features. Before
the rule was shared, the accelerators stored those accumulators at 32 bits and the baselines
at ``other_precision``, so on BinaryDenseNet28 the block's tensors spilled to DRAM on
``bitwise`` only (docs/hw_sim.md §4).
"""

from __future__ import annotations

import larq as lq
import pytest
import tensorflow as tf

from hw_sim.accelerators import ACCELERATORS, BASELINES
from hw_sim.analysis import analyze, to_graph
from hw_sim.memory import consumer_map, tensor_storage_bits
from hw_sim.technology import load_tech

MODELS = {**ACCELERATORS, **BASELINES}
BLOCKS = 3


def _dense_block_model() -> tf.keras.Model:
    """Float stem, three binary conv + Concatenate steps, a float classifier."""
    inputs = tf.keras.Input((8, 8, 3))
    x = tf.keras.layers.Conv2D(16, 3, padding="same", name="stem")(inputs)
    for i in range(BLOCKS):
        y = tf.keras.layers.BatchNormalization(name=f"bn{i}")(x)
        y = lq.layers.QuantConv2D(
            8,
            3,
            padding="same",
            use_bias=False,
            input_quantizer="ste_sign",
            kernel_quantizer="ste_sign",
            kernel_constraint="weight_clip",
            name=f"bconv{i}",
        )(y)
        x = tf.keras.layers.Concatenate(name=f"concat{i}")([x, y])
    x = tf.keras.layers.BatchNormalization(name="bn_out")(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    return tf.keras.Model(inputs, tf.keras.layers.Dense(4, name="fc")(x))


@pytest.fixture(scope="module")
def graph():
    tf.keras.utils.set_random_seed(0)
    return to_graph(_dense_block_model())


def _replaced_reader(graph, readers) -> set[str]:
    """Tensors read by a layer with a ternary/binary kernel (the baselines run those their
    own way, at their own input precision)."""
    return {
        name
        for name, ops in readers.items()
        if any(op.weight_precision in ("ternary", "binary") for op in ops)
    }


def test_graph_has_int32_accumulators_read_by_concat(graph):
    ops = {op.name: op for op in graph.ops}
    for i in range(BLOCKS):
        assert ops[f"bconv{i}"].out_precision == "int32"
        assert ops[f"concat{i}"].inputs[-1] == f"bconv{i}"


@pytest.mark.parametrize("precision, bits", [("int8", 8), ("float32", 32)])
def test_same_tensor_same_storage_in_every_model(graph, precision, bits):
    tech = load_tech({"other_precision": precision})
    readers = consumer_map(graph)
    storage = {
        name: tensor_storage_bits(graph, m.for_tech(tech), readers) for name, m in MODELS.items()
    }
    replaced = _replaced_reader(graph, readers)
    assert replaced  # the block convs' inputs
    for op in graph.ops:
        if op.name in replaced:
            continue
        seen = {name: storage[name][op.name] for name in MODELS}
        assert len(set(seen.values())) == 1, (op.name, op.out_precision, seen)
    for i in range(BLOCKS):  # the int32 accumulators are written back at other_precision
        assert storage["bitwise"][f"bconv{i}"] == bits


def test_concat_traffic_counted_alike_in_every_model(graph):
    # a small activation buffer, so that the block's tensors spill to DRAM
    tech = load_tech({"buffer": {"act_sram_kib": 0.5}})
    rows = {
        name: {r["name"]: r for r in analyze(graph, m, tech)["layers"]}
        for name, m in MODELS.items()
    }
    keys = (
        "act_bits_in",
        "act_bits_out",
        "sram_act_reads",
        "sram_act_writes",
        "dram_reads",
        "dram_writes",
        "spills_to_dram",
    )
    spilled = 0
    for i in range(BLOCKS):
        for layer in (f"concat{i}",):
            seen = {name: tuple(r[layer][k] for k in keys) for name, r in rows.items()}
            assert len(set(seen.values())) == 1, (layer, seen)
            spilled += rows["bitwise"][layer]["spills_to_dram"]
        # the conv's output is written (and spilled) alike wherever it reads 1-bit inputs
        conv = f"bconv{i}"
        same_input = ("bitwise", "zeroskip", "cim", "binary")
        seen = {
            name: tuple(
                rows[name][conv][k] for k in ("act_bits_out", "dram_writes", "spills_to_dram")
            )
            for name in same_input
        }
        assert len(set(seen.values())) == 1, (conv, seen)
    assert spilled  # the check above covered the spill rule
