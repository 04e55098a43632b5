"""Shared pieces of the counting models: the per-layer record and rules every model uses."""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from hw_sim.geometry import dense_macs, elements, valid_tap_counts
from hw_sim.ir import Graph, Op, bits_of
from hw_sim.ops import OPS
from hw_sim.technology import MAC_ACTIONS, Tech

__all__ = [
    "COMPONENTS",
    "CountingModel",
    "LayerCount",
    "accumulate_action",
    "count_aux",
    "count_epilogue",
    "count_macs",
    "count_sparse_adds",
    "fetch_groups",
    "float_kernel_fallback",
    "float_layer_precision",
]

#: Precisions stored at ``other_precision`` (:meth:`CountingModel.tensor_bits`).
_WIDE = ("float32", "int32")

#: Energy components of every layer.
COMPONENTS = ("compute", "aux", "sram", "dram")


@dataclass
class LayerCount:
    """Actions of one op under one model, by energy component.

    ``executed`` / ``skipped`` are in the model's native ``unit`` (e.g. 64-bit word
    operations, additions, crossbar row-block activations); ``details`` carries the
    model-specific numbers and the hints the memory model needs.
    """

    unit: str = ""
    mode: str = ""
    executed: float = 0.0
    skipped: float = 0.0
    actions: dict[str, dict[str, float]] = field(default_factory=dict)
    details: dict = field(default_factory=dict)

    def add(self, component: str, action: str, count: float) -> None:
        """Add ``count`` occurrences of ``action`` to ``component``."""
        if count:
            bucket = self.actions.setdefault(component, {})
            bucket[action] = bucket.get(action, 0) + count


class CountingModel:
    """Interface of an accelerator or baseline model.

    A model with parameters names its section of the technology table, ``accelerators:
    <tech_section>:`` in the YAML, and the dataclass ``Config`` that reads (and checks) it:
    a new accelerator is its file, its entry in :data:`hw_sim.accelerators.ACCELERATORS`
    and its YAML section.
    """

    name = ""
    title = ""
    is_baseline = False
    tech_section: str | None = None
    Config: type | None = None
    #: How float-kernel layers run and float / int32 tensors are stored (``Tech.other_precision``);
    #: :meth:`for_tech` binds it to a table.
    other_precision = "int8"

    def for_tech(self, tech: Tech) -> CountingModel:
        """This model with ``tech``'s ``other_precision`` (a copy; models are shared)."""
        if tech.other_precision == self.other_precision:
            return self
        bound = copy.copy(self)
        bound.other_precision = tech.other_precision
        return bound

    def config(self, tech: Tech):
        """This model's parameters: section ``accelerators.<tech_section>`` as a ``Config``."""
        return tech.section(self.tech_section, self.Config)

    def tech_summary(self, tech: Tech) -> dict:
        """This model's entries in a report's ``tech`` summary (also checks its section)."""
        if self.tech_section is None:
            return {}
        return {self.tech_section: dataclasses.asdict(self.config(tech))}

    def action_pj(self, action: str, tech: Tech) -> float:
        """Energy of one ``action``; a model may price its own actions from its parameters."""
        return tech.action_pj(action)

    def count_compute(self, op: Op, graph: Graph, tech: Tech) -> LayerCount:
        """Count a conv2d / dense op."""
        raise NotImplementedError

    def compute_input_bits(self, op: Op) -> int | None:
        """Bits at which a conv2d / dense reads its input; ``None``: the tensor's own bits."""
        return bits_of(op.act_precision) if op.input_quantizer is not None else None

    def tensor_bits(self, precision: str) -> int:
        """Bits per stored value of a tensor of ``precision`` that no quantizer shrinks.

        The one storage rule of every model, accelerators and baselines alike (they differ
        only in :meth:`compute_input_bits`): wide values -- float, and the int32
        accumulators of integer layers -- are written back at ``other_precision`` (int8:
        8 bits, requantized on write-back as an int8 datapath does; float32: 32 bits);
        int8, ternary and binary values at their own width.
        """
        return bits_of(self.other_precision if precision in _WIDE else precision)

    def weight_bits(self, op: Op) -> int:
        """Bits per stored kernel weight (float kernels at ``other_precision``)."""
        return self.tensor_bits(op.weight_precision)

    def counts_input_quantization(self) -> bool:
        """Whether the model pays for quantizing activations (comparisons against Δ)."""
        return True


def accumulate_action(act_precision: str, other_precision: str) -> str:
    """The add that accumulates one product of a ternary/binary kernel (zero skipping).

    Integer activations accumulate in int32. Float activations are held at
    ``other_precision`` like every float tensor (:meth:`CountingModel.tensor_bits`): int8
    values accumulate in int32 too, as on the INT8 baseline; with ``float32`` the add is fp32.
    """
    if act_precision == "float32" and other_precision == "float32":
        return "fp32_add"
    return "int32_add"


