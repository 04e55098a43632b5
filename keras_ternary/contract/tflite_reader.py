"""The one reader of .tflite flatbuffers: tensors, constant buffers, operators, metadata.

Built on the generated TFLite schema module that LiteRT ships (``ai_edge_litert``;
TensorFlow's copy only if LiteRT is missing), read lazily: only the main subgraph is
touched, and every vector length read from the file is checked against the file size, so
that a damaged file fails fast with a :class:`ContractError` instead of hanging or
allocating without bound. :func:`add_metadata` writes a named metadata entry.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from keras_ternary.contract.errors import ContractError

__all__ = [
    "FILE_IDENTIFIER",
    "NUMPY_TYPES",
    "Operator",
    "TFLiteModel",
    "Tensor",
    "add_metadata",
    "schema",
]

FILE_IDENTIFIER = b"TFL3"
#: TFLite tensor type name -> numpy dtype of its stored values.
NUMPY_TYPES = {
    "FLOAT32": np.float32,
    "FLOAT16": np.float16,
    "FLOAT64": np.float64,
    "INT8": np.int8,
    "UINT8": np.uint8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
}
#: What the flatbuffers runtime raises while decoding garbage.
_DECODE_ERRORS = (struct.error, IndexError, TypeError, ValueError, OverflowError, AttributeError)


def schema():
    """The generated TFLite flatbuffer schema module (LiteRT's, else TensorFlow's)."""
    try:
        from ai_edge_litert import schema_py_generated as mod
    except ImportError:  # pragma: no cover - depends on the installation
        try:
            from tensorflow.lite.python import schema_py_generated as mod
        except ImportError as exc:
            raise ContractError(
                "reading .tflite needs ai-edge-litert (pip install ai-edge-litert)"
            ) from exc
    return mod


def _names(enum_cls) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")


def _guarded(method: Callable) -> Callable:
    """Turn the errors a damaged flatbuffer raises while being decoded into ContractError."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except ContractError:
            raise
        except _DECODE_ERRORS as exc:
            raise ContractError(f"corrupt TFLite model ({type(exc).__name__}: {exc})") from exc

    return wrapper


@dataclass(frozen=True)
class Tensor:
    """One tensor of the main subgraph.

    Attributes:
        index: its position in the subgraph.
        name: as written by the converter.
        dtype: storage type name (``"INT8"``, ``"FLOAT32"``, ...).
        shape: TFLite layout (``[out, kh, kw, in]`` for a CONV_2D filter).
        buffer: index of its constant buffer (0: none).
        scales, zero_points: quantization parameters (empty when not quantized).
        quantized_dimension: axis the scales run along.
    """

    index: int
    name: str
    dtype: str
    shape: tuple[int, ...]
    buffer: int
    scales: np.ndarray
    zero_points: np.ndarray
    quantized_dimension: int


@dataclass(frozen=True)
class Operator:
    """One operator of the main subgraph: builtin name, tensor indices, typed options."""

    index: int
    kind: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: Any  # the schema's object-API options (e.g. Conv2DOptionsT), or None


