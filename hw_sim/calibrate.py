"""int8 activation quantization and its calibration (float-activation models).

Symmetric, per tensor, zero point 0: ``q = clip(rint(x / s), -127, 127)``, ``x ≈ s·q``.
The scale ``s = bound / 127`` comes from

1. a **static bound** when the tensor is the output of a bounded activation
   (hard_tanh, tanh, sigmoid: 1; relu6: 6), possibly through ops that only move values
   (max-pooling, flatten, reshape: :attr:`hw_sim.ops.OpSpec.passes_precision`) --
   no data needed and nothing is clipped;
2. otherwise **max-abs calibration**: the largest ``|x|`` of the tensor over a
   calibration batch run with float activations (``capture``: the emulator in float mode,
   :class:`hw_sim.emulate.Emulator`); ``percentile < 100`` uses that percentile of ``|x|``
   instead, clipping outliers.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hw_sim.errors import HwSimError
from hw_sim.ir import Graph
from hw_sim.ops import OPS
from keras_ternary.contract import activations

__all__ = [
    "INT8_MAX",
    "Capture",
    "STATIC_BOUNDS",
    "calibrate_scales",
    "quantize_int8",
    "static_bound",
]

INT8_MAX = 127

#: Activations whose output range is known: |y| <= bound.
STATIC_BOUNDS = {a.name: a.bound for a in activations.ACTIVATIONS.values() if a.bound is not None}


def quantize_int8(x: np.ndarray, scale: float) -> np.ndarray:
    """``clip(rint(x / scale), -127, 127)`` as int8 (round half to even)."""
    q = np.rint(np.asarray(x, dtype=np.float32) / np.float32(scale))
    return np.clip(q, -INT8_MAX, INT8_MAX).astype(np.int8)


def static_bound(graph: Graph, tensor: str) -> float | None:
    """``max |x|`` of ``tensor`` known from the graph alone, or None."""
    op = graph.op(tensor)
    while OPS[op.kind].passes_precision:
        op = graph.op(op.inputs[0])
    if op.kind == "activation" or op.is_compute:
        return STATIC_BOUNDS.get(op.activation)
    return None


#: ``capture(images, tensor names) -> {name: float values}``: one float forward pass.
Capture = Callable[[np.ndarray, list[str]], dict[str, np.ndarray]]


def calibrate_scales(
    graph: Graph,
    tensors: list[str],
    x: np.ndarray | None,
    capture: Capture,
    percentile: float = 100.0,
    batch_size: int = 64,
) -> dict[str, dict]:
    """int8 scale of each tensor: ``{name: {"scale", "bound", "method"}}``.

    Tensors without a static bound are measured on ``x`` (the calibration images), run
    batch by batch through ``capture``; a tensor that is all zero there gets scale 1/127.
    """
    out: dict[str, dict] = {}
    measure = []
    for name in tensors:
        bound = static_bound(graph, name)
        if bound is None:
            measure.append(name)
        else:
            out[name] = {"scale": bound / INT8_MAX, "bound": bound, "method": "static"}
    if measure:
        if x is None or len(x) == 0:
            raise HwSimError(f"int8 activations of {', '.join(measure)} need calibration images")
        seen: dict[str, list[np.ndarray]] = {n: [] for n in measure}
        for start in range(0, len(x), batch_size):
            values = capture(x[start : start + batch_size], measure)
            for name in measure:
                seen[name].append(np.abs(values[name]).ravel())
        for name in measure:
            mags = np.concatenate(seen[name])
            bound = float(mags.max() if percentile >= 100 else np.percentile(mags, percentile))
            bound = bound if bound > 0 else 1.0
            method = "max-abs" if percentile >= 100 else f"percentile {percentile:g}"
            out[name] = {
                "scale": bound / INT8_MAX,
                "bound": bound,
                "method": f"{method} over {len(x)} calibration images",
            }
    return out
