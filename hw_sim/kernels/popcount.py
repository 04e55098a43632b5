"""Population count of 64-bit words, vectorised in numpy.

``np.bitwise_count`` (numpy >= 2.0) when it exists; otherwise a 16-bit lookup table:
each word is viewed as four ``uint16`` halves-of-halves and their counts are looked up in a
65,536-entry ``uint8`` table (64 KiB, stays in L2). The compiled path has its own popcount
(:mod:`hw_sim.kernels._compiled`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["HAVE_BITWISE_COUNT", "popcount64", "popcount_sum"]

HAVE_BITWISE_COUNT = hasattr(np, "bitwise_count")

_LUT16 = np.array([bin(i).count("1") for i in range(1 << 16)], dtype=np.uint8)


def popcount64(words: np.ndarray) -> np.ndarray:
    """Number of set bits of every ``uint64`` word (same shape, ``uint8``)."""
    words = np.ascontiguousarray(words, dtype=np.uint64)
    if HAVE_BITWISE_COUNT:
        return np.bitwise_count(words)
    halves = _LUT16[words.view(np.uint16)]
    return halves.reshape(*words.shape, 4).sum(axis=-1, dtype=np.uint8)


def popcount_sum(words: np.ndarray, axis: int = -1) -> np.ndarray:
    """``Σ popcount(words)`` along ``axis`` as ``int32`` (the accumulate of a bit GEMM)."""
    words = np.ascontiguousarray(np.moveaxis(words, axis, -1), dtype=np.uint64)
    if HAVE_BITWISE_COUNT:
        return np.bitwise_count(words).sum(axis=-1, dtype=np.int32)
    counts = _LUT16[words.view(np.uint16)]  # last axis now holds 4 entries per word
    return counts.sum(axis=-1, dtype=np.int32)
