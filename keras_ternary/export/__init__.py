"""Export for edge devices: TFLite with exact int8 ternary kernels, and a packed format.

* :func:`to_tflite` — constant ternary kernels, batch-norm folded, full-integer (``"int8"``)
  or float32 (``"float"``) conversion, checked by reading the flatbuffer back.
* :func:`pack` / :func:`unpack` — the entropy-coded ternary format of docs/format.md.

The names below are loaded on first use (PEP 562), so that the ``export`` subcommand's
``--help`` does not import TensorFlow.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "WeightTensor": "keras_ternary.export.flatbuffer",
    "read_weight_tensors": "keras_ternary.export.flatbuffer",
    "ExportError": "keras_ternary.export.fold",
    "inference_model": "keras_ternary.export.fold",
    "PackedFormatError": "keras_ternary.export.packed",
    "PackReport": "keras_ternary.export.packed",
    "pack": "keras_ternary.export.packed",
    "read_header": "keras_ternary.export.packed",
    "unpack": "keras_ternary.export.packed",
    "Agreement": "keras_ternary.export.tflite",
    "TFLiteExport": "keras_ternary.export.tflite",
    "check_ternary_kernels": "keras_ternary.export.tflite",
    "compare_with_keras": "keras_ternary.export.tflite",
    "load_interpreter": "keras_ternary.export.tflite",
    "predict_tflite": "keras_ternary.export.tflite",
    "to_tflite": "keras_ternary.export.tflite",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'keras_ternary.export' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
