"""Baselines for the same network: FP32 MAC, INT8 MAC and binary XNOR-popcount.

The baselines differ from each other and from the accelerators only in how they run the
layers with ternary/binary kernels, every one dense (no skipping, padding included):

* ``fp32``: per MAC one fp32 mult + one fp32 add; weights and inputs of these layers 32-bit.
* ``int8``: per MAC one int8 mult + one int32 add; weights and inputs 8-bit.
* ``binary``: kernels and inputs binarized; per 64-bit word one XOR + one POPCNT + one int32
  add, per output one subtract (``N - 2·popcnt``); weights and inputs 1-bit.

Everything else is the same in every model, accelerators included: layers whose kernel is
float run as dense MACs at the technology table's ``other_precision`` (int8 by default;
:func:`~hw_sim.accelerators.common.float_kernel_fallback`), other tensors are stored at that
precision, and element-wise ops cost the same fp32 work. Baselines pay no activation
quantization.
"""

from __future__ import annotations

import math

from hw_sim.accelerators.common import (
    CountingModel,
    LayerCount,
    count_macs,
    fetch_groups,
    float_kernel_fallback,
)
from hw_sim.ir import Graph, Op, bits_of
from hw_sim.technology import Tech

__all__ = ["BinaryBaseline", "Fp32Baseline", "Int8Baseline"]


class _Baseline(CountingModel):
    is_baseline = True
    precision = "float32"  # of the layers with ternary/binary kernels

    @staticmethod
    def _replaces(op: Op) -> bool:
        """Whether the baseline runs ``op`` its own way (its kernel is ternary/binary)."""
        return op.weight_precision in ("ternary", "binary")

    def compute_input_bits(self, op: Op) -> int | None:
        """A replaced layer reads at the baseline's precision; any other as in every model."""
        return bits_of(self.precision) if self._replaces(op) else super().compute_input_bits(op)

    def weight_bits(self, op: Op) -> int:
        return bits_of(self.precision) if self._replaces(op) else super().weight_bits(op)

    def counts_input_quantization(self) -> bool:
        return False

    def count_compute(self, op: Op, graph: Graph, tech: Tech) -> LayerCount:
        fallback = float_kernel_fallback(op, tech)
        if fallback is not None:
            return fallback
        lc = LayerCount(mode=self.title)
        if self.precision in ("float32", "int8"):
            count_macs(op, lc, self.precision)
            lc.details.update(act_fetch_groups=fetch_groups(op, tech.buffer.pe_cols))
        else:
            self._count_binary(op, lc, tech)
        return lc

    def _count_binary(self, op: Op, lc: LayerCount, tech: Tech) -> None:
        raise NotImplementedError


class Fp32Baseline(_Baseline):
    """Dense fp32 multiply-accumulate."""

    name = "fp32"
    title = "FP32 MAC"
    precision = "float32"


class Int8Baseline(_Baseline):
    """Dense int8 multiply, int32 accumulate."""

    name = "int8"
    title = "INT8 MAC"
    precision = "int8"


class BinaryBaseline(_Baseline):
    """Binary weights and activations, XNOR(XOR)-popcount on 64-bit words."""

    name = "binary"
    title = "binary XNOR-popcount"
    precision = "binary"

    def _count_binary(self, op: Op, lc: LayerCount, tech: Tech) -> None:
        kh, kw = op.kernel_size
        act_words = kh * kw * math.ceil(op.in_channels / 64)
        outputs = op.output_positions * op.out_channels
        n = outputs * act_words
        lc.add("compute", "xor64", n)
        lc.add("compute", "popcnt64", n)
        lc.add("compute", "int32_add", n + outputs)
        lc.unit, lc.executed = "word-ops", n
        lc.details.update(
            weight_words_per_pass=act_words * op.out_channels,
            act_words_per_position=act_words,
            act_fetch_groups=fetch_groups(op, tech.buffer.pe_cols),
        )
