"""Export to TFLite with exact ternary int8 kernels, and run the result with LiteRT.

:func:`to_tflite` builds the inference twin of the model (constant ternary kernels,
batch-norm folded, see :mod:`keras_ternary.export.fold`), converts it

* ``mode="int8"``: full-integer conversion calibrated on ``representative_data``. Weights
  are quantized symmetrically per output channel with scale ``max|W_c| / 127``; a folded
  ternary kernel ``s_c · t`` has ``max|W_c| = |s_c|``, so it is stored *exactly* as
  ``{-127, 0, +127}`` codes times ``|s_c| / 127``.
* ``mode="int16x8"``: the same int8 weights with int16 activations (TFLite's 16x8 scheme):
  close to the float model, slower (reference kernels).
* ``mode="float"``: float32 throughout (kernels ``s_c · t`` stored as float32).

and then reads the weight tensors back out of the flatbuffer (:func:`check_ternary_kernels`):
every ternary kernel of the source model must be found, with values only in
``{-q_c, 0, +q_c}`` per output channel (int8) or ``{-|s_c|, 0, +|s_c|}`` (float32).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import numpy as np
import tensorflow as tf

from keras_ternary.contract.metadata import METADATA_NAME, ExportMetadata, LayerEntry
from keras_ternary.export.flatbuffer import WeightTensor, add_metadata, read_weight_tensors
from keras_ternary.export.fold import ExportError, FoldedKernel, InferenceGraph, inference_model
from keras_ternary.export.transforms import kernel_quantizer
from keras_ternary.fileio import atomic_write
from keras_ternary.fusion import without_fusion_bug

__all__ = [
    "Agreement",
    "KernelCheck",
    "TFLiteExport",
    "check_ternary_kernels",
    "agreement",
    "compare_with_keras",
    "METADATA_NAME",
    "convert",
    "export_metadata",
    "load_interpreter",
    "predict_tflite",
    "to_tflite",
    "write_atomic",
]

MODES = ("int8", "int16x8", "float")
#: Modes that quantize (they need representative data for the activation ranges).
QUANTIZED_MODES = ("int8", "int16x8")


@dataclass
class KernelCheck:
    """How one ternary kernel of the source model is stored in the .tflite file."""

    layer: str
    tensor: str | None
    dtype: str | None
    shape: tuple[int, ...] | None
    exact: bool
    levels: list[int] = field(default_factory=list)  # distinct |code| values (int8) / sample
    n_zero: int = 0
    message: str = ""


@dataclass
class TFLiteExport:
    """What :func:`to_tflite` wrote and verified."""

    path: str
    mode: str
    size_bytes: int
    kernels: list[KernelCheck]
    folded: dict[str, str]
    fold_max_abs_diff: float | None = None
    residual_folded: list[str] = field(default_factory=list)

    @property
    def all_exact(self) -> bool:
        return all(k.exact for k in self.kernels)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Agreement:
    """Keras vs TFLite predictions on the same inputs.

    ``rms_diff`` is the root-mean-square difference of the outputs (logits). ``close_calls``
    is the fraction of inputs whose two largest Keras outputs are less than ``2 * rms_diff``
    apart: the inputs an error of typical size can flip. Few disagreements with many close
    calls means a fragile model, not a bad conversion.
    """

    n: int
    top1_agreement: float
    max_abs_diff: float
    keras_accuracy: float | None = None
    tflite_accuracy: float | None = None
    rms_diff: float | None = None
    close_calls: float | None = None


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`keras_ternary.fileio.atomic_write`).

    Raises:
        ExportError: the directory is missing, ``path`` is a directory, or writing failed;
            the message names ``path``, never the temporary file.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ExportError(f"cannot write {path}: directory {directory} does not exist")
    if os.path.isdir(path):
        raise ExportError(f"cannot write {path}: it is a directory")
    try:
        atomic_write(path, data)
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from None


def _representative(
    data: np.ndarray | Iterable | Callable | None, input_shape: tuple
) -> Callable[[], Iterable[list[np.ndarray]]]:
    """A converter ``representative_dataset``: one ``[1, *input_shape]`` float32 sample a step."""
    if data is None:
        raise ExportError("mode='int8' and 'int16x8' need representative_data (calibration inputs)")

    def samples():
        source = data() if callable(data) else data
        if isinstance(source, np.ndarray) or tf.is_tensor(source):
            source = [np.asarray(source)]
        for batch in source:
            batch = np.asarray(batch[0] if isinstance(batch, tuple | list) else batch, np.float32)
            if batch.shape == tuple(input_shape):
                batch = batch[None]
            if batch.shape[1:] != tuple(input_shape):
                raise ExportError(
                    f"representative_data has samples of shape {batch.shape[1:]}, "
                    f"the model expects {tuple(input_shape)}"
                )
            for i in range(batch.shape[0]):
                yield [batch[i : i + 1]]

    return samples


def convert(
    keras_model: tf.keras.Model,
    mode: str,
    representative_data=None,
    io_dtype: str | None = None,
) -> bytes:
    """Convert a float Keras model (already folded) to .tflite bytes.

    ``mode="int8"``: full-integer (``TFLITE_BUILTINS_INT8`` only) with per-channel weights;
    inputs/outputs are ``io_dtype`` (default ``"int8"``). ``mode="int16x8"``: TFLite's 16x8
    scheme, int8 per-channel weights (ternary kernels stay exact) and int16 activations, with
    float32 inputs/outputs; much closer to the float model than int8 (whose logits have only
    256 levels), but run by reference kernels (no XNNPACK), several times slower.
    ``mode="float"``: plain float32.
    """
    if mode not in MODES:
        raise ExportError(f"mode must be one of {MODES}, got {mode!r}")
    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    if mode in QUANTIZED_MODES:
        io_dtype = io_dtype or ("int8" if mode == "int8" else "float32")
        allowed = ("int8", "float32") if mode == "int8" else ("float32",)
        if io_dtype not in allowed:
            raise ExportError(
                f"io_dtype for mode={mode!r} must be one of {allowed}, got {io_dtype!r}"
            )
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _representative(
            representative_data, tuple(keras_model.input_shape[1:])
        )
        ops = tf.lite.OpsSet
        converter.target_spec.supported_ops = [
            ops.TFLITE_BUILTINS_INT8
            if mode == "int8"
            else ops.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
        if mode == "int8":
            io = tf.int8 if io_dtype == "int8" else tf.float32
            converter.inference_input_type = io
            converter.inference_output_type = io
    elif io_dtype not in (None, "float32"):
        raise ExportError("mode='float' has float32 inputs and outputs")
    try:
        return _convert_quietly(converter)
    except ExportError:
        raise
    except Exception as exc:  # converter errors are long; keep the first informative line
        first = next((ln for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
        raise ExportError(f"TFLite conversion ({mode}) failed: {first}") from exc


def _tflite_layout(kernel: np.ndarray, depthwise: bool = False) -> np.ndarray:
    """Keras kernel layout -> TFLite filter layout (output channels first; depthwise: last)."""
    if depthwise:  # (kh, kw, in, m) -> DEPTHWISE_CONV_2D (1, kh, kw, in·m)
        return kernel.reshape(1, *kernel.shape[:-2], -1)
    if kernel.ndim == 2:  # Dense (in, out) -> FULLY_CONNECTED (out, in)
        return kernel.T
    return np.moveaxis(kernel, -1, 0)  # Conv (kh, kw, in, out) -> (out, kh, kw, in)


def _check_one(fk: FoldedKernel, t: WeightTensor) -> KernelCheck:
    values = t.values
    axis = values.ndim - 1 if fk.depthwise else 0  # the output-channel axis
    per_channel = np.moveaxis(values, axis, 0).reshape(values.shape[axis], -1)
    expected = np.moveaxis(_tflite_layout(fk.kernel, fk.depthwise), axis, 0)
    expected = expected.reshape(per_channel.shape)
    n_zero = int((per_channel == 0).sum())
    if t.dtype == "INT8":
        mags = np.abs(per_channel.astype(np.int32))
        qmax = mags.max(axis=1, keepdims=True)
        levels_ok = bool(np.all((mags == 0) | (mags == qmax)))
        zp_ok = t.zero_points.size == 0 or not np.any(t.zero_points)
        scales = np.broadcast_to(t.scales.reshape(-1, 1), (per_channel.shape[0], 1))
        dequant = per_channel.astype(np.float64) * scales
        value_ok = bool(np.allclose(dequant, expected, rtol=1e-5, atol=1e-7))
        exact = levels_ok and zp_ok and value_ok and t.quantized_dimension == axis
        msg = "" if exact else f"levels_ok={levels_ok} zero_point_ok={zp_ok} value_ok={value_ok}"
        levels = sorted({int(v) for v in np.unique(qmax)})
    else:
        exact = bool(np.array_equal(per_channel.astype(np.float32), expected.astype(np.float32)))
        msg = "" if exact else f"{t.dtype} values differ from the folded ternary kernel"
        levels = []
    return KernelCheck(fk.layer, t.name, t.dtype, t.shape, exact, levels, n_zero, msg)


def check_ternary_kernels(
    tflite: bytes | str | os.PathLike, kernels: list[FoldedKernel]
) -> list[KernelCheck]:
    """Find each ternary kernel in the flatbuffer and check it is stored exactly.

    A kernel is matched to the conv / fully-connected weight tensor of the same shape
    (TFLite layout) whose stored values have the same sign pattern as ``s_c · t``.
    """
    tensors = [t for t in read_weight_tensors(tflite) if t.values is not None]
    used: set[int] = set()
    checks = []
    for fk in kernels:
        if fk.kind != "ternary":
            continue
        expected = _tflite_layout(fk.kernel, fk.depthwise)
        sign = np.sign(expected)
        match = None
        for i, t in enumerate(tensors):
            if i in used or t.shape != expected.shape:
                continue
            if np.array_equal(np.sign(t.values.astype(np.float64)), sign):
                match = i
                break
        if match is None:
            checks.append(
                KernelCheck(fk.layer, None, None, None, False, message="no matching tensor found")
            )
            continue
        used.add(match)
        checks.append(_check_one(fk, tensors[match]))
    return checks


def export_metadata(model: tf.keras.Model, graph: InferenceGraph, mode: str) -> ExportMetadata:
    """What the .tflite cannot say about its source model (stored as metadata, JSON).

    ``layers``: per conv/dense layer of the source (in order): its kernel quantizer kind
    and Δ, whether it had a bias, the batch-norm folded into it, that batch-norm's ε and
    the output channels where its scale is negative (so that ``t`` can be recovered);
    ``input``: the name of the model input; ``batchnorms``: the batch-norms that were kept;
    ``residual``: the batch-norms pushed back into residual branches
    (:class:`~keras_ternary.export.fold.ResidualFold`), and per layer ``residual_bn``.
    The layout is :class:`keras_ternary.contract.metadata.ExportMetadata`.
    """
    import keras_ternary
    from keras_ternary.stats import quantizer_kind

    folded_into = {conv: bn for bn, conv in graph.folded.items()}
    scales = {k.layer: k.scale for k in graph.kernels}
    residual_of = {name: f.bn for f in graph.residual for name, _ in f.branches}
    layers = []
    source_names = {layer.name for layer in model.layers}
    for layer in graph.model.layers:
        plain = type(layer).__name__
        if plain not in ("Conv1D", "Conv2D", "Conv3D", "Dense", "DepthwiseConv2D"):
            continue
        if layer.name not in source_names:
            continue  # added by the export (a residual batch-norm's depthwise scale)
        src = model.get_layer(layer.name)
        q = kernel_quantizer(src)
        bn = folded_into.get(layer.name)
        layers.append(
            LayerEntry(
                name=layer.name,
                quantizer=quantizer_kind(q),
                delta=float(q.delta) if hasattr(q, "delta") else None,
                use_bias=bool(getattr(src, "use_bias", False)),
                folded_bn=bn,
                bn_epsilon=float(model.get_layer(bn).epsilon) if bn else None,
                # output channels whose folded scale is negative (the sign moved into t)
                negative_channels=(
                    np.flatnonzero(scales[layer.name] < 0).tolist()
                    if bn and layer.name in scales
                    else []
                ),
                residual_bn=residual_of.get(layer.name),
            )
        )
    kept = [x.name for x in graph.model.layers if isinstance(x, tf.keras.layers.BatchNormalization)]
    return ExportMetadata(
        producer=f"keras-ternary {keras_ternary.__version__}",
        mode=mode,
        model_name=model.name,
        input=graph.model.input_names[0],
        layers=layers,
        batchnorms=kept,
        residual=list(graph.residual),
    )


def to_tflite(
    model: tf.keras.Model,
    path: str | os.PathLike,
    mode: str = "int8",
    representative_data=None,
    *,
    io_dtype: str | None = None,
    fold_bn: bool = True,
    fold_residual_bn: bool | None = None,
    strict: bool = True,
) -> TFLiteExport:
    """Export ``model`` to a .tflite file with constant ternary kernels and folded batch-norm.

    Args:
        model: a trained functional/Sequential Keras model (larq or keras-ternary layers).
        path: output file (written atomically).
        mode: ``"int8"`` (full-integer), ``"int16x8"`` (int8 weights, int16 activations;
            both need ``representative_data``) or ``"float"``.
        representative_data: calibration inputs, preprocessed like the training data: an
            array ``(N, *input_shape)``, an iterable of such batches (or ``(x, y)`` tuples),
            or a callable returning one.
        io_dtype: int8 mode: ``"int8"`` (default, fully integer) or ``"float32"`` model
            inputs/outputs; the other modes have float32 inputs/outputs.
        fold_bn: fold batch-norms into the preceding convolution where exact.
        fold_residual_bn: also push batch-norms after residual sums back into the branches
            (exact; see :func:`~keras_ternary.export.fold.fold_residual_batchnorms`). Default:
            on for ``"int8"``, where the sum is then quantized in the normalised domain
            (higher agreement with Keras); off for ``"float"`` (no gain) and ``"int16x8"``
            (TFLite has no 16x8 kernel for the stand-alone clip it leaves after pooling).
        strict: raise :class:`ExportError` (writing nothing) if a ternary kernel is not
            stored exactly.

    Returns:
        A :class:`TFLiteExport` with the per-kernel storage checks.
    """
    if mode not in MODES:
        raise ExportError(f"mode must be one of {MODES}, got {mode!r}")
    if isinstance(representative_data, np.ndarray):
        want = tuple(model.input_shape[1:])
        if representative_data.ndim != len(want) + 1 or representative_data.shape[1:] != want:
            raise ExportError(
                f"representative_data has shape {representative_data.shape}, "
                f"the model expects (N, {', '.join(str(d) for d in want)})"
            )
    if fold_residual_bn is None:
        fold_residual_bn = mode == "int8"
    graph = inference_model(model, fold_bn=fold_bn, fold_residual_bn=fold_residual_bn)
    fold_diff = None
    if representative_data is not None and isinstance(representative_data, np.ndarray):
        probe = np.asarray(representative_data[:32], np.float32)
        ref = np.asarray(model(probe, training=False))
        fold_diff = float(np.max(np.abs(ref - np.asarray(graph.model(probe, training=False)))))
    data = convert(graph.model, mode, representative_data, io_dtype)
    meta = export_metadata(model, graph, mode).to_json()
    data = add_metadata(data, METADATA_NAME, meta.encode("utf-8"))
    checks = check_ternary_kernels(data, graph.kernels)
    bad = [c for c in checks if not c.exact]
    if strict and bad:
        detail = "; ".join(f"{c.layer}: {c.message}" for c in bad[:3])
        raise ExportError(f"{len(bad)} ternary kernel(s) not stored exactly ({detail})")
    write_atomic(path, data)
    return TFLiteExport(
        os.fspath(path),
        mode,
        len(data),
        checks,
        graph.folded,
        fold_diff,
        [f.bn for f in graph.residual],
    )


def load_interpreter(tflite: bytes | str | os.PathLike, num_threads: int = 1):
    """A LiteRT interpreter (``ai_edge_litert``; ``tf.lite.Interpreter`` if unavailable).

    The default CPU delegate (XNNPACK) is applied as the runtime does by default.
    """
    kwargs = {"num_threads": num_threads}
    if isinstance(tflite, bytes | bytearray):
        kwargs["model_content"] = bytes(tflite)
    else:
        kwargs["model_path"] = os.fspath(tflite)
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - depends on the installation
        Interpreter = tf.lite.Interpreter  # noqa: N806
    return Interpreter(**kwargs)


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = detail["dtype"]
    if np.issubdtype(dtype, np.floating):
        return x.astype(dtype)
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(dtype)


def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    if np.issubdtype(detail["dtype"], np.floating):
        return y.astype(np.float32)
    scale, zero = detail["quantization"]
    return ((y.astype(np.float32) - zero) * scale).astype(np.float32)


def predict_tflite(
    tflite: bytes | str | os.PathLike, x: np.ndarray, batch_size: int = 100, num_threads: int = 1
) -> np.ndarray:
    """Run a .tflite model on float inputs ``x`` (quantizing / dequantizing int8 I/O)."""
    it = load_interpreter(tflite, num_threads=num_threads)
    inp = it.get_input_details()[0]
    x = np.asarray(x, np.float32)
    outs = []
    current = None
    for start in range(0, len(x), batch_size):
        chunk = x[start : start + batch_size]
        if current != len(chunk):
            it.resize_tensor_input(inp["index"], [len(chunk), *x.shape[1:]])
            it.allocate_tensors()
            current = len(chunk)
        inp = it.get_input_details()[0]
        it.set_tensor(inp["index"], _quantize(chunk, inp))
        it.invoke()
        out = it.get_output_details()[0]
        outs.append(_dequantize(it.get_tensor(out["index"]), out))
    return np.concatenate(outs, axis=0)


def compare_with_keras(
    model: tf.keras.Model,
    tflite: bytes | str | os.PathLike,
    x: np.ndarray,
    y: np.ndarray | None = None,
    batch_size: int = 100,
) -> Agreement:
    """Top-1 agreement (and accuracies if labels ``y`` are given) of Keras vs TFLite."""
    ref = np.asarray(without_fusion_bug(lambda: model.predict(x, batch_size=batch_size, verbose=0)))
    got = predict_tflite(tflite, x, batch_size=batch_size)
    return agreement(ref, got, y)


def agreement(ref: np.ndarray, got: np.ndarray, y: np.ndarray | None = None) -> Agreement:
    """:class:`Agreement` of reference outputs ``ref`` with outputs ``got``, both (n, classes)."""
    ref = np.asarray(ref)
    got = np.asarray(got)
    agree = float(np.mean(ref.argmax(-1) == got.argmax(-1)))
    acc_k = acc_t = None
    if y is not None:
        y = np.asarray(y).reshape(-1)
        acc_k = float(np.mean(ref.argmax(-1) == y))
        acc_t = float(np.mean(got.argmax(-1) == y))
    diff = (ref - got).astype(np.float64)
    rms = float(np.sqrt(np.mean(diff**2)))
    close = None
    if ref.ndim == 2 and ref.shape[-1] >= 2:
        top2 = np.sort(ref, axis=-1)[:, -2:]
        close = float(np.mean(top2[:, 1] - top2[:, 0] < 2 * rms))
    return Agreement(len(ref), agree, float(np.max(np.abs(diff))), acc_k, acc_t, rms, close)


def _convert_quietly(converter) -> bytes:
    """``converter.convert()`` without the converter's routine stderr lines and warning.

    Native log lines and the calibrator's summary go through :func:`tflog.filtered_stderr`
    (``KERAS_TERNARY_TF_LOG=1`` shows them); TensorFlow's warning that int8 inputs come without
    input statistics is expected: the int8 input's scale and zero point are stored in the file.
    """
    import contextlib
    import warnings

    from keras_ternary import tflog

    quiet = contextlib.nullcontext() if tflog.tf_log_requested() else tflog.filtered_stderr()
    with quiet, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
        return converter.convert()
