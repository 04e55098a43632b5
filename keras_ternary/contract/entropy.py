"""Empirical (Shannon) entropy of quantized values, in bits per symbol."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["entropy_bits", "value_counts", "values_entropy_bits"]


def entropy_bits(counts: Sequence[int] | np.ndarray) -> float:
    """Shannon entropy, in bits/symbol, of a histogram of symbol counts (0 when empty)."""
    c = np.asarray(counts, dtype=np.float64)
    total = c.sum()
    if total <= 0:
        return 0.0
    p = c[c > 0] / total
    return float(max(0.0, -(p * np.log2(p)).sum()))


def value_counts(values: np.ndarray) -> np.ndarray:
    """How often each distinct value occurs, in ascending order of value (zeros left out)."""
    values = np.asarray(values)
    if values.size == 0:
        return np.zeros(0, np.int64)
    if values.dtype.kind == "i" and values.min() >= -1 and values.max() <= 1:
        counts = np.bincount((values.ravel() + 1).astype(np.intp), minlength=3)
        return counts[counts > 0]
    return np.unique(values, return_counts=True)[1]


def values_entropy_bits(values: np.ndarray) -> float:
    """Empirical entropy (bits/symbol) of the values of a quantized kernel."""
    return entropy_bits(value_counts(values))
