"""Keras (.h5 / .keras) loader: keras_ternary and plain larq models -> :class:`Graph`.

Kernels are taken *through* each layer's kernel quantizer (``quantizer(kernel)``), so the
IR holds exactly the values the model computes with; a per-output-channel magnitude
(e.g. larq ``MagnitudeAwareSign``) becomes ``weight_scale``. The input quantizer and its
Δ are read from the saved quantizer. TensorFlow is imported only inside :func:`load`.
"""

from __future__ import annotations

import contextlib
import dis
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from hw_sim.errors import HwSimError
from hw_sim.ir import Graph, Op, Quantizer
from hw_sim.ops import broadcast_shape, tensor_precision
from keras_ternary.contract import activations
from keras_ternary.contract.errors import ContractError
from keras_ternary.contract.geometry import output_hw, window_padding
from keras_ternary.contract.ternary import is_unit_scale, split_kernel
from keras_ternary.layer_table import QuantizedWeight, kernel_op_names, kernel_weights
from keras_ternary.modelfile import is_inbound_ref

__all__ = ["SUFFIXES", "from_keras_model", "keras_layer", "load", "tensor_precision", "tf_function"]

SUFFIXES = (".h5", ".hdf5", ".keras")

_IDENTITY_LAYERS = {
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
    "ActivityRegularization",
}
_SIGN_QUANTIZERS = {"SteSign", "ApproxSign", "SwishSign", "Binary", "MagnitudeAwareSign"}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _check_container(path: str, safe_mode: bool = True) -> None:
    """Reject files that cannot hold a whole model before TensorFlow sees them.

    Also a FIFO or device, a file too large, and (unless ``safe_mode`` is False) an ``.h5``
    model holding Python code (:func:`keras_ternary.modelfile.check_model_file`).
    """
    from keras_ternary.modelfile import ModelFileError, check_model_file

    try:
        check_model_file(path, safe_mode=safe_mode)
    except ModelFileError as exc:
        raise HwSimError(str(exc)) from None
    lower = path.lower()
    if lower.endswith(".keras"):
        if not zipfile.is_zipfile(path):
            raise HwSimError(f"{path}: not a valid .keras archive (truncated or corrupt?)")
        with zipfile.ZipFile(path) as archive:
            if "config.json" not in archive.namelist():
                raise HwSimError(f"{path}: the .keras archive holds no model config")
        return
    import h5py

    if not h5py.is_hdf5(path):
        raise HwSimError(f"{path}: not a valid HDF5 file (truncated or corrupt?)")
    try:
        with h5py.File(path, "r") as f:
            has_model = "model_config" in f.attrs
    except Exception as exc:
        raise HwSimError(f"{path}: cannot read HDF5 file ({_first_line(exc)})") from None
    if not has_model:
        raise HwSimError(
            f"{path}: the HDF5 file holds no model (weights only?); "
            "save the whole model with model.save(...)"
        )


def _import_tf():
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with contextlib.suppress(ImportError):  # registers Ternary, Binary, HardTanh
        # explicitly: ``import keras_ternary`` does not register them when it was first
        # imported while ``python -m hw_sim.profile`` was being located
        import keras_ternary.activations  # noqa: F401
        import keras_ternary.quantizers  # noqa: F401
    import larq  # noqa: F401  (registers larq layers and quantizers)
    import tensorflow as tf

    return tf


def load(path: str, safe_mode: bool = True) -> Graph:
    """Load a saved Keras model (``.h5``, ``.hdf5`` or ``.keras``) into the IR.

    ``safe_mode=False`` allows a model holding Python code (a ``Lambda`` layer), which
    loading runs; by default such a model is refused.
    """
    from keras_ternary.modelfile import keras_load, load_error_reason

    _check_container(path, safe_mode)
    _import_tf()
    try:
        model = keras_load(path, compile=False, safe_mode=safe_mode)
    except Exception as exc:
        raise HwSimError(f"{path}: cannot load Keras model ({load_error_reason(exc)})") from None
    return from_keras_model(model, source=path)


def _known_quantizer(q) -> Quantizer | None:
    """Describe a ternary (keras_ternary Ternary, larq SteTern) or sign quantizer as data."""
    cls = type(q).__name__
    if cls == "Ternary":
        return Quantizer("ternary", delta=float(q.delta), clip_value=q.clip_value)
    if cls == "SteTern":
        return Quantizer(
            "ste_tern",
            delta=float(q.threshold_value),
            twn=bool(q.ternary_weight_networks),
            clip_value=q.clip_value,
        )
    return None


