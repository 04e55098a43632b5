"""Read the weight tensors of a .tflite flatbuffer directly (no interpreter involved).

Also adds / reads named metadata entries (the schema's ``Model.metadata``: a name and a
buffer), which :func:`keras_ternary.export.to_tflite` uses to record what the source
Keras model was (:mod:`keras_ternary.contract.metadata`).

The flatbuffer is read with :class:`keras_ternary.contract.tflite_reader.TFLiteModel` (the
reader hw_sim uses too) to list, for every convolution / fully-connected operator, its
weight tensor: storage type, shape, raw stored values and quantization parameters. This is
what is *in the file*, so it shows whether ternary kernels were stored as int8 or as float32.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from keras_ternary.contract.errors import ContractError
from keras_ternary.contract.tflite_reader import FILE_IDENTIFIER, TFLiteModel, add_metadata, schema
from keras_ternary.export.fold import ExportError

__all__ = [
    "FILE_IDENTIFIER",
    "WeightTensor",
    "add_metadata",
    "read_metadata",
    "read_weight_tensors",
    "schema",
]

WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "CONV_3D", "TRANSPOSE_CONV")


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


def _open(tflite: bytes | str | os.PathLike) -> tuple[TFLiteModel, str]:
    if isinstance(tflite, bytes | bytearray):
        source, data = "the .tflite data", bytes(tflite)
    else:
        source = os.fspath(tflite)
        with open(tflite, "rb") as f:
            data = f.read()
    try:
        return TFLiteModel(data), source
    except ContractError as exc:
        raise ExportError(f"cannot read {source}: {exc}") from exc


def read_weight_tensors(tflite: bytes | str | os.PathLike) -> list[WeightTensor]:
    """List the weight tensor of every conv / fully-connected operator, in graph order.

    Args:
        tflite: the flatbuffer bytes or a path to a .tflite file.
    """
    model, source = _open(tflite)
    out = []
    try:
        for op in model.operators():
            if op.kind not in WEIGHT_OPS or len(op.inputs) < 2:
                continue
            t = model.tensor(op.inputs[1])
            out.append(
                WeightTensor(
                    op=op.kind,
                    op_index=op.index,
                    name=t.name,
                    dtype=t.dtype,
                    shape=t.shape,
                    values=model.values(t.index),
                    scales=t.scales,
                    zero_points=t.zero_points,
                    quantized_dimension=t.quantized_dimension,
                )
            )
    except ContractError as exc:
        raise ExportError(f"cannot read {source}: {exc}") from exc
    return out


def read_metadata(tflite: bytes | str | os.PathLike, name: str) -> bytes | None:
    """The payload of metadata entry ``name``, or None if the model has none."""
    model, source = _open(tflite)
    try:
        return model.metadata(name)
    except ContractError as exc:
        raise ExportError(f"cannot read {source}: {exc}") from exc