class TFLiteModel:
    """A .tflite flatbuffer, read through the schema.

    Raises:
        ContractError: no ``TFL3`` identifier, no subgraph, or a damaged file.
    """

    @_guarded
    def __init__(self, data: bytes):
        self.schema = s = schema()
        self.data = bytes(data)
        if len(self.data) < 8 or self.data[4:8] != FILE_IDENTIFIER:
            raise ContractError("not a TFLite model (no TFL3 file identifier)")
        self.model = s.Model.GetRootAs(self.data, 0)
        if self._length(self.model.SubgraphsLength()) == 0:
            raise ContractError("the model has no subgraph")
        self.graph = self.model.Subgraphs(0)
        self.n_tensors = self._length(self.graph.TensorsLength())
        self._op_names = _names(s.BuiltinOperator)
        self._type_names = _names(s.TensorType)
        self._tensors: dict[int, Tensor] = {}

    def _length(self, n: int) -> int:
        """A vector length read from the file; a damaged one may not exceed the buffer."""
        if not 0 <= n <= len(self.data) // 4:
            raise ContractError(f"corrupt TFLite model: vector length {n} exceeds the file")
        return n

    def enum_name(self, enum: str, value: int) -> str:
        """Name of ``value`` in schema enum ``enum`` (e.g. ``("Padding", 0)`` -> ``"SAME"``)."""
        return _names(getattr(self.schema, enum)).get(int(value), str(value))

    @property
    @_guarded
    def inputs(self) -> list[int]:
        """Tensor indices of the main subgraph's inputs."""
        return [int(t) for t in self.graph.InputsAsNumpy()] if self.graph.InputsLength() else []

    @property
    @_guarded
    def outputs(self) -> list[int]:
        """Tensor indices of the main subgraph's outputs."""
        return [int(t) for t in self.graph.OutputsAsNumpy()] if self.graph.OutputsLength() else []

    @_guarded
    def tensor(self, index: int) -> Tensor:
        """Tensor ``index`` of the main subgraph."""
        if index in self._tensors:
            return self._tensors[index]
        if not 0 <= index < self.n_tensors:
            raise ContractError(f"corrupt TFLite model: tensor {index} does not exist")
        t = self.graph.Tensors(index)
        q = t.Quantization()
        scales, zps = np.empty(0, np.float32), np.empty(0, np.int64)
        if q and q.ScaleLength():
            scales = np.asarray(q.ScaleAsNumpy(), np.float32)
        if q and q.ZeroPointLength():
            zps = np.asarray(q.ZeroPointAsNumpy(), np.int64)
        tensor = Tensor(
            index=index,
            name=_text(t.Name()),
            dtype=self._type_names.get(t.Type(), str(t.Type())),
            shape=tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else (),
            buffer=int(t.Buffer()),
            scales=scales,
            zero_points=zps,
            quantized_dimension=int(q.QuantizedDimension()) if q else 0,
        )
        self._tensors[index] = tensor
        return tensor

    def _buffer(self, index: int, dtype) -> np.ndarray | None:
        b = self.model.Buffers(index) if 0 <= index < self.model.BuffersLength() else None
        if b is None:
            return None
        offset = b.Offset() if hasattr(b, "Offset") else 0
        if offset > 1:  # large models keep buffers after the flatbuffer
            raw = self.data[offset : offset + b.Size()]
        elif not 0 < b.DataLength() <= len(self.data):
            if b.DataLength() == 0:
                return None
            raise ContractError(
                f"corrupt TFLite model: buffer length {b.DataLength()} exceeds the file"
            )
        else:
            raw = b.DataAsNumpy().tobytes()
        return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).copy()

    @_guarded
    def values(self, index: int) -> np.ndarray | None:
        """Stored values of a constant tensor (int8 codes if quantized), else None.

        Reshaped to the tensor's shape when the sizes agree.
        """
        t = self.tensor(index)
        dtype = NUMPY_TYPES.get(t.dtype)
        values = self._buffer(t.buffer, dtype) if dtype is not None else None
        if values is not None and values.size == int(np.prod(t.shape)):
            values = values.reshape(t.shape)
        return values

    @_guarded
    def dequantized(self, index: int) -> np.ndarray | None:
        """float64 value of a constant tensor (integer codes dequantized), else None."""
        t = self.tensor(index)
        stored = self.values(index)
        if stored is None:
            return None
        if stored.shape != t.shape:
            raise ContractError(f"tensor {t.name!r}: constant size does not match its shape")
        values = stored.astype(np.float64)
        if t.scales.size and t.dtype not in ("FLOAT32", "FLOAT16", "FLOAT64"):
            scale = t.scales.astype(np.float64)
            zero = t.zero_points.astype(np.float64) if t.zero_points.size else 0.0
            shape = [1] * values.ndim
            if scale.size > 1:
                shape[t.quantized_dimension] = scale.size
            values = (values - np.reshape(zero, shape if np.size(zero) > 1 else [])) * np.reshape(
                scale, shape
            )
        return values

    @_guarded
    def operators(self) -> Iterator[Operator]:
        """The operators of the main subgraph, in order."""
        ops = []
        n_codes = self.model.OperatorCodesLength()
        for i in range(self._length(self.graph.OperatorsLength())):
            op = self.graph.Operators(i)
            index = op.OpcodeIndex()
            if not 0 <= index < n_codes:
                raise ContractError(f"corrupt TFLite model: operator code {index} does not exist")
            code = self.model.OperatorCodes(index)
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            inputs = tuple(int(t) for t in op.InputsAsNumpy()) if op.InputsLength() else ()
            outputs = tuple(int(t) for t in op.OutputsAsNumpy()) if op.OutputsLength() else ()
            options = self.schema.BuiltinOptionsCreator(
                op.BuiltinOptionsType(), op.BuiltinOptions()
            )
            ops.append(
                Operator(i, self._op_names.get(builtin, str(builtin)), inputs, outputs, options)
            )
        return iter(ops)

    @_guarded
    def metadata(self, name: str) -> bytes | None:
        """The payload of metadata entry ``name``, or None if the model has none."""
        for i in range(self._length(self.model.MetadataLength())):
            entry = self.model.Metadata(i)
            if _text(entry.Name() or b"") == name:
                data = self._buffer(entry.Buffer(), np.uint8)
                return b"" if data is None else data.tobytes()
        return None


def add_metadata(tflite: bytes, name: str, payload: bytes) -> bytes:
    """Return ``tflite`` with a metadata entry ``name`` holding ``payload`` (replacing one)."""
    import flatbuffers

    s = schema()
    model = s.ModelT.InitFromPackedBuf(bytearray(tflite), 0)
    model.metadata = [m for m in (model.metadata or []) if _text(m.name) != name]
    buffer = s.BufferT()
    buffer.data = np.frombuffer(payload, np.uint8)
    model.buffers.append(buffer)
    entry = s.MetadataT()
    entry.name = name
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)
    builder = flatbuffers.Builder(len(tflite) + len(payload) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())