def _input_quantizer(q, layer) -> Quantizer | None:
    """Describe a layer's input (activation) quantizer as data."""
    if q is None:
        return None
    known = _known_quantizer(q)
    if known is not None:
        return known
    cls = type(q).__name__
    if cls in _SIGN_QUANTIZERS - {"MagnitudeAwareSign"}:
        return Quantizer("sign", clip_value=getattr(q, "clip_value", None))
    name = getattr(q, "__name__", cls)
    if name in ("ste_sign", "approx_sign", "swish_sign"):
        return Quantizer("sign")
    raise HwSimError(
        f"layer {layer.name!r} ({type(layer).__name__}): unsupported input quantizer {name!r} "
        "(supported: keras_ternary Ternary/Binary, larq SteTern, SteSign, ApproxSign, SwishSign)"
    )


def _kernel_quantizer(q, layer) -> Quantizer | None:
    if q is None:
        return None
    known = _known_quantizer(q)
    if known is not None:
        return known
    if type(q).__name__ in _SIGN_QUANTIZERS or getattr(q, "__name__", "") in (
        "ste_sign",
        "approx_sign",
    ):
        return Quantizer("sign", clip_value=getattr(q, "clip_value", None))
    return None  # unknown quantizer: precision is inferred from its output values


def _quantize_kernel(
    layer, weight: QuantizedWeight, tf, layout: Callable[[np.ndarray], np.ndarray] | None = None
) -> tuple[np.ndarray, str | None, np.ndarray | None]:
    """A kernel through its quantizer -> (values in IR layout, precision, per-channel scale).

    The quantizer sees the kernel in Keras' layout (as the model computes it); ``layout``
    then rearranges the values into the IR's (a depthwise kernel), before the per-output-
    channel scale is split off.
    """
    kernel = getattr(layer, weight.kernel_attr)
    latent = np.asarray(getattr(kernel, "latent_variable", kernel).numpy(), dtype=np.float32)
    layout = layout or (lambda k: k)
    quantizer = getattr(layer, weight.quantizer_attr, None)
    if quantizer is None:
        return layout(latent), "float32", None
    try:
        q = np.asarray(quantizer(tf.constant(latent)).numpy(), dtype=np.float64)
    except Exception as exc:
        raise HwSimError(
            f"layer {layer.name!r} ({type(layer).__name__}): applying {weight.quantizer_attr} "
            f"{type(quantizer).__name__!r} failed ({_first_line(exc)})"
        ) from None
    q = layout(q)
    split = split_kernel(q)
    if split is None:
        kinds = len(np.unique(np.round(q, 6)))
        raise HwSimError(
            f"layer {layer.name!r} ({type(layer).__name__}): {weight.quantizer_attr} "
            f"{type(quantizer).__name__!r} gives {kinds} levels; hw_sim models ternary and "
            "binary kernels only"
        )
    levels, scale = split
    spec = _kernel_quantizer(quantizer, layer)
    if spec is not None:
        precision = spec.precision
    else:
        precision = "ternary" if np.any(levels == 0) else "binary"
    if precision == "binary" and np.any(levels == 0):
        raise HwSimError(f"layer {layer.name!r}: binary kernel quantizer produced zeros")
    return levels, precision, None if is_unit_scale(scale) else scale


def _activation_name(activation, layer) -> str:
    name = getattr(activation, "__name__", str(activation))
    kind = activations.from_keras(name)
    if kind is None:
        supported = sorted(k for a in activations.ACTIVATIONS.values() for k in a.keras)
        raise HwSimError(
            f"layer {layer.name!r} ({type(layer).__name__}): unsupported activation {name!r} "
            f"(supported: {', '.join(supported)})"
        )
    return kind


def _pair(value) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    return int(value[0]), int(value[1])


def _window_padding(
    padding: str, in_shape, kernel: tuple[int, int], strides: tuple[int, int]
) -> tuple[int, int, int, int]:
    try:
        return window_padding(padding, in_shape[:2], kernel, strides)
    except ContractError as exc:
        raise HwSimError(str(exc)) from None


