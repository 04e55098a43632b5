"""Accelerator and baseline counting models, by name."""

from __future__ import annotations

from hw_sim.accelerators.baselines import BinaryBaseline, Fp32Baseline, Int8Baseline
from hw_sim.accelerators.bitwise import BitwiseModel
from hw_sim.accelerators.cim import CimModel
from hw_sim.accelerators.common import COMPONENTS, CountingModel, LayerCount
from hw_sim.accelerators.zeroskip import ZeroSkipModel

__all__ = ["ACCELERATORS", "BASELINES", "COMPONENTS", "CountingModel", "LayerCount"]

#: Accelerator models selectable with ``--accelerator``.
ACCELERATORS: dict[str, CountingModel] = {
    "bitwise": BitwiseModel(),
    "zeroskip": ZeroSkipModel(),
    "cim": CimModel(),
}

#: Baselines every report compares against.
BASELINES: dict[str, CountingModel] = {
    "fp32": Fp32Baseline(),
    "int8": Int8Baseline(),
    "binary": BinaryBaseline(),
}
