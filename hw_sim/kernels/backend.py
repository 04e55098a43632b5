"""Kernel back-ends: vectorised numpy (always) and compiled numba (when installed).

Both compute the same integers (tests check each against a plain numpy reference);
``"auto"`` picks numba when it imports, else numpy. The environment variable
``HW_SIM_BACKEND`` (``numpy`` / ``numba``) overrides ``"auto"``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from types import ModuleType

from hw_sim.errors import HwSimError

__all__ = ["BACKENDS", "available_backends", "compiled", "resolve"]

BACKENDS = ("numpy", "numba")


def available_backends() -> list[str]:
    """Back-ends usable in this environment."""
    names = ["numpy"]
    if importlib.util.find_spec("numba") is not None:
        names.append("numba")
    return names


def resolve(backend: str = "auto") -> str:
    """``"auto"`` -> ``HW_SIM_BACKEND`` or the fastest available; validate explicit names."""
    if backend == "auto":
        backend = os.environ.get("HW_SIM_BACKEND", "") or available_backends()[-1]
    if backend not in BACKENDS:
        raise HwSimError(f"unknown kernel backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if backend not in available_backends():
        raise HwSimError(f"kernel backend {backend!r} is not available (pip install numba)")
    return backend


def compiled() -> ModuleType:
    """The numba kernels module (compiles on first use, cached on disk)."""
    return importlib.import_module("hw_sim.kernels._compiled")