# ---------------------------------------------------------------------------- converters
@dataclass
class _Layer:
    """What a converter sees of one Keras layer: the layer, its inputs and the graph so far."""

    layer: object
    inputs: list[str]
    shapes: dict[str, tuple[int, ...]]
    precisions: dict[str, str]
    tf: object
    #: constant keyword arguments of a TFOpLambda call (``axis``, ``shape``, ...)
    call_kwargs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.cls = type(self.layer).__name__
        self.cfg = self.layer.get_config()
        self.name = self.layer.name
        self.out_shape = tuple(self.layer.output_shape[1:])
        self.in_shape = self.shapes[self.inputs[0]] if self.inputs else None
        self.in_prec = self.precisions[self.inputs[0]] if self.inputs else "float32"

    def error(self, why: str) -> HwSimError:
        """The one-line error naming this layer and its type."""
        what = self.cls
        if self.cls in ("TFOpLambda", "SlicingOpLambda"):  # the TF function too
            what = f"{self.cls} {self.cfg['function']}"
        return HwSimError(f"layer {self.name!r} ({what}): {why}")

    def op(self, kind: str, **fields) -> Op:
        """An op named after the layer, reading its inputs, with the layer's output shape."""
        fields.setdefault("inputs", self.inputs)
        fields.setdefault("output_shape", self.out_shape)
        fields.setdefault("act_precision", self.in_prec)
        return Op(name=self.name, kind=kind, source_type=self.cls, **fields)

    def broadcasts(self) -> None:
        """Refuse inputs that do not broadcast to the layer's output (numpy's rule)."""
        shapes = [self.shapes[n] for n in self.inputs]
        if broadcast_shape(shapes) != self.out_shape:
            listed = ", ".join(map(str, shapes))
            raise self.error(f"inputs of shapes {listed} do not broadcast to {self.out_shape}")


Converted = Op | list[Op] | None
Converter = Callable[[_Layer], Converted]

_ANY = -1  # number of inputs checked by the converter itself

#: Keras layer class name -> (converter, number of inputs, None: two or more).
_CONVERTERS: dict[str, tuple[Converter, int | None]] = {}
#: TF function name of a TFOpLambda / SlicingOpLambda (``config["function"]``) -> converter.
_TF_FUNCTIONS: dict[str, tuple[Converter, int | None]] = {}


def _register(
    table: dict, names: tuple[str, ...], inputs: int | None
) -> Callable[[Converter], Converter]:
    def register(fn: Converter) -> Converter:
        for name in names:
            table[name] = (fn, inputs)
        return fn

    return register


def keras_layer(*class_names: str, inputs: int | None = 1) -> Callable[[Converter], Converter]:
    """Register a converter for Keras layer classes (``inputs=None``: two or more inputs)."""
    return _register(_CONVERTERS, class_names, inputs)


def tf_function(*names: str, inputs: int | None = 1) -> Callable[[Converter], Converter]:
    """Register a converter for TF functions wrapped in a TFOpLambda layer (``x + y``)."""
    return _register(_TF_FUNCTIONS, names, inputs)


def _check_arity(c: _Layer, inputs: int | None) -> None:
    if inputs == _ANY:
        return
    if inputs is None and len(c.inputs) < 2:
        constants = {k: v for k, v in c.call_kwargs.items() if k != "name" and v is not None}
        if constants:
            raise c.error(f"a constant operand ({constants}) is not supported, only tensors")
        raise c.error(f"expected two or more inputs, got {len(c.inputs)}")
    if inputs is not None and len(c.inputs) != inputs:
        raise c.error(f"expected one input, got {len(c.inputs)}")


def _convert_layer(c: _Layer) -> list[Op]:
    """One Keras layer -> its IR ops (none for an identity layer)."""
    entry = _CONVERTERS.get(c.cls)
    if entry is None:
        raise c.error("this layer type cannot be represented in the hw_sim IR")
    fn, inputs = entry
    _check_arity(c, inputs)
    out = fn(c)
    return [] if out is None else [out] if isinstance(out, Op) else out


@keras_layer("TFOpLambda", "SlicingOpLambda", inputs=_ANY)
def _tf_op(c: _Layer) -> Converted:
    entry = _TF_FUNCTIONS.get(c.cfg.get("function"))
    if entry is None:
        known = ", ".join(sorted(_TF_FUNCTIONS))
        raise c.error(f"this TF function cannot be represented in the hw_sim IR (known: {known})")
    fn, inputs = entry
    _check_arity(c, inputs)
    return fn(c)


