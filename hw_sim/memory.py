"""Memory model: weight and activation bits, SRAM and DRAM accesses under a buffer model.

Buffer model (parameters under ``buffer:`` in the technology table; docs/hw_sim.md):

* Layers run one after another from two on-chip SRAMs, a weight buffer and an activation
  buffer; every access moves one 64-bit word and costs the table's SRAM energy for that
  buffer's size (writes cost as reads).
* A tensor is stored at the lowest precision all its readers accept: if every consumer
  quantizes it (input quantizer), the producer writes it quantized (ternary 2 bits, binary
  1 bit); otherwise at its own precision, float and int32 (accumulator) values at the
  table's ``other_precision`` (int8: 8 bits). This rule is the same in every model
  (:meth:`~hw_sim.accelerators.common.CountingModel.tensor_bits`); a baseline differs only
  in the precision at which the layers it replaces (ternary/binary kernels) read their
  input (:meth:`~hw_sim.accelerators.common.CountingModel.compute_input_bits`).
* conv2d / dense: the kernel is read from DRAM once per inference (``packed``: 2 bits per
  ternary weight, or ``entropy``: the empirical-entropy estimate of a coded kernel, plus
  32-bit scales/biases) and written once into the weight SRAM; the weight SRAM is then
  read once per ``pe_rows`` output positions (bitwise: only nonzero words plus a 1-bit per
  word skip mask). Input activations are read from the activation SRAM once per
  ``pe_cols`` output channels that read them (a grouped conv: of their group): with
  ``window_reuse`` (a line buffer) each stored input word once, otherwise (im2col) each
  output position's patch (K = kh·kw·C_in values, all groups). CIM keeps weights resident
  in the arrays (no weight traffic) and broadcasts each input to all column tiles.
* Other ops read every input value and write every output value once (a concatenation
  copies its inputs; no in-place concatenation is modelled).
* With ``fuse_elementwise`` a tensor read only by an element-wise op (batch norm,
  activation, PReLU) is never stored
  (see :func:`fused_tensors`).
* If a layer's inputs plus output exceed the activation SRAM, its output is written to
  DRAM and read back once per consumer. The network input is read from DRAM and its
  outputs written to DRAM once.
"""

from __future__ import annotations

import math

from hw_sim.accelerators.common import CountingModel, LayerCount
from hw_sim.geometry import elements, words
from hw_sim.ir import Graph, Op
from hw_sim.ops import OPS
from hw_sim.technology import Tech
from keras_ternary.contract.entropy import values_entropy_bits

__all__ = [
    "consumer_map",
    "fused_tensors",
    "layer_memory",
    "tensor_storage_bits",
    "weight_storage_bits",
]


def consumer_map(graph: Graph) -> dict[str, list[Op]]:
    """Tensor name -> the ops that read it."""
    readers: dict[str, list[Op]] = {op.name: [] for op in graph.ops}
    for op in graph.ops:
        for name in op.inputs:
            readers[name].append(op)
    return readers


def fused_tensors(graph: Graph, readers: dict[str, list[Op]], enabled: bool = True) -> set[str]:
    """Tensors never stored: the only reader is an element-wise op (batch norm, activation,
    PReLU: :attr:`hw_sim.ops.OpSpec.elementwise`) fused into the producer.

    With ``buffer.fuse_elementwise`` a chain such as conv -> batch norm -> activation keeps
    its intermediate values in the datapath; only the chain's last tensor is written.
    """
    if not enabled:
        return set()
    outputs = set(graph.outputs)
    return {
        op.name
        for op in graph.ops
        if op.kind != "input"
        and op.name not in outputs
        and len(readers[op.name]) == 1
        and OPS[readers[op.name][0].kind].elementwise
    }


def tensor_storage_bits(
    graph: Graph, model: CountingModel, readers: dict[str, list[Op]]
) -> dict[str, int]:
    """Bits per stored value of every tensor under ``model`` (see the module docstring)."""
    storage = {}
    for op in graph.ops:
        own = model.tensor_bits(op.out_precision)
        wanted = [model.compute_input_bits(c) if c.is_compute else None for c in readers[op.name]]
        storage[op.name] = max([own if w is None else w for w in wanted] or [own])
    return storage


def weight_storage_bits(op: Op, model: CountingModel) -> tuple[int, float]:
    """(packed, entropy-coded estimate) bits of a kernel plus its 32-bit scales and biases."""
    extra = 32 * op.out_channels * ((op.weight_scale is not None) + (op.bias is not None))
    packed = op.n_weights * model.weight_bits(op) + extra
    if model.is_baseline or not op.is_quantized:
        return packed, float(packed)
    return packed, op.n_weights * values_entropy_bits(op.weights) + extra


def layer_memory(
    op: Op,
    graph: Graph,
    lc: LayerCount,
    storage: dict[str, int],
    readers: dict[str, list[Op]],
    model: CountingModel,
    tech: Tech,
    fused: set[str] = frozenset(),
) -> dict:
    """Bits and 64-bit accesses of one op; also adds the sram/dram actions to ``lc``.

    ``act_bits_in`` / ``act_bits_out`` are the tensors' sizes; traffic counts only tensors
    that are stored (not in ``fused``).
    """
    buf = tech.buffer
    out_bits = elements(op.output_shape) * storage[op.name]
    in_bits = sum(elements(graph.shape_of(n)) * storage[n] for n in op.inputs)
    stored_out = 0 if op.name in fused else out_bits
    stored_in = [elements(graph.shape_of(n)) * storage[n] for n in op.inputs if n not in fused]
    m = {
        "weight_bits_packed": 0,
        "weight_bits_entropy": 0.0,
        "act_bits_in": in_bits,
        "act_bits_out": out_bits,
        "sram_weight_accesses": 0,
        "sram_act_reads": 0,
        "sram_act_writes": words(stored_out),
        "dram_reads": 0,
        "dram_writes": 0,
        "spills_to_dram": False,
    }
    if op.kind == "input":
        m["dram_reads"] = words(out_bits)
    elif op.is_compute:
        packed, coded = weight_storage_bits(op, model)
        m["weight_bits_packed"], m["weight_bits_entropy"] = packed, coded
        if not lc.details.get("weights_resident", False):
            stored = coded if buf.weight_storage == "entropy" else packed
            m["dram_reads"] += words(stored)
            per_pass = lc.details.get(
                "weight_words_per_pass", words(op.n_weights * model.weight_bits(op))
            )
            passes = math.ceil(op.output_positions / buf.pe_rows)
            m["sram_weight_accesses"] = words(packed) + per_pass * passes
        groups = lc.details.get("act_fetch_groups", 1)
        if buf.window_reuse:
            m["sram_act_reads"] = sum(words(b) for b in stored_in) * groups
        else:
            patch = lc.details.get(
                "act_words_per_position", words(op.fan_in * op.groups * storage[op.inputs[0]])
            )
            m["sram_act_reads"] = op.output_positions * patch * groups
    else:
        m["sram_act_reads"] = sum(words(b) for b in stored_in)
    if stored_out and sum(stored_in) + stored_out > buf.act_sram_kib * 8192:
        m["spills_to_dram"] = True
        m["dram_writes"] += words(out_bits)
        m["dram_reads"] += words(out_bits) * len(readers[op.name])
    if op.name in graph.outputs:
        m["dram_writes"] += words(out_bits)
    lc.add("sram", "sram_weight", m["sram_weight_accesses"])
    lc.add("sram", "sram_act", m["sram_act_reads"] + m["sram_act_writes"])
    lc.add("dram", "dram", m["dram_reads"] + m["dram_writes"])
    return m
