"""``bitwise``: TAB-style bit-plane inner products on 64-bit words.

A ternary value is two bit-planes, sign s and nonzero m (+1 -> (0,1), -1 -> (1,1),
0 -> (0,0)); a binary value is one plane (bit 1 = -1). Weights are packed along input
channels, per kernel tap, 64 per word (zero padding = ternary 0, no correction needed).
Per 64-bit word of one output's inner product (see :data:`WORD_OPS`):

* ternary act x ternary weight: ``y += popcnt(m_a & m_w) - 2·popcnt((s_a ^ s_w) & m_a & m_w)``
* ternary act x binary weight:  ``y = Σ popcnt(m_a) - 2·Σ popcnt((s_a ^ w) & m_a)``; the
  ``popcnt(m_a)`` term depends only on the activations and is shared by all output channels
* binary act x ternary weight:  ``y = Σ popcnt(m_w) - 2·Σ popcnt((a ^ s_w) & m_w)``; the
  ``Σ popcnt(m_w)`` term is a per-filter constant computed offline
* binary act x binary weight:   ``y = N - 2·Σ popcnt(a ^ w)``

A grouped / depthwise conv packs each group's input channels separately: a depthwise conv
fills one bit of every 64-bit word, and is counted so (no lane packing across channels is
modelled). Word-level zero skipping: a weight word whose nonzero plane is all zero is
skipped (ternary kernels). Each output then combines its two accumulators with one
subtract (the 2· is a shift). Layers with float/int8 activations fall back to one
add/subtract per nonzero weight (the ``zeroskip`` rule without dynamic skipping); float
kernels to dense MACs at the table's ``other_precision`` (int8 by default;
:func:`float_kernel_fallback`).

Not modelled: FATNN's cheaper ternary inner product (Chen et al., ICCV 2021) -- see
docs/hw_sim.md for what could and could not be established about it.
"""

from __future__ import annotations

import math

from hw_sim.accelerators.common import (
    CountingModel,
    LayerCount,
    accumulate_action,
    count_epilogue,
    count_sparse_adds,
    fetch_groups,
    float_kernel_fallback,
)
from hw_sim.geometry import weight_word_mask
from hw_sim.ir import Graph, Op
from hw_sim.technology import Tech

__all__ = ["WORD_OPS", "BitwiseModel", "bitwise_word_ops"]

_LOW = ("ternary", "binary")

#: (activation, weight) precision -> actions per processed 64-bit weight word.
WORD_OPS: dict[tuple[str, str], dict[str, int]] = {
    ("ternary", "ternary"): {"xor64": 1, "and64": 2, "popcnt64": 2, "int32_add": 2},
    ("ternary", "binary"): {"xor64": 1, "and64": 1, "popcnt64": 1, "int32_add": 1},
    ("binary", "ternary"): {"xor64": 1, "and64": 1, "popcnt64": 1, "int32_add": 1},
    ("binary", "binary"): {"xor64": 1, "popcnt64": 1, "int32_add": 1},
}

#: Work shared by all output channels, per activation word: popcnt(m_a) for ternary x binary.
SHARED_OPS: dict[tuple[str, str], dict[str, int]] = {
    ("ternary", "binary"): {"popcnt64": 1, "int32_add": 1},
}


def bitwise_word_ops(op: Op) -> dict[str, int]:
    """Word counts of a ternary/binary conv2d or dense under the bit-plane scheme.

    Returns ``total_words`` (per output position, all filters), ``nonzero_words`` (of
    those, words with a nonzero weight), ``act_words`` (activation words per position,
    one per tap and 64 channels of each group) and ``planes_w`` / ``planes_a`` (bit-planes
    per value). A grouped conv packs each group's ``C_in / groups`` channels on their own
    (a depthwise conv: one real bit per word, the scheme's worst case).
    """
    mask = weight_word_mask(op)
    kh, kw, n_words, _ = mask.shape
    nonzero = int(mask.sum()) if op.weight_precision == "ternary" else int(mask.size)
    return {
        "total_words": int(mask.size),
        "nonzero_words": nonzero,
        "act_words": kh * kw * n_words * op.groups,
        "planes_w": 2 if op.weight_precision == "ternary" else 1,
        "planes_a": 2 if op.act_precision == "ternary" else 1,
    }


class BitwiseModel(CountingModel):
    """Bit-plane XOR/AND/POPCNT accelerator with word-level zero skipping."""

    name = "bitwise"
    title = "bitwise (TAB-style bit-planes, 64-bit words)"

    def count_compute(self, op: Op, graph: Graph, tech: Tech) -> LayerCount:
        fallback = float_kernel_fallback(op, tech)
        if fallback is not None:
            return fallback
        lc = LayerCount()
        groups = fetch_groups(op, tech.buffer.pe_cols)
        if op.act_precision not in _LOW:
            adds = count_sparse_adds(op, graph)
            lc.add(
                "compute", accumulate_action(op.act_precision, self.other_precision), adds["adds"]
            )
            lc.unit, lc.executed = "adds", adds["adds"]
            lc.skipped = adds["skipped_zero_weight"] + adds["skipped_padding"]
            lc.mode = f"fallback: add/sub per nonzero weight ({op.act_precision} activations)"
            lc.details.update(adds, act_fetch_groups=groups)
            count_epilogue(op, lc)
            return lc
        key = (op.act_precision, op.weight_precision)
        w = bitwise_word_ops(op)
        positions = op.output_positions
        executed = positions * w["nonzero_words"]
        for action, n in WORD_OPS[key].items():
            lc.add("compute", action, n * executed)
        for action, n in SHARED_OPS.get(key, {}).items():
            lc.add("compute", action, n * positions * w["act_words"])
        lc.add("compute", "int32_add", positions * op.out_channels)  # acc_1 - 2·acc_2
        count_epilogue(op, lc)
        lc.unit, lc.mode = "word-ops", f"{key[0]} act x {key[1]} weight"
        lc.executed = executed
        lc.skipped = positions * (w["total_words"] - w["nonzero_words"])
        ternary_w = op.weight_precision == "ternary"
        skip_mask_words = math.ceil(w["total_words"] / 64) if ternary_w else 0
        lc.details.update(
            w,
            weight_words_per_pass=w["nonzero_words"] * w["planes_w"] + skip_mask_words,
            act_words_per_position=w["act_words"] * w["planes_a"],
            act_fetch_groups=groups,
        )
        return lc
