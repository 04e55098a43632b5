"""Baselines for the same network: FP32 MAC, INT8 MAC and binary XNOR-popcount.

Every conv2d / dense runs dense (no skipping, padding included):

* ``fp32``: per MAC one fp32 mult + one fp32 add; weights and activations 32-bit.
* ``int8``: per MAC one int8 mult + one int32 add; weights and activations 8-bit.
* ``binary``: every kernel and conv input binarized; per 64-bit word one XOR + one POPCNT
  + one int32 add, per output one subtract (``N - 2·popcnt``); conv inputs stored 1-bit,
  other tensors 32-bit.

Element-wise ops cost the same fp32 work as in the accelerator models; baselines pay no
activation quantization.
"""

from __future__ import annotations

import math

from hw_sim.accelerators.common import CountingModel, LayerCount, count_fp32_macs, fetch_groups
from hw_sim.geometry import dense_macs
from hw_sim.ir import Graph, Op
from hw_sim.technology import Tech

__all__ = ["BinaryBaseline", "Fp32Baseline", "Int8Baseline"]


class _Baseline(CountingModel):
    is_baseline = True
    bits = 32

    def compute_input_bits(self, op: Op) -> int | None:
        return self.bits

    def tensor_bits(self, precision: str) -> int:
        return self.bits

    def weight_bits(self, op: Op) -> int:
        return self.bits

    def counts_input_quantization(self) -> bool:
        return False


class Fp32Baseline(_Baseline):
    """Dense fp32 multiply-accumulate."""

    name = "fp32"
    title = "FP32 MAC"
    bits = 32

    def count_compute(self, op: Op, graph: Graph, tech: Tech) -> LayerCount:
        lc = LayerCount(mode="fp32 MAC")
        count_fp32_macs(op, lc)
        lc.details.update(act_fetch_groups=fetch_groups(op, tech.buffer.pe_cols))
        return lc


class Int8Baseline(_Baseline):
    """Dense int8 multiply, int32 accumulate."""

    name = "int8"
    title = "INT8 MAC"
    bits = 8

    def count_compute(self, op: Op, graph: Graph, tech: Tech) -> LayerCount:
        lc = LayerCount(mode="int8 MAC", unit="MACs")
        macs = dense_macs(op)
        lc.add("compute", "int8_mult", macs)
        lc.add("compute", "int32_add", macs)
        lc.executed = macs
        lc.details.update(act_fetch_groups=fetch_groups(op, tech.buffer.pe_cols))
        return lc


class BinaryBaseline(_Baseline):
    """Binary weights and activations, XNOR(XOR)-popcount on 64-bit words."""

    name = "binary"
    title = "binary XNOR-popcount"
    bits = 1

    def tensor_bits(self, precision: str) -> int:
        return 32

    def count_compute(self, op: Op, graph: Graph, tech: Tech) -> LayerCount:
        lc = LayerCount(mode="binary XNOR-popcount", unit="word-ops")
        kh, kw = op.kernel_size
        act_words = kh * kw * math.ceil(op.in_channels / 64)
        outputs = op.output_positions * op.out_channels
        n = outputs * act_words
        lc.add("compute", "xor64", n)
        lc.add("compute", "popcnt64", n)
        lc.add("compute", "int32_add", n + outputs)
        lc.executed = n
        lc.details.update(
            weight_words_per_pass=act_words * op.out_channels,
            act_words_per_position=act_words,
            act_fetch_groups=fetch_groups(op, tech.buffer.pe_cols),
        )
        return lc
