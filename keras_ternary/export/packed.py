"""The packed ternary model format (``.ktp``): entropy-coded ternary kernels + float parameters.

See docs/format.md for the byte-level specification. In short::

    fixed header (40 bytes) | metadata (deflated UTF-8 JSON) | payload (raw tensors, coded kernels)

The header carries a magic number, the format version, the section lengths and CRC-32
checksums of the header, metadata and payload, so that a truncated or corrupted file is
rejected with a :class:`PackedFormatError` saying what is wrong, before anything is decoded.

Only what inference needs is stored: each ternary kernel (every quantized kernel
:data:`keras_ternary.layer_table.LAYER_WEIGHTS` lists: ``kernel``, a depthwise layer's
``depthwise_kernel``, a separable one's two) as its ternary values (the latent float
weights are not needed: the quantizer maps ``t ∈ {-1, 0, +1}`` to itself, which
:func:`pack` checks), every other weight (biases, batch-norm, Δ variables, float layers)
as raw little-endian arrays, and the Keras model config. :func:`unpack` rebuilds the
model with the same architecture; its predictions are identical to the source model's.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import asdict, dataclass, field

import numpy as np
import tensorflow as tf

from keras_ternary.export.coding import (
    decode_ans,
    encode_ans,
    from_symbols,
    pack_2bit,
    symbol_counts,
    to_symbols,
    unpack_2bit,
)
from keras_ternary.export.fold import constant_kernel, is_ternary
from keras_ternary.export.tflite import write_atomic
from keras_ternary.layer_table import kernel_weights
from keras_ternary.stats import QuantizedKernel, entropy_bits, quantized_weights

__all__ = [
    "CODINGS",
    "FORMAT_VERSION",
    "MAGIC",
    "PackReport",
    "PackedFormatError",
    "TensorCoding",
    "pack",
    "read_header",
    "unpack",
]

MAGIC = b"\x89KTPK\r\n\x1a"
FORMAT_VERSION = (1, 0)
_HEADER = struct.Struct("<8sHHIIQIII")  # magic, major, minor, flags, M, P, crc_m, crc_p, crc_h
HEADER_SIZE = _HEADER.size  # 40
CODINGS = ("ans", "2bit")


class PackedFormatError(ValueError):
    """The file is not a valid packed ternary model (message says why)."""


@dataclass
class TensorCoding:
    """How one ternary kernel was coded."""

    name: str
    n: int
    counts: list[int]
    entropy: float  # empirical entropy of this tensor, bits/weight
    bits: float  # bits spent in the file on its values

    @property
    def bits_per_weight(self) -> float:
        return self.bits / self.n if self.n else 0.0


@dataclass
class PackReport:
    """Sizes and coding rates of a packed file."""

    path: str
    coding: str
    size_bytes: int
    metadata_bytes: int
    raw_bytes: int  # float parameters
    coded_bytes: int  # ternary kernels
    tensors: list[TensorCoding] = field(default_factory=list)

    @property
    def n_ternary(self) -> int:
        return sum(t.n for t in self.tensors)

    @property
    def entropy(self) -> float:
        """Empirical entropy of all ternary weights of the model pooled, bits/weight."""
        counts = np.sum([t.counts for t in self.tensors], axis=0) if self.tensors else [0, 0, 0]
        return entropy_bits(counts)

    @property
    def layer_entropy(self) -> float:
        """Weighted mean of the per-tensor entropies, ``Σ n_l H_l / Σ n_l`` (bits/weight).

        The bound a per-tensor static model approaches; never above :attr:`entropy`.
        """
        n = self.n_ternary
        return sum(t.n * t.entropy for t in self.tensors) / n if n else 0.0

    @property
    def bits_per_weight(self) -> float:
        return sum(t.bits for t in self.tensors) / self.n_ternary if self.n_ternary else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(
            n_ternary=self.n_ternary,
            entropy=self.entropy,
            layer_entropy=self.layer_entropy,
            bits_per_weight=self.bits_per_weight,
        )
        for t, td in zip(self.tensors, d["tensors"], strict=True):
            td["bits_per_weight"] = t.bits_per_weight
        return d

    def to_markdown(self) -> str:
        """Per-layer and total table: weights, entropy, bits/weight."""
        rows = [
            "| tensor | weights | -1 / 0 / +1 | entropy (bits/w) | coded (bits/w) |",
            "|---|---:|---|---:|---:|",
        ]
        for t in self.tensors:
            counts = " / ".join(str(c) for c in t.counts)
            rows.append(
                f"| {t.name} | {t.n} | {counts} | {t.entropy:.4f} | {t.bits_per_weight:.4f} |"
            )
        total = np.sum([t.counts for t in self.tensors], axis=0) if self.tensors else [0, 0, 0]
        counts = " / ".join(str(int(c)) for c in total)
        rows.append(
            f"| **total** (pooled) | {self.n_ternary} | {counts} | {self.entropy:.4f} | "
            f"{self.bits_per_weight:.4f} |"
        )
        rows.append(
            f"| **total** (Σ n·H per tensor) | {self.n_ternary} | | {self.layer_entropy:.4f} | "
            f"{self.bits_per_weight:.4f} |"
        )
        return "\n".join(rows)


def _kernel_variables(model: tf.keras.Model) -> dict[int, QuantizedKernel]:
    """Position in ``model.weights`` -> its quantized kernel, for every one of them."""
    positions = {}
    for found in quantized_weights(model):
        kernel = getattr(found.kernel, "latent_variable", found.kernel)
        for i, w in enumerate(model.weights):
            if getattr(w, "latent_variable", w) is kernel:
                positions[i] = found
                break
    return positions


def _ternary_values(found: QuantizedKernel) -> np.ndarray | None:
    """The kernel's ternary values if storing them in place of the latent kernel is lossless."""
    weight = next(w for w in kernel_weights(found.layer) if w.kernel_attr == found.kernel_attr)
    t = constant_kernel(found.layer, weight)
    if not is_ternary(t):
        return None
    again = np.asarray(found.quantizer(tf.constant(t)), np.float32)
    return t if np.array_equal(again, t) else None


