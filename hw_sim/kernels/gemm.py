"""Popcount GEMMs on packed bit-planes: every (position, filter) pair's integer inner product.

Inputs are ``(P, K)`` activation words (one row per output position, im2col order) and
``(N, K)`` weight words (one row per filter); outputs ``(P, N)`` ``int32`` accumulators.
The four variants are the formulas of docs/emulation.md (REFERENCES.md, TAB):

* :func:`gemm_tt` ternary x ternary: ``Σ popcnt(m_a & m_w) - 2·Σ popcnt((s_a ^ s_w) & m_a & m_w)``
* :func:`gemm_tb` ternary act x binary weight: ``Σ popcnt(m_a) - 2·Σ popcnt((s_a ^ w) & m_a)``
* :func:`gemm_bt` binary act x ternary weight: ``Σ popcnt(m_w) - 2·Σ popcnt((a ^ s_w) & m_w)``
* :func:`gemm_bb` binary x binary: ``n_bits - 2·Σ popcnt(a ^ w)``

Each dispatches to the numba kernel or to a chunked numpy broadcast.
"""

from __future__ import annotations

import numpy as np

from hw_sim.kernels.backend import compiled, resolve
from hw_sim.kernels.popcount import popcount_sum

__all__ = ["gemm_bb", "gemm_bt", "gemm_tb", "gemm_tt"]

#: Words materialised at once by the numpy path (bounds temporary memory to ~32 MB).
CHUNK_WORDS = 1 << 22


def _row_chunks(n_pos: int, words_per_row: int):
    step = max(1, CHUNK_WORDS // max(words_per_row, 1))
    for start in range(0, n_pos, step):
        yield slice(start, min(start + step, n_pos))


def _prepare(*arrays: np.ndarray) -> list[np.ndarray]:
    return [np.ascontiguousarray(a, dtype=np.uint64) for a in arrays]


def gemm_tt(ma, sa, mw, sw, backend: str = "auto") -> np.ndarray:
    """Ternary activations ``(s_a, m_a)`` x ternary weights ``(s_w, m_w)`` -> ``(P, N)``."""
    ma, sa, mw, sw = _prepare(ma, sa, mw, sw)
    out = np.empty((ma.shape[0], mw.shape[0]), dtype=np.int32)
    if resolve(backend) == "numba":
        compiled().gemm_tt(ma, sa, mw, sw, out)
        return out
    for rows in _row_chunks(ma.shape[0], mw.size):
        both = ma[rows, None, :] & mw[None]
        n_both = popcount_sum(both)
        both &= sa[rows, None, :] ^ sw[None]
        out[rows] = n_both - 2 * popcount_sum(both)
    return out


def gemm_tb(ma, sa, w, backend: str = "auto") -> np.ndarray:
    """Ternary activations ``(s_a, m_a)`` x binary weights ``w`` (bit 1 = -1) -> ``(P, N)``."""
    ma, sa, w = _prepare(ma, sa, w)
    out = np.empty((ma.shape[0], w.shape[0]), dtype=np.int32)
    if resolve(backend) == "numba":
        compiled().gemm_tb(ma, sa, w, out)
        return out
    shared = popcount_sum(ma)  # Σ popcnt(m_a): one per position, shared by all filters
    for rows in _row_chunks(ma.shape[0], w.size):
        differ = (sa[rows, None, :] ^ w[None]) & ma[rows, None, :]
        out[rows] = shared[rows, None] - 2 * popcount_sum(differ)
    return out


def gemm_bt(a, mw, sw, backend: str = "auto") -> np.ndarray:
    """Binary activations ``a`` (bit 1 = -1) x ternary weights ``(s_w, m_w)`` -> ``(P, N)``."""
    a, mw, sw = _prepare(a, mw, sw)
    nonzero_w = popcount_sum(mw).astype(np.int64)  # per-filter constant, computed offline
    out = np.empty((a.shape[0], mw.shape[0]), dtype=np.int32)
    if resolve(backend) == "numba":
        compiled().gemm_bt(a, mw, sw, nonzero_w, out)
        return out
    for rows in _row_chunks(a.shape[0], mw.size):
        differ = (a[rows, None, :] ^ sw[None]) & mw[None]
        out[rows] = nonzero_w[None, :] - 2 * popcount_sum(differ)
    return out


def gemm_bb(a, w, n_bits: int, backend: str = "auto") -> np.ndarray:
    """Binary x binary with ``n_bits`` real bits per row: ``n_bits - 2·Σ popcnt(a ^ w)``."""
    a, w = _prepare(a, w)
    out = np.empty((a.shape[0], w.shape[0]), dtype=np.int32)
    if resolve(backend) == "numba":
        compiled().gemm_bb(a, w, int(n_bits), out)
        return out
    for rows in _row_chunks(a.shape[0], w.size):
        out[rows] = n_bits - 2 * popcount_sum(a[rows, None, :] ^ w[None])
    return out
