"""Export for edge devices: TFLite with exact int8 ternary kernels, and a packed format.

* :func:`to_tflite` — constant ternary kernels, batch-norm folded, full-integer (``"int8"``)
  or float32 (``"float"``) conversion, checked by reading the flatbuffer back.
* :func:`pack` / :func:`unpack` — the entropy-coded ternary format of docs/format.md.
"""

from keras_ternary._compat import ensure_legacy_keras

ensure_legacy_keras()

from keras_ternary.export.flatbuffer import WeightTensor, read_weight_tensors  # noqa: E402
from keras_ternary.export.fold import ExportError, inference_model  # noqa: E402
from keras_ternary.export.packed import (  # noqa: E402
    PackedFormatError,
    PackReport,
    pack,
    read_header,
    unpack,
)
from keras_ternary.export.tflite import (  # noqa: E402
    Agreement,
    TFLiteExport,
    check_ternary_kernels,
    compare_with_keras,
    load_interpreter,
    predict_tflite,
    to_tflite,
)

__all__ = [
    "Agreement",
    "ExportError",
    "PackReport",
    "PackedFormatError",
    "TFLiteExport",
    "WeightTensor",
    "check_ternary_kernels",
    "compare_with_keras",
    "inference_model",
    "load_interpreter",
    "pack",
    "predict_tflite",
    "read_header",
    "read_weight_tensors",
    "to_tflite",
    "unpack",
]