def count_sparse_adds(op: Op, graph: Graph, activation_sparsity: float = 0.0) -> dict:
    """Element-level zero skipping of a ternary/binary kernel (the ``zeroskip`` rule).

    One add/subtract per (nonzero weight, output position whose tap reads a real input):
    ``executed = Σ_taps valid(tap) · nnz(tap)``; zero weights and padding taps are skipped,
    and an expected fraction ``activation_sparsity`` of the remaining adds meets a zero
    activation and is skipped too. ``executed + skipped == dense MACs``.
    """
    in_shape = graph.shape_of(op.inputs[0])
    valid = valid_tap_counts(op, in_shape)
    kh, kw = op.kernel_size
    nnz = (op.weights != 0).reshape(kh, kw, -1).sum(axis=-1).astype(np.int64)
    per_tap = op.in_channels * op.out_channels
    adds = int((valid * nnz).sum())
    zero_w = int((valid * (per_tap - nnz)).sum())
    padding = int(((op.output_positions - valid) * per_tap).sum())
    executed = adds * (1.0 - activation_sparsity) if activation_sparsity else adds
    return {
        "adds": executed,
        "skipped_zero_weight": zero_w,
        "skipped_padding": padding,
        "skipped_zero_activation": adds - executed,
    }


def count_macs(op: Op, lc: LayerCount, precision: str) -> None:
    """Dense multiply-accumulates at ``precision`` (a key of ``MAC_ACTIONS``), every MAC."""
    macs = dense_macs(op)
    mult, add = MAC_ACTIONS[precision]
    lc.add("compute", mult, macs)
    lc.add("compute", add, macs)
    lc.executed, lc.skipped, lc.unit = macs, 0, "MACs"


def float_layer_precision(op: Op, tech: Tech) -> str:
    """MAC precision of a layer whose kernel is not ternary/binary: ``other_precision``,
    but an int8 kernel always int8 (a key of ``MAC_ACTIONS``)."""
    return "int8" if "int8" in (op.weight_precision, tech.other_precision) else "float32"


def float_kernel_fallback(op: Op, tech: Tech, where: str = "") -> LayerCount | None:
    """The counts of a layer whose kernel is not ternary/binary, else None.

    Every model -- each accelerator and each baseline -- runs such a layer (e.g. an
    unquantized first or last layer) as dense MACs at the table's ``other_precision``
    (an int8 kernel always at int8), so that their totals are like for like. ``where``
    prefixes the mode (e.g. ``"digital "`` for the CIM model).
    """
    if op.weight_precision in ("ternary", "binary"):
        return None
    precision = float_layer_precision(op, tech)
    lc = LayerCount(mode=f"fallback: {where}{precision} MAC ({op.weight_precision} kernel)")
    count_macs(op, lc, precision)
    lc.details.update(act_fetch_groups=fetch_groups(op, tech.buffer.pe_cols))
    return lc


def count_epilogue(op: Op, lc: LayerCount) -> None:
    """Per-output work after the inner product: channel scale (mult) and bias (add)."""
    outputs = op.output_positions * op.out_channels
    if op.weight_scale is not None:
        lc.add("compute", "fp32_mult", outputs)
    if op.bias is not None:
        lc.add("compute", "fp32_add", outputs)


def count_aux(op: Op, graph: Graph, lc: LayerCount, model: CountingModel) -> None:
    """Element-wise and pooling work, charged in fp32 alike in every model.

    The op kind's :attr:`hw_sim.ops.OpSpec.aux_actions` (batch norm: 1 mult + 1 add per
    element; activations, fused or not: :data:`hw_sim.ops.ACTIVATION_COST`; add: inputs - 1
    adds, subtract 1 add, multiply 1 mult, PReLU 1 mult + 1 compare per element; pooling:
    window - 1 comparisons/adds per output, + 1 mult for averages; pad, concat, reshape,
    flatten: none), plus the input quantizer of a conv2d / dense: 2 comparisons (ternary) or
    1 (sign) per input element (a comparison costs an add).
    """
    in_shapes = [graph.shape_of(n) for n in op.inputs]
    for action, count in OPS[op.kind].aux_actions(op, in_shapes).items():
        lc.add("aux", action, count)
    if op.is_compute and op.input_quantizer is not None and model.counts_input_quantization():
        compares = 1 if op.input_quantizer.precision == "binary" else 2
        lc.add("aux", "fp32_add", compares * elements(in_shapes[0]))


def fetch_groups(op: Op, pe_cols: int) -> int:
    """How many times each input activation word is fetched: once per ``pe_cols`` of the
    outputs that read it (a grouped conv's input channel feeds only its group's outputs)."""
    return math.ceil(op.out_channels // op.groups / pe_cols)
