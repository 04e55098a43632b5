"""Window geometry of convolutions and pooling along one spatial axis (TensorFlow's rules).

Padding is explicit, ``(before, after)`` per axis; ``'same'`` padding follows TensorFlow:
``out = ceil(size / stride)``, the odd extra pixel goes after.
"""

from __future__ import annotations

import math

import numpy as np

from keras_ternary.contract.errors import ContractError

__all__ = [
    "PADDINGS",
    "conv_macs",
    "conv_output_size",
    "output_hw",
    "same_padding",
    "tap_validity",
    "window_padding",
]

#: Padding rules by their Keras name.
PADDINGS = ("valid", "same")


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow ``'same'`` padding along one axis: ``(before, after)``, extra goes after.

    out = ceil(size / stride); total = max((out - 1)·stride + kernel - size, 0).
    """
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def conv_output_size(size: int, kernel: int, stride: int, pad_before: int, pad_after: int) -> int:
    """Output length of a convolution / pooling window along one axis."""
    return (size + pad_before + pad_after - kernel) // stride + 1


def window_padding(
    padding: str, in_hw: tuple[int, int], kernel: tuple[int, int], strides: tuple[int, int]
) -> tuple[int, int, int, int]:
    """Explicit ``(top, bottom, left, right)`` padding of a Keras/TFLite ``padding`` name."""
    padding = padding.lower()
    if padding not in PADDINGS:
        raise ContractError(f"unknown padding {padding!r}; known: {', '.join(PADDINGS)}")
    if padding == "valid":
        return 0, 0, 0, 0
    top, bottom = same_padding(in_hw[0], kernel[0], strides[0])
    left, right = same_padding(in_hw[1], kernel[1], strides[1])
    return top, bottom, left, right


def output_hw(
    in_hw: tuple[int, int],
    kernel: tuple[int, int],
    strides: tuple[int, int],
    padding: tuple[int, int, int, int],
) -> tuple[int, int]:
    """``(H_out, W_out)`` of a window op with explicit padding."""
    top, bottom, left, right = padding
    h = conv_output_size(in_hw[0], kernel[0], strides[0], top, bottom)
    w = conv_output_size(in_hw[1], kernel[1], strides[1], left, right)
    if h < 1 or w < 1:
        raise ContractError(f"window {kernel} does not fit input {in_hw} with padding {padding}")
    return h, w


def tap_validity(size: int, kernel: int, stride: int, pad_before: int, out: int) -> np.ndarray:
    """Bool ``(out, kernel)``: output o's tap k reads input ``o·stride + k - pad`` in [0, size)."""
    index = np.arange(out)[:, None] * stride + np.arange(kernel)[None, :] - pad_before
    return (index >= 0) & (index < size)


def conv_macs(out_hw: tuple[int, int], kernel: tuple[int, int], c_in: int, c_out: int) -> int:
    """Textbook MAC count of a convolution: H_out·W_out·kh·kw·C_in·C_out (padding included)."""
    return int(out_hw[0] * out_hw[1] * kernel[0] * kernel[1] * c_in * c_out)