# --- compute layers
def _window(c: _Layer, kernel: tuple[int, int]) -> dict:
    """strides, explicit padding and pad value of a 2-D convolution, checked against Keras."""
    if c.cfg.get("data_format", "channels_last") != "channels_last":
        raise c.error("only channels_last is supported")
    if _pair(c.cfg.get("dilation_rate", 1)) != (1, 1):
        raise c.error("dilated convolutions are not supported")
    if len(c.in_shape) != 3:
        raise c.error(f"expected an (H, W, C) input, got shape {c.in_shape}")
    strides = _pair(c.cfg["strides"])
    padding = _window_padding(c.cfg["padding"], c.in_shape, kernel, strides)
    try:
        expect = output_hw(c.in_shape[:2], kernel, strides, padding)
    except ContractError as exc:
        raise c.error(str(exc)) from None
    if expect != tuple(c.out_shape[:2]):
        raise c.error(f"output size {c.out_shape[:2]} does not match padding rule {expect}")
    return {
        "strides": strides,
        "padding": padding,
        "pad_value": float(c.cfg.get("pad_values", 0.0)),
    }


def _compute_fields(
    c: _Layer,
    weight: QuantizedWeight,
    in_prec: str,
    layout: Callable[[np.ndarray], np.ndarray] | None = None,
    first: bool = True,
    last: bool = True,
) -> dict:
    """Kernel, quantizers, bias, activation of a conv2d / dense op.

    A layer computed as two ops (separable) has its input quantizer on the ``first`` and its
    bias and activation on the ``last``.
    """
    layer = c.layer
    weights, wprec, scale = _quantize_kernel(layer, weight, c.tf, layout)
    iq = _input_quantizer(getattr(layer, "input_quantizer", None), layer) if first else None
    use_bias = last and c.cfg.get("use_bias")
    return {
        "act_precision": iq.precision if iq else in_prec,
        "weights": weights,
        "weight_precision": wprec,
        "weight_scale": scale,
        "bias": layer.bias.numpy().astype(np.float32) if use_bias else None,
        "kernel_quantizer": _kernel_quantizer(getattr(layer, weight.quantizer_attr, None), layer),
        "input_quantizer": iq,
        "activation": _activation_name(layer.activation, layer) if last else "linear",
    }


def _depthwise_layout(kernel: np.ndarray) -> np.ndarray:
    """Keras' depthwise kernel ``(kh, kw, c_in, m)`` -> IR ``(kh, kw, 1, c_in·m)``.

    Output channel ``c·m + j`` reads input channel ``c``: TensorFlow's order.
    """
    return kernel.reshape(kernel.shape[0], kernel.shape[1], 1, -1)


@keras_layer("Conv2D", "QuantConv2D")
def _conv2d(c: _Layer) -> Op:
    (weight,) = kernel_weights(c.layer)
    fields = _compute_fields(c, weight, c.in_prec)
    window = _window(c, fields["weights"].shape[:2])
    return c.op("conv2d", groups=int(c.cfg.get("groups", 1)), **window, **fields)


@keras_layer("DepthwiseConv2D", "QuantDepthwiseConv2D")
def _depthwise_conv2d(c: _Layer) -> Op:
    (weight,) = kernel_weights(c.layer)
    fields = _compute_fields(c, weight, c.in_prec, _depthwise_layout)
    window = _window(c, fields["weights"].shape[:2])
    return c.op("conv2d", groups=int(c.in_shape[-1]), **window, **fields)


@keras_layer("SeparableConv2D", "QuantSeparableConv2D")
def _separable_conv2d(c: _Layer) -> list[Op]:
    """``<name>/depthwise`` (grouped, no bias, linear), then the 1×1 ``<name>``."""
    weights = kernel_weights(c.layer)
    depthwise_weight, pointwise_weight = weights
    fields = _compute_fields(c, depthwise_weight, c.in_prec, _depthwise_layout, last=False)
    window = _window(c, fields["weights"].shape[:2])
    depthwise = c.op(
        "conv2d",
        output_shape=(*c.out_shape[:2], fields["weights"].shape[-1]),
        groups=int(c.in_shape[-1]),
        **window,
        **fields,
    )
    depthwise.name = kernel_op_names(c.name, weights)[0]  # "<name>/depthwise"
    depthwise.out_precision = tensor_precision(depthwise, c.inputs, c.precisions)
    fields = _compute_fields(c, pointwise_weight, depthwise.out_precision, first=False)
    return [depthwise, c.op("conv2d", inputs=[depthwise.name], **fields)]


