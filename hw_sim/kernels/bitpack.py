"""Bit-plane packing of ternary and binary tensors into 64-bit words.

Encoding (docs/emulation.md, after TAB): a ternary value is a sign bit ``s`` and a nonzero
bit ``m`` -- ``+1 -> (s=0, m=1)``, ``-1 -> (1, 1)``, ``0 -> (0, 0)``; a binary value is
one sign bit (``1`` means ``-1``). Values are packed along the last (channel) axis, bit
``i`` of word ``j`` holding channel ``64·j + i``. The channel tail of the last word is
zero in every plane, so it contributes nothing to a ternary product (``m = 0``) and, in a
binary XOR, ``0 ^ 0 = 0`` adds no mismatch.

Spatial padding is added to the *packed* planes with :func:`pad_planes`; a ternary
zero-padded position is the all-zero word pair (``m = 0``) and needs no correction. A
binary plane cannot hold 0: zero padding is stored as ``+1`` (bit 0) and corrected after
the popcount (:func:`hw_sim.kernels.conv.binary_padding_correction`).
"""

from __future__ import annotations

import numpy as np

from hw_sim.errors import HwSimError

__all__ = [
    "WORD_BITS",
    "channel_mask",
    "n_words",
    "pack_binary",
    "pack_bits",
    "pack_ternary",
    "pad_fill",
    "pad_planes",
    "unpack_bits",
]

WORD_BITS = 64


def n_words(channels: int) -> int:
    """64-bit words per position for ``channels`` values: ``ceil(channels / 64)``."""
    return -(-int(channels) // WORD_BITS)


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Pack a boolean ``(..., C)`` array into ``uint64`` ``(..., ceil(C/64))``, tail bits 0."""
    bits = np.asarray(bits, dtype=bool)
    channels = bits.shape[-1]
    nw = n_words(channels)
    if channels != nw * WORD_BITS:
        padded = np.zeros((*bits.shape[:-1], nw * WORD_BITS), dtype=bool)
        padded[..., :channels] = bits
        bits = padded
    packed = np.packbits(bits, axis=-1, bitorder="little")  # (..., 8·nw) bytes, LSB first
    return np.ascontiguousarray(packed).view("<u8").astype(np.uint64, copy=False)


def unpack_bits(words: np.ndarray, channels: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: ``uint64 (..., nw)`` -> boolean ``(..., channels)``."""
    words = np.ascontiguousarray(words, dtype=np.uint64).astype("<u8", copy=False)
    bits = np.unpackbits(words.view(np.uint8), axis=-1, bitorder="little")
    return bits[..., :channels].astype(bool)


def channel_mask(channels: int) -> np.ndarray:
    """``(nw,)`` words with a 1 bit for every real channel (tail bits 0)."""
    return pack_bits(np.ones(channels, dtype=bool))


def pack_ternary(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ternary ``{-1, 0, +1}`` values ``(..., C)`` -> ``(sign, nonzero)`` planes ``(..., nw)``."""
    values = np.asarray(values)
    if not np.all((values == -1) | (values == 0) | (values == 1)):
        raise HwSimError("pack_ternary: values must be -1, 0 or +1")
    return pack_bits(values < 0), pack_bits(values != 0)


def pack_binary(values: np.ndarray) -> np.ndarray:
    """Binary ``{-1, +1}`` values ``(..., C)`` -> sign plane ``(..., nw)`` (bit 1 = -1)."""
    values = np.asarray(values)
    if not np.all((values == -1) | (values == 1)):
        raise HwSimError("pack_binary: values must be -1 or +1")
    return pack_bits(values < 0)


def pad_fill(kind: str, plane: str, pad_value: float, channels: int) -> np.ndarray:
    """The ``(nw,)`` word pattern a padded position holds in one plane.

    Args:
        kind: ``"ternary"`` or ``"binary"`` (the packed tensor).
        plane: ``"sign"`` or ``"nonzero"``.
        pad_value: the value padding represents: ``0`` or ``±1``; binary planes store
            ``0`` as ``+1`` (to be corrected by the caller).
        channels: real channels (tail bits stay 0).
    """
    if pad_value not in (-1.0, 0.0, 1.0):
        raise HwSimError(f"bit-plane padding must be 0 or ±1, got {pad_value}")
    mask = channel_mask(channels)
    zero = np.zeros_like(mask)
    if plane == "nonzero":
        if kind != "ternary":
            raise HwSimError("binary tensors have no nonzero plane")
        return mask if pad_value != 0 else zero
    return mask if pad_value < 0 else zero


def pad_planes(
    planes: np.ndarray, padding: tuple[int, int, int, int], fill: np.ndarray
) -> np.ndarray:
    """Pad packed ``(B, H, W, nw)`` planes spatially by ``(top, bottom, left, right)``."""
    top, bottom, left, right = (int(p) for p in padding)
    if not (top or bottom or left or right):
        return planes
    b, h, w, nw = planes.shape
    out = np.empty((b, h + top + bottom, w + left + right, nw), dtype=planes.dtype)
    out[...] = fill
    out[:, top : top + h, left : left + w, :] = planes
    return out
