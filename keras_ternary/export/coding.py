"""Lossless coding of ternary kernels: entropy coding (rANS) and fixed 2-bit packing.

Symbols: a ternary value ``v ∈ {-1, 0, +1}`` is the symbol ``v + 1 ∈ {0, 1, 2}``.

* :func:`encode_ans` / :func:`decode_ans`: asymmetric numeral systems (the stack coder of
  the ``constriction`` library, 32-bit words), all tensors of a model in one stream, each
  with a static categorical model built from its own symbol counts
  (:func:`categorical_model`). The cost is the tensor's empirical entropy (plus the
  fixed-point rounding of the model, ~1e-6 bits/symbol) and once the coder's final state
  (≤ 64 bits).
* :func:`pack_2bit` / :func:`unpack_2bit`: the fixed-rate baseline, 4 symbols per byte.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "SymbolError",
    "categorical_model",
    "decode_ans",
    "encode_ans",
    "from_symbols",
    "pack_2bit",
    "symbol_counts",
    "to_symbols",
    "unpack_2bit",
]


class SymbolError(ValueError):
    """Coded data inconsistent with its declared size or counts."""


def to_symbols(ternary: np.ndarray) -> np.ndarray:
    """Flatten a ternary tensor (C order) to int32 symbols ``v + 1``."""
    t = np.asarray(ternary).reshape(-1)
    if not np.all((t == -1) | (t == 0) | (t == 1)):
        raise ValueError("tensor is not ternary: values outside {-1, 0, +1}")
    return (t.astype(np.int32) + 1).astype(np.int32)


def from_symbols(symbols: np.ndarray, shape, dtype=np.float32) -> np.ndarray:
    """Inverse of :func:`to_symbols`."""
    return (np.asarray(symbols, np.int64) - 1).astype(dtype).reshape(shape)


def symbol_counts(symbols: np.ndarray) -> list[int]:
    """Counts of ``[-1, 0, +1]`` (symbols 0, 1, 2)."""
    return [int(c) for c in np.bincount(np.asarray(symbols), minlength=3)[:3]]


def categorical_model(counts: list[int]):
    """The static model of one tensor: symbol ``k`` has probability ``counts[k] / n``.

    ``constriction`` quantizes it to 24-bit fixed point "leakily" (every symbol keeps a
    nonzero probability), deterministically: encoder and decoder build it from the same
    integer counts stored in the file.
    """
    import constriction

    c = np.asarray(counts, dtype=np.float64)
    if c.shape != (3,) or np.any(c < 0) or c.sum() <= 0:
        raise SymbolError(f"invalid symbol counts {list(counts)}")
    return constriction.stream.model.Categorical(c / c.sum(), perfect=False)


def encode_ans(tensors: list[tuple[np.ndarray, list[int]]]) -> tuple[bytes, list[float]]:
    """Entropy-code several symbol arrays into one ANS stream (little-endian 32-bit words).

    Each array uses the static model of its own ``counts``. Returns the stream and the
    number of bits each array added to it (the coder's final state, at most 64 bits for the
    whole stream, is charged to the first array).
    """
    import constriction

    coder = constriction.stream.stack.AnsCoder()
    bits = [0.0] * len(tensors)
    # a stack: encode the last tensor first so that decoding runs in order
    for i in range(len(tensors) - 1, -1, -1):
        symbols, counts = tensors[i]
        symbols = np.ascontiguousarray(symbols, dtype=np.int32)
        before = coder.num_valid_bits()
        if symbols.size:
            coder.encode_reverse(symbols, categorical_model(counts))
        bits[i] = float(coder.num_valid_bits() - before)
    data = np.asarray(coder.get_compressed(), dtype="<u4").tobytes()
    if bits:
        bits[0] += 8 * len(data) - sum(bits)
    return data, bits


def decode_ans(data: bytes, counts: list[list[int]]) -> list[np.ndarray]:
    """Decode the arrays of :func:`encode_ans` given their counts, and check the counts."""
    import constriction

    if len(data) % 4:
        raise SymbolError("ANS stream length is not a multiple of 4 bytes")
    coder = constriction.stream.stack.AnsCoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
    out = []
    for c in counts:
        n = int(sum(c))
        if n == 0:
            out.append(np.zeros(0, np.int32))
            continue
        symbols = np.asarray(coder.decode(categorical_model(c), n), dtype=np.int32)
        if symbol_counts(symbols) != [int(v) for v in c]:
            raise SymbolError("ANS stream does not decode to the declared symbol counts")
        out.append(symbols)
    if not coder.is_empty():
        raise SymbolError("ANS stream has data left after the last tensor")
    return out


def pack_2bit(symbols: np.ndarray) -> bytes:
    """Pack symbols (0..2) 4 per byte, first symbol in the two least significant bits."""
    s = np.asarray(symbols, np.uint8)
    pad = (-s.size) % 4
    s = np.concatenate([s, np.zeros(pad, np.uint8)]).reshape(-1, 4)
    return (s[:, 0] | (s[:, 1] << 2) | (s[:, 2] << 4) | (s[:, 3] << 6)).astype(np.uint8).tobytes()


def unpack_2bit(data: bytes, n: int) -> np.ndarray:
    """Inverse of :func:`pack_2bit` for ``n`` symbols."""
    if len(data) != (n + 3) // 4:
        raise SymbolError(f"2-bit stream has {len(data)} bytes, expected {(n + 3) // 4}")
    b = np.frombuffer(data, np.uint8)
    s = np.stack([(b >> k) & 3 for k in (0, 2, 4, 6)], axis=1).reshape(-1)[:n].astype(np.int32)
    if np.any(s > 2):
        raise SymbolError("2-bit stream contains the unused code 3")
    return s
