"""hw_sim: count actions and estimate energy of ternary networks on accelerator models.

Framework-free core: :mod:`hw_sim.ir` (the graph), :mod:`hw_sim.accelerators` (counting
models and baselines), :mod:`hw_sim.memory` (buffer model), :mod:`hw_sim.technology`
(energy tables as data). Framework adapters live in :mod:`hw_sim.loaders`.

    >>> import hw_sim
    >>> report = hw_sim.profile_model("model.h5", accelerator="zeroskip")  # doctest: +SKIP
    >>> report["total"]["energy_pj"]["total"], report["total"]["baselines"]  # doctest: +SKIP
"""

from hw_sim.analysis import analyze, profile_model
from hw_sim.errors import HwSimError
from hw_sim.ir import Graph, Op, Quantizer
from hw_sim.loaders import load_graph, register_loader
from hw_sim.technology import load_tech

__all__ = [
    "Graph",
    "HwSimError",
    "Op",
    "Quantizer",
    "analyze",
    "load_graph",
    "load_tech",
    "profile_model",
    "register_loader",
]