@keras_layer("Dense", "QuantDense")
def _dense(c: _Layer) -> Op:
    if len(c.in_shape) != 1:
        raise c.error(f"dense layers on rank-{len(c.in_shape)} inputs are not supported")
    (weight,) = kernel_weights(c.layer)
    return c.op("dense", **_compute_fields(c, weight, c.in_prec))


# --- normalization, activations
@keras_layer("BatchNormalization")
def _batchnorm(c: _Layer) -> Op:
    axis = c.cfg["axis"]
    axis = axis[0] if isinstance(axis, list | tuple) and len(axis) == 1 else axis
    if axis not in (-1, len(c.in_shape)):
        raise c.error(f"batch norm over axis {axis} (only the last axis is supported)")
    layer, channels = c.layer, c.in_shape[-1]
    gamma = layer.gamma.numpy() if layer.gamma is not None else np.ones(channels)
    beta = layer.beta.numpy() if layer.beta is not None else np.zeros(channels)
    return c.op(
        "batchnorm",
        gamma=np.asarray(gamma, np.float32),
        beta=np.asarray(beta, np.float32),
        moving_mean=layer.moving_mean.numpy().astype(np.float32),
        moving_variance=layer.moving_variance.numpy().astype(np.float32),
        epsilon=float(c.cfg["epsilon"]),
    )


@keras_layer("Activation")
def _activation(c: _Layer) -> Op:
    return c.op("activation", activation=_activation_name(c.layer.activation, c.layer))


@keras_layer("HardTanh")
def _hard_tanh(c: _Layer) -> Op:
    return c.op("activation", activation="hard_tanh")


@keras_layer("Softmax")
def _softmax(c: _Layer) -> Op:
    axis = c.cfg.get("axis", -1)
    if axis not in (-1, [-1], len(c.in_shape), [len(c.in_shape)]):
        raise c.error(f"softmax over axis {axis} (only the last axis is supported)")
    return c.op("activation", activation="softmax")


@keras_layer("ReLU")
def _relu(c: _Layer) -> Op:
    """ReLU, ReLU6 (``max_value=6``) or a leaky ReLU (``negative_slope``: a prelu op)."""
    max_value = c.cfg.get("max_value")
    slope = float(c.cfg.get("negative_slope", 0.0) or 0.0)
    if float(c.cfg.get("threshold", 0.0) or 0.0) != 0.0:
        raise c.error("thresholded ReLU is not supported")
    if slope != 0.0:
        if max_value is not None:
            raise c.error("a leaky ReLU with max_value is not supported")
        return c.op("prelu", extra={"alpha": slope})
    if max_value is None:
        return c.op("activation", activation="relu")
    if float(max_value) == 6.0:
        return c.op("activation", activation="relu6")
    raise c.error(f"ReLU with max_value={max_value} is not supported")


@keras_layer("LeakyReLU")
def _leaky_relu(c: _Layer) -> Op:
    alpha = c.cfg.get("alpha", c.cfg.get("negative_slope"))
    return c.op("prelu", extra={"alpha": float(alpha)})


@keras_layer("PReLU")
def _prelu(c: _Layer) -> Op:
    """Learned slopes; ``shared_axes`` are size-1 axes of alpha, broadcast over the input."""
    alpha = np.asarray(c.layer.alpha.numpy(), np.float32)
    return c.op("prelu", extra={"alpha": alpha})


def _tf_activation(kind: str) -> Converter:
    def convert(c: _Layer) -> Op:
        return c.op("activation", activation=kind)

    return convert


for _name, _kind in {
    "nn.relu": "relu",
    "nn.relu6": "relu6",
    "math.sigmoid": "sigmoid",
    "nn.sigmoid": "sigmoid",
    "math.tanh": "tanh",
    "nn.tanh": "tanh",
}.items():
    tf_function(_name)(_tf_activation(_kind))