def pack(model: tf.keras.Model, path: str | os.PathLike, coding: str = "ans") -> PackReport:
    """Write ``model`` as a packed ternary file.

    Args:
        model: a functional or Sequential Keras model (config must be serializable).
        path: output file (written atomically).
        coding: ``"ans"`` (entropy coding) or ``"2bit"`` (fixed 2 bits per weight).

    Returns:
        A :class:`PackReport` with per-tensor entropy and bits per weight.
    """
    if coding not in CODINGS:
        raise ValueError(f"coding must be one of {CODINGS}, got {coding!r}")
    try:
        config = json.loads(model.to_json())
    except (NotImplementedError, TypeError, ValueError) as exc:
        raise ValueError(f"cannot serialize the model config: {exc}") from exc
    kernels = _kernel_variables(model)
    entries, raw_parts, coded = [], [], []
    raw_offset = 0
    for i, w in enumerate(model.weights):
        value = np.asarray(w.numpy() if hasattr(w, "numpy") else w)
        entry = {"index": i, "name": w.name, "shape": list(value.shape), "dtype": value.dtype.str}
        t = _ternary_values(kernels[i]) if i in kernels else None
        if t is not None:
            symbols = to_symbols(t)
            entry.update(encoding=coding, layer=kernels[i].name, counts=symbol_counts(symbols))
            coded.append((entry, symbols))
        else:
            data = np.ascontiguousarray(value).astype(value.dtype.newbyteorder("<")).tobytes()
            entry.update(encoding="raw", offset=raw_offset, length=len(data))
            entry["dtype"] = value.dtype.newbyteorder("<").str
            raw_parts.append(data)
            raw_offset += len(data)
        entries.append(entry)
    raw = b"".join(raw_parts)
    if coding == "ans":
        stream, bits = encode_ans([(s, e["counts"]) for e, s in coded])
    else:
        parts = [pack_2bit(s) for _, s in coded]
        bits = [8.0 * len(p) for p in parts]
        offset = len(raw)
        for (e, _), p in zip(coded, parts, strict=True):
            e.update(offset=offset, length=len(p))
            offset += len(p)
        stream = b"".join(parts)
    meta = {
        "format": "keras-ternary-packed",
        "producer": _producer(),
        "coding": coding,
        "coded_offset": len(raw),
        "coded_length": len(stream),
        "model_config": config,
        "tensors": entries,
    }
    meta_bytes = zlib.compress(json.dumps(meta, separators=(",", ":")).encode("utf-8"), 9)
    payload = raw + stream
    header = _header(meta_bytes, payload)
    write_atomic(path, header + meta_bytes + payload)
    report = PackReport(
        os.fspath(path),
        coding,
        len(header) + len(meta_bytes) + len(payload),
        len(meta_bytes),
        len(raw),
        len(stream),
    )
    for (e, s), b in zip(coded, bits, strict=True):
        report.tensors.append(
            TensorCoding(e["layer"], int(s.size), e["counts"], entropy_bits(e["counts"]), b)
        )
    return report


