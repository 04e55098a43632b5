"""Read the weight tensors of a .tflite flatbuffer directly (no interpreter involved).

Also adds / reads named metadata entries (the schema's ``Model.metadata``: a name and a
buffer), which :func:`keras_ternary.export.to_tflite` uses to record what the source
Keras model was (layer names, folded batch-norms, quantizers).

Uses the generated TFLite schema module shipped with ``ai-edge-litert`` (or TensorFlow's copy)
to list, for every convolution / fully-connected operator, its weight tensor: storage type,
shape, raw stored values and quantization parameters. This is what is *in the file*, so it
shows whether ternary kernels were stored as int8 or as float32.
"""

from __future__ import annotations

import contextlib
import os
import struct
from dataclasses import dataclass

import numpy as np

from keras_ternary.export.fold import ExportError

__all__ = ["WeightTensor", "add_metadata", "read_metadata", "read_weight_tensors", "schema"]

_NUMPY_TYPES = {
    "FLOAT32": np.float32,
    "FLOAT16": np.float16,
    "FLOAT64": np.float64,
    "INT8": np.int8,
    "UINT8": np.uint8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
}
FILE_IDENTIFIER = b"TFL3"
WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "CONV_3D", "TRANSPOSE_CONV")


def schema():
    """The generated TFLite flatbuffer schema module (LiteRT's, else TensorFlow's)."""
    try:
        from ai_edge_litert import schema_py_generated as mod
    except ImportError:  # pragma: no cover - depends on the installation
        from tensorflow.lite.python import schema_py_generated as mod
    return mod


@dataclass
class WeightTensor:
    """The weight (filter) input of one conv / fully-connected operator of a .tflite model.

    Attributes:
        op: builtin operator name, e.g. ``"CONV_2D"``.
        op_index: position of the operator in the main subgraph.
        name: tensor name as written by the converter.
        dtype: storage type name (``"INT8"``, ``"FLOAT32"``, ...).
        shape: tensor shape (TFLite layout: ``[out, kh, kw, in]`` for CONV_2D,
            ``[out, in]`` for FULLY_CONNECTED).
        values: the stored values (int8 codes for a quantized tensor), or None if the
            tensor has no constant buffer (e.g. produced at run time by DEQUANTIZE).
        scales, zero_points: quantization parameters (empty when not quantized).
        quantized_dimension: axis the scales run along.
    """

    op: str
    op_index: int
    name: str
    dtype: str
    shape: tuple[int, ...]
    values: np.ndarray | None
    scales: np.ndarray
    zero_points: np.ndarray
    quantized_dimension: int

    @property
    def nbytes(self) -> int:
        return 0 if self.values is None else int(self.values.nbytes)


def _names(enum_cls) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


def _buffer_data(model, buf: bytes, index: int, dtype) -> np.ndarray | None:
    b = model.Buffers(index)
    if b is None:
        return None
    offset = b.Offset() if hasattr(b, "Offset") else 0
    if offset > 1:  # large models keep buffers after the flatbuffer
        raw = buf[offset : offset + b.Size()]
    else:
        if b.DataLength() == 0:
            return None
        raw = b.DataAsNumpy().tobytes()
    return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).copy()


def read_weight_tensors(tflite: bytes | str | os.PathLike) -> list[WeightTensor]:
    """List the weight tensor of every conv / fully-connected operator, in graph order.

    Args:
        tflite: the flatbuffer bytes or a path to a .tflite file.
    """
    buf = _read(tflite)
    with _decoding(tflite):
        return _weight_tensors(_model(buf), buf)


def _weight_tensors(model, buf: bytes) -> list[WeightTensor]:
    s = schema()
    op_names = _names(s.BuiltinOperator)
    type_names = _names(s.TensorType)
    graph = model.Subgraphs(0)
    out = []
    if graph is None:
        raise ExportError("the model has no subgraph")
    for i in range(_length(graph.OperatorsLength(), buf)):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        op_name = op_names.get(builtin, str(builtin))
        if op_name not in WEIGHT_OPS or op.InputsLength() < 2:
            continue
        t = graph.Tensors(int(op.Inputs(1)))
        dtype = type_names.get(t.Type(), str(t.Type()))
        shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        values = None
        if dtype in _NUMPY_TYPES:
            values = _buffer_data(model, buf, t.Buffer(), _NUMPY_TYPES[dtype])
            if values is not None and values.size == int(np.prod(shape)):
                values = values.reshape(shape)
        q = t.Quantization()
        scales, zps = np.empty(0, np.float32), np.empty(0, np.int64)
        if q and q.ScaleLength():
            scales = np.asarray(q.ScaleAsNumpy(), np.float32)
        if q and q.ZeroPointLength():
            zps = np.asarray(q.ZeroPointAsNumpy(), np.int64)
        out.append(
            WeightTensor(
                op=op_name,
                op_index=i,
                name=(t.Name() or b"").decode("utf-8", "replace"),
                dtype=dtype,
                shape=shape,
                values=values,
                scales=scales,
                zero_points=zps,
                quantized_dimension=int(q.QuantizedDimension()) if q else 0,
            )
        )
    return out


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
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_metadata(tflite: bytes | str | os.PathLike, name: str) -> bytes | None:
    """The payload of metadata entry ``name``, or None if the model has none."""
    buf = _read(tflite)
    with _decoding(tflite):
        model = _model(buf)
        for i in range(_length(model.MetadataLength(), buf)):
            entry = model.Metadata(i)
            if _text(entry.Name() or b"") == name:
                data = _buffer_data(model, buf, entry.Buffer(), np.uint8)
                return b"" if data is None else data.tobytes()
    return None


def _source(tflite: bytes | str | os.PathLike) -> str:
    return "the .tflite data" if isinstance(tflite, bytes | bytearray) else os.fspath(tflite)


def _model(buf: bytes):
    """The flatbuffer root ``Model`` of ``buf`` after checking the ``TFL3`` file identifier."""
    if len(buf) < 8 or buf[4:8] != FILE_IDENTIFIER:
        raise ExportError("not a TFLite model (no TFL3 file identifier)")
    return schema().Model.GetRootAs(buf, 0)


def _length(n: int, buf: bytes) -> int:
    """A vector length read from the file; a damaged one may not exceed the buffer."""
    if not 0 <= n <= len(buf) // 4:
        raise ExportError(f"corrupt TFLite model: vector length {n} exceeds the file")
    return n


@contextlib.contextmanager
def _decoding(tflite: bytes | str | os.PathLike):
    """Turn the errors a damaged flatbuffer raises while being decoded into ExportError."""
    try:
        yield
    except ExportError as exc:
        raise ExportError(f"cannot read {_source(tflite)}: {exc}") from exc
    except (struct.error, IndexError, TypeError, ValueError, OverflowError, AttributeError) as exc:
        raise ExportError(
            f"cannot read {_source(tflite)}: corrupt TFLite model ({type(exc).__name__}: {exc})"
        ) from exc


def _read(tflite: bytes | str | os.PathLike) -> bytes:
    if isinstance(tflite, bytes | bytearray):
        return bytes(tflite)
    with open(tflite, "rb") as f:
        return f.read()
