"""Shape arithmetic shared by the counting models: MACs, padding taps, packed words.

Window geometry comes from :mod:`keras_ternary.contract.geometry`.
"""

from __future__ import annotations

import math

import numpy as np

from hw_sim.ir import Op
from keras_ternary.contract.geometry import conv_macs, tap_validity

__all__ = [
    "dense_macs",
    "elements",
    "valid_tap_counts",
    "weight_matrix",
    "weight_word_mask",
    "words",
]

WORD_BITS = 64


def elements(shape: tuple[int, ...]) -> int:
    """Number of values in a tensor of ``shape`` (batch excluded)."""
    return int(np.prod(shape, dtype=np.int64)) if shape else 1


def words(bits: float) -> int:
    """64-bit words needed to hold ``bits`` bits."""
    return math.ceil(bits / WORD_BITS)


def dense_macs(op: Op) -> int:
    """Textbook MAC count of a conv2d / dense: H_out·W_out·kh·kw·C_in·C_out (padding included)."""
    if not op.is_compute:
        return 0
    out_hw = op.output_shape[:2] if op.kind == "conv2d" else (1, 1)
    return conv_macs(out_hw, op.kernel_size, op.in_channels, op.out_channels)


def _valid_along(size: int, kernel: int, stride: int, pad_before: int, out: int) -> np.ndarray:
    """For each kernel tap k: outputs o whose input index o·s + k - pad lies in [0, size)."""
    return tap_validity(size, kernel, stride, pad_before, out).sum(axis=0)


def valid_tap_counts(op: Op, input_shape: tuple[int, ...]) -> np.ndarray:
    """``(kh, kw)`` array: output positions where each kernel tap reads a real (unpadded) input.

    ``valid.sum() · C_in · C_out`` MACs touch real data; the rest of the dense MACs multiply
    padding. Dense layers give ``[[1]]``.
    """
    if op.kind != "conv2d":
        return np.ones((1, 1), dtype=np.int64)
    kh, kw = op.kernel_size
    top, _, left, _ = op.padding
    rows = _valid_along(input_shape[0], kh, op.strides[0], top, op.output_shape[0])
    cols = _valid_along(input_shape[1], kw, op.strides[1], left, op.output_shape[1])
    return np.outer(rows, cols).astype(np.int64)


def weight_matrix(op: Op) -> np.ndarray:
    """The kernel as a ``(K, C_out)`` matrix, rows in (kh, kw, c_in) im2col order."""
    return op.weights.reshape(-1, op.out_channels)


def weight_word_mask(op: Op) -> np.ndarray:
    """Bool ``(kh, kw, n_words, C_out)``: which 64-bit weight words hold a nonzero weight.

    Bit-packing runs along input channels, separately for every kernel tap, each tap padded
    with zeros to ``ceil(C_in / 64)`` words (for dense layers: along the input features).
    """
    kh, kw = op.kernel_size
    cin, cout = op.in_channels, op.out_channels
    n_words = math.ceil(cin / WORD_BITS)
    w = op.weights.reshape(kh, kw, cin, cout) != 0
    padded = np.zeros((kh, kw, n_words * WORD_BITS, cout), dtype=bool)
    padded[:, :, :cin, :] = w
    return padded.reshape(kh, kw, n_words, WORD_BITS, cout).any(axis=3)