# --- merges
def _merge(kind: str, exactly: int | None = None) -> Converter:
    def convert(c: _Layer) -> Op:
        if exactly is not None and len(c.inputs) != exactly:
            raise c.error(f"expected {exactly} inputs, got {len(c.inputs)}")
        c.broadcasts()
        return c.op(kind)

    return convert


keras_layer("Add", inputs=None)(_merge("add"))
keras_layer("Multiply", inputs=None)(_merge("multiply", 2))
keras_layer("Subtract", inputs=None)(_merge("subtract", 2))
tf_function("__operators__.add", "math.add", inputs=None)(_merge("add", 2))
tf_function("math.multiply", "__operators__.mul", inputs=None)(_merge("multiply", 2))
tf_function("math.subtract", "__operators__.sub", inputs=None)(_merge("subtract", 2))


def _concat(c: _Layer, axis) -> Op:
    rank = len(c.in_shape)
    if axis not in (-1, rank):
        raise c.error(f"concatenation along axis {axis} (only the channel axis is supported)")
    if any(self_shape[:-1] != c.in_shape[:-1] for self_shape in map(c.shapes.get, c.inputs)):
        raise c.error("inputs differ in more than the channel axis")
    return c.op("concat")


@keras_layer("Concatenate", inputs=None)
def _concatenate(c: _Layer) -> Op:
    return _concat(c, c.cfg.get("axis", -1))


@tf_function("concat", inputs=None)
def _tf_concat(c: _Layer) -> Op:
    return _concat(c, c.call_kwargs.get("axis", 0))


# --- shapes, pooling, padding
@keras_layer("Reshape")
@tf_function("reshape")
def _reshape(c: _Layer) -> Op:
    return c.op("reshape")


@keras_layer("Flatten")
def _flatten(c: _Layer) -> Op:
    return c.op("flatten")


@keras_layer("ZeroPadding2D")
def _zero_padding(c: _Layer) -> Op:
    if c.cfg.get("data_format", "channels_last") not in (None, "channels_last"):
        raise c.error("only channels_last is supported")
    (top, bottom), (left, right) = c.cfg["padding"]
    return c.op("pad", padding=(int(top), int(bottom), int(left), int(right)), pad_value=0.0)


@keras_layer("MaxPooling2D", "AveragePooling2D")
def _pool(c: _Layer) -> Op:
    if c.cfg.get("data_format", "channels_last") != "channels_last":
        raise c.error("only channels_last is supported")
    pool = _pair(c.cfg["pool_size"])
    strides = _pair(c.cfg["strides"] or c.cfg["pool_size"])
    average = c.cls == "AveragePooling2D"
    return c.op(
        "avgpool" if average else "maxpool",
        pool_size=pool,
        strides=strides,
        padding=_window_padding(c.cfg["padding"], c.in_shape, pool, strides),
        # TensorFlow's average pooling divides by the number of non-padded elements
        extra={"count_include_pad": False} if average else {},
    )


@keras_layer("GlobalAveragePooling2D", "GlobalMaxPooling2D")
def _global_pool(c: _Layer) -> Op:
    if c.cfg.get("keepdims", False) or c.cfg.get("data_format") not in (None, "channels_last"):
        raise c.error("only channels_last global pooling without keepdims is supported")
    return c.op("global_avgpool" if c.cls == "GlobalAveragePooling2D" else "global_maxpool")


@keras_layer(*_IDENTITY_LAYERS)
def _identity(c: _Layer) -> None:
    return None


def _is_identity(fn) -> bool:
    """True if ``fn``'s byte code only returns its first argument (``lambda x: x``)."""
    code = getattr(fn, "__code__", None)
    if code is None or code.co_argcount < 1:
        return False
    steps = [
        (i.opname, i.argval)
        for i in dis.get_instructions(code)
        if i.opname not in ("RESUME", "NOP", "CACHE")
    ]
    return steps == [("LOAD_FAST", code.co_varnames[0]), ("RETURN_VALUE", None)]


@keras_layer("Lambda")
def _lambda(c: _Layer) -> None:
    """A Lambda runs Python code the IR cannot represent; only the identity is recognised, from
    its byte code (larq_zoo's RealToBinaryNet names its block outputs with ``lambda x: x``)."""
    if c.cfg.get("arguments") or not _is_identity(c.layer.function) or c.out_shape != c.in_shape:
        raise c.error(
            "a Lambda layer runs arbitrary Python code; hw_sim recognises only the identity "
            "(lambda x: x)"
        )
    return None


