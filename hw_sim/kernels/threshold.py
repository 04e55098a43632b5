"""Integer thresholds: batch-norm, activation and an activation quantizer folded into
per-channel comparisons on the integer accumulator.

When an integer accumulator ``acc`` feeds only a chain of per-channel monotone ops
(epilogue scale/bias, batch-norm, hard_tanh/ReLU/...) that ends in a ternary or sign
quantizer, the quantized value is a monotone step function of ``acc`` in each channel:

    q_c(acc) = +1  if d_c·acc >= upper_c,   -1  if d_c·acc <= lower_c,   else 0

with direction ``d_c = ±1`` (the sign of the channel's overall slope). The accelerator
then needs two integer comparators per output and no floating point at all.

:func:`derive_thresholds` finds ``upper``/``lower`` by a binary search over the whole
accumulator range ``[-bound, bound]``, *evaluating the float chain itself* at integer
points; the comparisons therefore reproduce the unfused float32 computation for every
reachable accumulator value, not an approximation of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["Thresholds", "derive_thresholds"]


@dataclass
class Thresholds:
    """Per-channel thresholds on an integer accumulator (see the module docstring)."""

    direction: np.ndarray  # (N,) int64, +1 or -1
    upper: np.ndarray  # (N,) int64
    lower: np.ndarray  # (N,) int64
    bound: int

    def apply(self, acc: np.ndarray) -> np.ndarray:
        """Quantize accumulators ``(..., N)`` -> ``int8`` ``{-1, 0, +1}``."""
        signed = acc.astype(np.int64) * self.direction
        return ((signed >= self.upper).astype(np.int8) - (signed <= self.lower)).astype(np.int8)

    @property
    def compares_per_output(self) -> int:
        """Comparisons per output value (2 for ternary outputs, 1 for binary)."""
        binary = np.all(self.upper == self.lower + 1)
        return 1 if binary else 2


def _first_true(pred: Callable[[np.ndarray], np.ndarray], low: int, high: int, n: int):
    """Per channel, the smallest ``u`` in ``[low, high]`` with ``pred(u)`` (``high+1`` if none).

    ``pred`` maps an ``(N,)`` int64 vector to booleans and must be monotone (False...True).
    """
    lo = np.full(n, low, dtype=np.int64)
    hi = np.full(n, high + 1, dtype=np.int64)
    while np.any(lo < hi):
        mid = (lo + hi) // 2
        ok = pred(np.minimum(mid, high))
        ok &= mid <= high
        hi = np.where(ok, mid, hi)
        lo = np.where(ok, lo, mid + 1)
    return lo


def derive_thresholds(
    fn: Callable[[np.ndarray], np.ndarray], channels: int, bound: int
) -> Thresholds:
    """Thresholds reproducing ``fn`` on every integer accumulator in ``[-bound, bound]``.

    Args:
        fn: maps ``(1, N)`` int64 accumulators to ``(1, N)`` values in ``{-1, 0, +1}``;
            monotone (non-decreasing or non-increasing) in each channel.
        channels: N.
        bound: the largest ``|acc|`` the layer can produce.
    """
    bound = int(bound)
    low = fn(np.full((1, channels), -bound, dtype=np.int64))[0]
    high = fn(np.full((1, channels), bound, dtype=np.int64))[0]
    direction = np.where(high >= low, 1, -1).astype(np.int64)

    def g(u: np.ndarray) -> np.ndarray:  # non-decreasing in u for every channel
        return fn((direction * u)[None, :])[0]

    upper = _first_true(lambda u: g(u) >= 1, -bound, bound, channels)
    lower = _first_true(lambda u: g(u) >= 0, -bound, bound, channels) - 1
    return Thresholds(direction, upper, lower, bound)
