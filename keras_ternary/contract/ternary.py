"""Split a kernel into ternary (or binary) levels times a per-output-channel scale.

Both hw_sim loaders (Keras and TFLite) read kernels through :func:`split_kernel`, with the
one tolerance :data:`TOLERANCE`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["TOLERANCE", "is_unit_scale", "split_kernel"]

#: Relative tolerance of "kernel / channel scale is in {-1, 0, +1}" and "the scale is 1".
TOLERANCE = 1e-5


def split_kernel(w: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Kernel (channels last) -> ``(levels, scale)``, or None if it is not ternary.

    ``levels`` are int8 in {-1, 0, +1}, ``scale`` the float32 per-channel magnitude
    ``max|w_c|`` (1 for an all-zero channel), so that ``w ≈ levels · scale``.
    """
    w = np.asarray(w, np.float64)
    scale = np.max(np.abs(w), axis=tuple(range(w.ndim - 1)))
    safe = np.where(scale > 0, scale, 1.0)
    unit = w / safe
    levels = np.round(unit)
    if not np.allclose(unit, levels, rtol=0.0, atol=TOLERANCE) or np.any(np.abs(levels) > 1):
        return None
    return levels.astype(np.int8), safe.astype(np.float32)


def is_unit_scale(scale: np.ndarray) -> bool:
    """True when every channel scale is 1 (within :data:`TOLERANCE`)."""
    return bool(np.allclose(scale, 1.0, rtol=TOLERANCE, atol=0.0))
