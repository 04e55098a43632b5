"""Compiled (numba) versions of the bit GEMMs and the zero-skipping add/subtract kernel.

Imported only when numba is available (see :func:`hw_sim.kernels.backend.resolve`). The
popcount is the SWAR bit-count, which LLVM turns into the CPU's ``popcnt`` instruction.
Loops run in parallel over output positions (``prange``); every output is accumulated in
the order of the words (or of the input taps), so results do not depend on threading.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)
_S1, _S2, _S4, _S56 = np.uint64(1), np.uint64(2), np.uint64(4), np.uint64(56)


@njit(inline="always", cache=True)
def popcnt(x):
    """Set bits of a uint64 (SWAR; compiled to ``popcnt``)."""
    x = x - ((x >> _S1) & _M1)
    x = (x & _M2) + ((x >> _S2) & _M2)
    x = (x + (x >> _S4)) & _M4
    return np.int64((x * _H01) >> _S56)


@njit(parallel=True, cache=True)
def gemm_tt(ma, sa, mw, sw, out):
    """Ternary x ternary: ``out = Σ popcnt(m_a & m_w) - 2·Σ popcnt((s_a ^ s_w) & m_a & m_w)``."""
    n_pos, n_words = ma.shape
    n_out = mw.shape[0]
    for p in prange(n_pos):
        for n in range(n_out):
            both = 0
            differ = 0
            for k in range(n_words):
                t = ma[p, k] & mw[n, k]
                both += popcnt(t)
                differ += popcnt((sa[p, k] ^ sw[n, k]) & t)
            out[p, n] = both - 2 * differ


@njit(parallel=True, cache=True)
def gemm_tb(ma, sa, w, out):
    """Ternary act x binary weight: ``out = Σ popcnt(m_a) - 2·Σ popcnt((s_a ^ w) & m_a)``."""
    n_pos, n_words = ma.shape
    n_out = w.shape[0]
    for p in prange(n_pos):
        shared = 0
        for k in range(n_words):
            shared += popcnt(ma[p, k])
        for n in range(n_out):
            differ = 0
            for k in range(n_words):
                differ += popcnt((sa[p, k] ^ w[n, k]) & ma[p, k])
            out[p, n] = shared - 2 * differ


@njit(parallel=True, cache=True)
def gemm_bt(a, mw, sw, nonzero_w, out):
    """Binary act x ternary weight: ``out = Σ popcnt(m_w) - 2·Σ popcnt((a ^ s_w) & m_w)``.

    ``nonzero_w[n] = Σ popcnt(m_w)`` is a per-filter constant computed offline.
    """
    n_pos, n_words = a.shape
    n_out = mw.shape[0]
    for p in prange(n_pos):
        for n in range(n_out):
            differ = 0
            for k in range(n_words):
                differ += popcnt((a[p, k] ^ sw[n, k]) & mw[n, k])
            out[p, n] = nonzero_w[n] - 2 * differ


@njit(parallel=True, cache=True)
def gemm_bb(a, w, n_bits, out):
    """Binary x binary: ``out = N - 2·Σ popcnt(a ^ w)``."""
    n_pos, n_words = a.shape
    n_out = w.shape[0]
    for p in prange(n_pos):
        for n in range(n_out):
            differ = 0
            for k in range(n_words):
                differ += popcnt(a[p, k] ^ w[n, k])
            out[p, n] = n_bits - 2 * differ


@njit(parallel=True, cache=True)
def addsub(acts, pos_ptr, pos_cols, neg_ptr, neg_cols, out):
    """Zero-skipping add/subtract: ``out[p, n] = Σ_{w=+1} a - Σ_{w=-1} a``.

    The kernel is stored by input tap ``k`` (CSR): ``pos_cols[pos_ptr[k]:pos_ptr[k+1]]``
    are the outputs whose weight at tap ``k`` is +1 (likewise for -1). Zero weights are
    absent; a zero activation skips its whole row. ``out`` must be zero on entry.
    """
    n_pos, n_taps = acts.shape
    for p in prange(n_pos):
        for k in range(n_taps):
            a = acts[p, k]
            if a == 0:
                continue
            for j in range(pos_ptr[k], pos_ptr[k + 1]):
                out[p, pos_cols[j]] += a
            for j in range(neg_ptr[k], neg_ptr[k + 1]):
                out[p, neg_cols[j]] -= a