def _producer() -> str:
    import keras_ternary

    return f"keras-ternary {keras_ternary.__version__}"


def _header(meta: bytes, payload: bytes) -> bytes:
    fields = (MAGIC, *FORMAT_VERSION, 0, len(meta), len(payload))
    crc_m, crc_p = zlib.crc32(meta), zlib.crc32(payload)
    head = _HEADER.pack(*fields, crc_m, crc_p, 0)[:-4]
    return head + struct.pack("<I", zlib.crc32(head))


def read_header(data: bytes) -> tuple[dict, bytes]:
    """Validate the framing of a packed file; return ``(metadata, payload)``.

    Raises:
        PackedFormatError: wrong magic, unsupported version, truncated/oversized file,
            or a checksum mismatch.
    """
    if len(data) < HEADER_SIZE:
        if not MAGIC.startswith(data[: len(MAGIC)]):
            raise PackedFormatError("not a keras-ternary packed file (bad magic number)")
        raise PackedFormatError(
            f"truncated file: {len(data)} bytes, shorter than the {HEADER_SIZE}-byte header"
        )
    magic, major, minor, _flags, m_len, p_len, crc_m, crc_p, crc_h = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise PackedFormatError("not a keras-ternary packed file (bad magic number)")
    if zlib.crc32(data[: HEADER_SIZE - 4]) != crc_h:
        raise PackedFormatError("corrupt file: header checksum mismatch")
    if major != FORMAT_VERSION[0]:
        raise PackedFormatError(
            f"unsupported format version {major}.{minor} (this reader: "
            f"{FORMAT_VERSION[0]}.{FORMAT_VERSION[1]})"
        )
    expected = HEADER_SIZE + m_len + p_len
    if len(data) < expected:
        raise PackedFormatError(f"truncated file: {len(data)} bytes, header declares {expected}")
    if len(data) > expected:
        raise PackedFormatError(
            f"corrupt file: {len(data) - expected} unexpected bytes after the declared end"
        )
    meta_bytes = data[HEADER_SIZE : HEADER_SIZE + m_len]
    payload = data[HEADER_SIZE + m_len :]
    if zlib.crc32(meta_bytes) != crc_m:
        raise PackedFormatError("corrupt file: metadata checksum mismatch")
    if zlib.crc32(payload) != crc_p:
        raise PackedFormatError("corrupt file: payload checksum mismatch")
    try:
        meta = json.loads(zlib.decompress(meta_bytes).decode("utf-8"))
    except (zlib.error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackedFormatError(f"corrupt file: metadata is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != "keras-ternary-packed":
        raise PackedFormatError("corrupt file: metadata does not describe a packed model")
    return meta, payload


#: dtypes a stored tensor may have (little-endian; what :func:`pack` writes for Keras weights)
DTYPES = ("<f2", "<f4", "<f8", "|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", "|b1")
_ENCODINGS = ("raw", "ans", "2bit")


def _int(value, what: str) -> int:
    """``value`` as a non-negative int (JSON integers only), else PackedFormatError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PackedFormatError(f"corrupt file: {what} must be a non-negative integer")
    return value


def _span(start, length, payload_size: int, what: str) -> tuple[int, int]:
    """A checked ``(start, length)`` byte range lying inside the payload."""
    start, length = _int(start, f"{what} offset"), _int(length, f"{what} length")
    if start + length > payload_size:
        raise PackedFormatError(f"corrupt file: {what} lies outside the payload")
    return start, length


def _check_entries(meta: dict, payload_size: int, shapes: list[tuple[int, ...]]) -> list[dict]:
    """Validate the tensor entries against the model's weight shapes and the payload size.

    Checks types, the dtype allow-list, shapes, symbol counts and that every byte range
    lies inside the payload, so that decoding cannot fail on a metadata value.
    """
    entries = meta.get("tensors")
    if not isinstance(entries, list) or len(entries) != len(shapes):
        raise PackedFormatError("the stored tensors do not match the model's weights")
    for position, (e, shape) in enumerate(zip(entries, shapes, strict=True)):
        if not isinstance(e, dict):
            raise PackedFormatError(f"corrupt file: tensor entry {position} is not a mapping")
        name = e.get("name")
        what = f"tensor {name!r}" if isinstance(name, str) else f"tensor {position}"
        if not isinstance(name, str):
            raise PackedFormatError(f"corrupt file: {what} has no name")
        if e.get("index") != position or isinstance(e.get("index"), bool):
            raise PackedFormatError(f"corrupt file: {what} has index {e.get('index')!r}")
        stored = e.get("shape")
        if not isinstance(stored, list) or [_int(d, f"{what} shape") for d in stored] != list(
            shape
        ):
            raise PackedFormatError(f"{what}: shape {stored!r} does not match the model {shape}")
        if e.get("dtype") not in DTYPES:
            raise PackedFormatError(f"corrupt file: {what} has dtype {e.get('dtype')!r}")
        encoding = e.get("encoding")
        if encoding not in _ENCODINGS:
            raise PackedFormatError(f"{what}: unknown encoding {encoding!r}")
        if encoding != "raw":
            counts = e.get("counts")
            if not isinstance(counts, list) or len(counts) != 3:
                raise PackedFormatError(f"corrupt file: {what} has no 3 symbol counts")
            if sum(_int(c, f"{what} counts") for c in counts) != int(np.prod(shape)):
                raise PackedFormatError(f"{what}: counts do not match its shape")
        if encoding != "ans":
            _span(e.get("offset"), e.get("length"), payload_size, what)
    if any(e["encoding"] == "ans" for e in entries):
        _span(meta.get("coded_offset"), meta.get("coded_length"), payload_size, "ANS stream")
    return entries


def _decode_tensors(entries: list[dict], meta: dict, payload: bytes) -> list[np.ndarray]:
    """Decode the payload; ``entries`` are checked by :func:`_check_entries`."""
    ans = [e for e in entries if e["encoding"] == "ans"]
    values: dict[int, np.ndarray] = {}
    if ans:
        start, length = meta["coded_offset"], meta["coded_length"]
        symbols = decode_ans(payload[start : start + length], [e["counts"] for e in ans])
        for e, s in zip(ans, symbols, strict=True):
            values[e["index"]] = from_symbols(s, e["shape"], np.dtype(e["dtype"]))
    for e in entries:
        n = int(np.prod(e["shape"]))
        if e["encoding"] == "2bit":
            chunk = payload[e["offset"] : e["offset"] + e["length"]]
            s = unpack_2bit(chunk, n)
            if symbol_counts(s) != e["counts"]:
                raise PackedFormatError(f"tensor {e['name']!r}: 2-bit data contradicts its counts")
            values[e["index"]] = from_symbols(s, e["shape"], np.dtype(e["dtype"]))
        elif e["encoding"] == "raw":
            dtype = np.dtype(e["dtype"])
            chunk = payload[e["offset"] : e["offset"] + e["length"]]
            if len(chunk) != n * dtype.itemsize:
                raise PackedFormatError(f"tensor {e['name']!r}: raw data has the wrong length")
            values[e["index"]] = np.frombuffer(chunk, dtype).reshape(e["shape"]).copy()
    return [values[e["index"]] for e in entries]


def unpack(path: str | os.PathLike) -> tf.keras.Model:
    """Read a packed file and rebuild the Keras model (ternary kernels as {-1, 0, +1}).

    Raises:
        PackedFormatError: the file is truncated, corrupt or not a packed model.
        FileNotFoundError: the file does not exist.
    """
    import keras_ternary  # noqa: F401  (registers the custom objects the config needs)

    with open(path, "rb") as f:
        data = f.read()
    meta, payload = read_header(data)
    try:
        model = tf.keras.models.model_from_json(json.dumps(meta["model_config"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise PackedFormatError(f"corrupt file: cannot rebuild the model: {exc}") from exc
    entries = _check_entries(meta, len(payload), [tuple(w.shape) for w in model.weights])
    try:
        arrays = _decode_tensors(entries, meta, payload)
    except PackedFormatError:
        raise
    except ValueError as exc:  # SymbolError, or constriction rejecting a damaged stream
        raise PackedFormatError(f"corrupt file: {exc}") from exc
    model.set_weights(arrays)
    return model
