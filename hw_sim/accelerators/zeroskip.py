"""``zeroskip``: ternary/binary weights x int8 or float activations, zeros skipped.

Each nonzero weight costs one add or subtract of the activation it meets (an int32 add
into the accumulator; fp32 for float activations when ``other_precision`` is float32);
zero weights and padding taps are skipped and counted. Optionally
(``accelerators.zeroskip.activation_sparsity`` in the technology table) an expected
fraction of the remaining adds meets a zero activation and is skipped dynamically. Float
kernels fall back to dense MACs at the table's ``other_precision`` (int8 by default).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hw_sim.accelerators.common import (
    CountingModel,
    LayerCount,
    accumulate_action,
    count_epilogue,
    count_sparse_adds,
    fetch_groups,
    float_kernel_fallback,
)
from hw_sim.errors import HwSimError
from hw_sim.ir import Graph, Op
from hw_sim.technology import Tech

__all__ = ["ZeroSkipConfig", "ZeroSkipModel"]


@dataclass(frozen=True)
class ZeroSkipConfig:
    """Section ``accelerators.zeroskip`` of the technology table."""

    activation_sparsity: float = 0.0  # expected fraction of zero activations skipped

    def __post_init__(self) -> None:
        value = self.activation_sparsity
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not math.isfinite(value) or not 0.0 <= value < 1.0:
            raise HwSimError("accelerators.zeroskip.activation_sparsity must be in [0, 1)")


class ZeroSkipModel(CountingModel):
    """One add/subtract per nonzero weight; zero weights (and padding) skipped."""

    name = "zeroskip"
    title = "zeroskip (add/sub per nonzero ternary weight)"
    tech_section = "zeroskip"
    Config = ZeroSkipConfig

    def tech_summary(self, tech: Tech) -> dict:
        return {"activation_sparsity": self.config(tech).activation_sparsity}

    def count_compute(self, op: Op, graph: Graph, tech: Tech) -> LayerCount:
        fallback = float_kernel_fallback(op, tech)
        if fallback is not None:
            return fallback
        lc = LayerCount()
        groups = fetch_groups(op, tech.buffer.pe_cols)
        adds = count_sparse_adds(op, graph, self.config(tech).activation_sparsity)
        lc.add("compute", accumulate_action(op.act_precision, self.other_precision), adds["adds"])
        count_epilogue(op, lc)
        lc.unit, lc.executed = "adds", adds["adds"]
        lc.skipped = (
            adds["skipped_zero_weight"] + adds["skipped_padding"] + adds["skipped_zero_activation"]
        )
        lc.mode = f"{op.weight_precision} weight x {op.act_precision} act"
        lc.details.update(adds, act_fetch_groups=groups)
        return lc