# ---------------------------------------------------------------------------- topology
def _inbound(entry: dict) -> tuple[list[str], dict]:
    """Input tensor names and constant call arguments of one layer's (only) inbound node.

    Keras 2 writes a node as a list of ``[name, node, tensor, kwargs]`` refs; a TFOpLambda
    called on one tensor as that single ref, its other tensor operands (``y`` of ``x + y``)
    as refs in ``kwargs`` and its constants (``axis``, ``shape``, ``y=1.0``) as values.
    """

    def fail(why: str) -> HwSimError:
        return HwSimError(f"layer {entry['name']!r} ({entry['class_name']}): {why}")

    nodes = entry.get("inbound_nodes") or []
    if len(nodes) > 1:
        raise fail("shared layers (called more than once) are not supported")
    if not nodes:
        return [], {}
    node = nodes[0]
    refs = [node] if is_inbound_ref(node) else node
    inputs: list[str] = []
    kwargs: dict = {}

    def add(ref) -> None:
        if int(ref[2]) != 0:
            raise fail(f"reads output {ref[2]} of layer {ref[0]!r} (multi-output layers)")
        inputs.append(ref[0])

    for ref in refs if isinstance(refs, list | tuple) else [refs]:
        if not is_inbound_ref(ref):
            raise fail("unsupported inbound node format")
        add(ref)
        extra = ref[3] if len(ref) == 4 else {}
        for key, value in (extra or {}).items():
            if is_inbound_ref(value):
                add(value)
            else:
                kwargs[key] = value
    return inputs, kwargs


def _functional_topology(model) -> list[tuple[object, list[str], dict]]:
    """(layer, input tensor names, constant call arguments) in the model's topological order."""
    by_name = {layer.name: layer for layer in model.layers}
    return [(by_name[entry["name"]], *_inbound(entry)) for entry in model.get_config()["layers"]]


def from_keras_model(model, source: str = "") -> Graph:
    """Convert an in-memory tf.keras model (Functional or Sequential) into the IR."""
    tf = _import_tf()
    if isinstance(model, tf.keras.Sequential):
        ops = [Op("input", "input", [], tuple(model.input_shape[1:]), source_type="InputLayer")]
        topo, previous = [], "input"
        for layer in model.layers:
            topo.append((layer, [previous], {}))
            previous = layer.name
        outputs = [previous]
    else:
        ops, topo = [], _functional_topology(model)
        outputs = [ref[0] for ref in model.get_config()["output_layers"]]
    alias: dict[str, str] = {}
    shapes = {op.name: op.output_shape for op in ops}
    precisions = {op.name: "float32" for op in ops}
    for layer, raw_inputs, call_kwargs in topo:
        if isinstance(layer, tf.keras.Model):
            raise HwSimError(f"layer {layer.name!r} is a nested model; flatten it first")
        inputs = [alias.get(n, n) for n in raw_inputs]
        if type(layer).__name__ == "InputLayer":
            shape = layer.get_config()["batch_input_shape"][1:]
            if any(d is None for d in shape):
                raise HwSimError(f"input {layer.name!r} has an unknown dimension: {shape}")
            new = [Op(layer.name, "input", [], tuple(shape), source_type="InputLayer")]
        else:
            new = _convert_layer(_Layer(layer, inputs, shapes, precisions, tf, call_kwargs))
            for op in new:
                op.out_precision = tensor_precision(op, op.inputs, precisions)
                precisions[op.name] = op.out_precision
        if not new:
            alias[layer.name] = inputs[0]
            continue
        for op in new:
            ops.append(op)
            shapes[op.name] = op.output_shape
            precisions[op.name] = op.out_precision
        if new[-1].name != layer.name:
            alias[layer.name] = new[-1].name
    graph = Graph(
        name=model.name,
        ops=ops,
        outputs=[alias.get(n, n) for n in outputs],
        source=source,
    )
    if not any(op.is_quantized for op in graph.ops):
        raise HwSimError(
            f"model {model.name!r} has no quantized layer (no ternary or binary kernel); "
            "hw_sim profiles ternary/binary networks"
        )
    return graph
