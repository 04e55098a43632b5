"""Keras (.h5 / .keras) loader: keras_ternary and plain larq models -> :class:`Graph`.

Kernels are taken *through* each layer's kernel quantizer (``quantizer(kernel)``), so the
IR holds exactly the values the model computes with; a per-output-channel magnitude
(e.g. larq ``MagnitudeAwareSign``) becomes ``weight_scale``. The input quantizer and its
Δ are read from the saved quantizer. TensorFlow is imported only inside :func:`load`.
"""

from __future__ import annotations

import contextlib
import os
import zipfile

import numpy as np

from hw_sim.errors import HwSimError
from hw_sim.ir import Graph, Op, Quantizer
from hw_sim.ops import tensor_precision  # re-exported: the .tflite loader imports it here
from keras_ternary.contract import activations
from keras_ternary.contract.errors import ContractError
from keras_ternary.contract.geometry import output_hw, window_padding
from keras_ternary.contract.ternary import is_unit_scale, split_kernel

__all__ = ["SUFFIXES", "from_keras_model", "load", "tensor_precision"]

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
    from keras_ternary.modelfile import load_error_reason

    _check_container(path, safe_mode)
    tf = _import_tf()
    try:
        model = tf.keras.models.load_model(path, compile=False, safe_mode=safe_mode)
    except Exception as exc:
        raise HwSimError(f"{path}: cannot load Keras model ({load_error_reason(exc)})") from None
    return from_keras_model(model, source=path)


def _compute_fields(layer, tf, cfg: dict, in_prec: str) -> dict:
    """The Op fields a conv2d and a dense share: kernel, quantizers, bias, activation."""
    weights, wprec, scale = _quantize_kernel(layer, tf)
    iq = _input_quantizer(getattr(layer, "input_quantizer", None), layer)
    return {
        "act_precision": iq.precision if iq else in_prec,
        "weights": weights,
        "weight_precision": wprec,
        "weight_scale": scale,
        "bias": layer.bias.numpy().astype(np.float32) if cfg.get("use_bias") else None,
        "kernel_quantizer": _kernel_quantizer(getattr(layer, "kernel_quantizer", None), layer),
        "input_quantizer": iq,
        "activation": _activation_name(layer.activation, layer),
    }


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


def _quantize_kernel(layer, tf) -> tuple[np.ndarray, str | None, np.ndarray | None]:
    """Kernel through the layer's quantizer -> (values, precision, per-channel scale)."""
    kernel = layer.kernel
    latent = np.asarray(getattr(kernel, "latent_variable", kernel).numpy(), dtype=np.float32)
    quantizer = getattr(layer, "kernel_quantizer", None)
    if quantizer is None:
        return latent, "float32", None
    try:
        q = np.asarray(quantizer(tf.constant(latent)).numpy(), dtype=np.float64)
    except Exception as exc:
        raise HwSimError(
            f"layer {layer.name!r} ({type(layer).__name__}): applying kernel quantizer "
            f"{type(quantizer).__name__!r} failed ({_first_line(exc)})"
        ) from None
    split = split_kernel(q)
    if split is None:
        kinds = len(np.unique(np.round(q, 6)))
        raise HwSimError(
            f"layer {layer.name!r} ({type(layer).__name__}): kernel quantizer "
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


_tensor_precision = tensor_precision  # former private name, kept for callers


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


def _convert_layer(layer, inputs: list[str], shapes: dict, precisions: dict, tf) -> Op | None:
    """One Keras layer -> one IR op (``None`` for an identity layer)."""
    cls = type(layer).__name__
    cfg = layer.get_config()
    name = layer.name
    out_shape = tuple(layer.output_shape[1:]) if hasattr(layer, "output_shape") else None
    in_shape = shapes[inputs[0]] if inputs else None
    in_prec = precisions[inputs[0]] if inputs else "float32"

    def unsupported(why: str) -> HwSimError:
        return HwSimError(f"layer {name!r} ({cls}): {why}")

    if len(inputs) != 1 and cls != "Add":
        raise unsupported(f"expected one input, got {len(inputs)}")
    if cls in ("Conv2D", "QuantConv2D"):
        if cfg.get("data_format", "channels_last") != "channels_last":
            raise unsupported("only channels_last is supported")
        if _pair(cfg.get("dilation_rate", 1)) != (1, 1) or cfg.get("groups", 1) != 1:
            raise unsupported("dilated or grouped convolutions are not supported")
        if len(in_shape) != 3:
            raise unsupported(f"expected an (H, W, C) input, got shape {in_shape}")
        fields = _compute_fields(layer, tf, cfg, in_prec)
        strides = _pair(cfg["strides"])
        kernel = (int(fields["weights"].shape[0]), int(fields["weights"].shape[1]))
        padding = _window_padding(cfg["padding"], in_shape, kernel, strides)
        op = Op(
            name=name,
            kind="conv2d",
            inputs=inputs,
            output_shape=out_shape,
            source_type=cls,
            strides=strides,
            padding=padding,
            pad_value=float(cfg.get("pad_values", 0.0)),
            **fields,
        )
        try:
            expect = output_hw(in_shape[:2], kernel, strides, padding)
        except ContractError as exc:
            raise unsupported(str(exc)) from None
        if expect != tuple(out_shape[:2]):
            raise unsupported(f"output size {out_shape[:2]} does not match padding rule {expect}")
        return op
    if cls in ("Dense", "QuantDense"):
        if len(in_shape) != 1:
            raise unsupported(f"dense layers on rank-{len(in_shape)} inputs are not supported")
        return Op(
            name=name,
            kind="dense",
            inputs=inputs,
            output_shape=out_shape,
            source_type=cls,
            **_compute_fields(layer, tf, cfg, in_prec),
        )
    if cls == "BatchNormalization":
        axis = cfg["axis"]
        axis = axis[0] if isinstance(axis, list | tuple) and len(axis) == 1 else axis
        if axis not in (-1, len(in_shape)):
            raise unsupported(f"batch norm over axis {axis} (only the last axis is supported)")
        channels = in_shape[-1]
        gamma = layer.gamma.numpy() if layer.gamma is not None else np.ones(channels)
        beta = layer.beta.numpy() if layer.beta is not None else np.zeros(channels)
        return Op(
            name=name,
            kind="batchnorm",
            inputs=inputs,
            output_shape=out_shape,
            act_precision=in_prec,
            source_type=cls,
            gamma=np.asarray(gamma, np.float32),
            beta=np.asarray(beta, np.float32),
            moving_mean=layer.moving_mean.numpy().astype(np.float32),
            moving_variance=layer.moving_variance.numpy().astype(np.float32),
            epsilon=float(cfg["epsilon"]),
        )
    if cls in ("Activation", "HardTanh", "ReLU"):
        if cls == "HardTanh":
            kind = "hard_tanh"
        elif cls == "ReLU":
            max_value = cfg.get("max_value")
            slope = float(cfg.get("negative_slope", 0.0))
            if slope != 0.0 or float(cfg.get("threshold", 0.0)) != 0.0:
                raise unsupported("leaky or thresholded ReLU is not supported")
            if max_value is None:
                kind = "relu"
            elif float(max_value) == 6.0:
                kind = "relu6"
            else:
                raise unsupported(f"ReLU with max_value={max_value} is not supported")
        else:
            kind = _activation_name(layer.activation, layer)
        return Op(
            name=name,
            kind="activation",
            inputs=inputs,
            output_shape=out_shape,
            act_precision=in_prec,
            source_type=cls,
            activation=kind,
        )
    if cls == "Add":
        if len(inputs) < 2:
            raise unsupported("an Add needs at least two inputs")
        if any(shapes[n] != shapes[inputs[0]] for n in inputs):
            raise unsupported("broadcasting Add is not supported")
        return Op(
            name=name,
            kind="add",
            inputs=inputs,
            output_shape=out_shape,
            act_precision=in_prec,
            source_type=cls,
        )
    if cls in ("MaxPooling2D", "AveragePooling2D"):
        if cfg.get("data_format", "channels_last") != "channels_last":
            raise unsupported("only channels_last is supported")
        pool = _pair(cfg["pool_size"])
        strides = _pair(cfg["strides"] or cfg["pool_size"])
        return Op(
            name=name,
            kind="maxpool" if cls == "MaxPooling2D" else "avgpool",
            inputs=inputs,
            output_shape=out_shape,
            act_precision=in_prec,
            source_type=cls,
            pool_size=pool,
            strides=strides,
            padding=_window_padding(cfg["padding"], in_shape, pool, strides),
            # TensorFlow's average pooling divides by the number of non-padded elements
            extra={"count_include_pad": False} if cls == "AveragePooling2D" else {},
        )
    if cls in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
        if cfg.get("keepdims", False) or cfg.get("data_format") not in (None, "channels_last"):
            raise unsupported("only channels_last global pooling without keepdims is supported")
        return Op(
            name=name,
            kind="global_avgpool" if cls == "GlobalAveragePooling2D" else "global_maxpool",
            inputs=inputs,
            output_shape=out_shape,
            act_precision=in_prec,
            source_type=cls,
        )
    if cls == "Flatten":
        return Op(
            name=name,
            kind="flatten",
            inputs=inputs,
            output_shape=out_shape,
            act_precision=in_prec,
            source_type=cls,
        )
    if cls in _IDENTITY_LAYERS:
        return None
    raise unsupported("this layer type cannot be represented in the hw_sim IR")


def _functional_topology(model) -> list[tuple[object, list[str]]]:
    """(layer, input tensor names) in the model's topological order."""
    config = model.get_config()
    by_name = {layer.name: layer for layer in model.layers}
    order = []
    for entry in config["layers"]:
        nodes = entry.get("inbound_nodes") or []
        if len(nodes) > 1:
            raise HwSimError(
                f"layer {entry['name']!r} ({entry['class_name']}): shared layers (called more "
                "than once) are not supported"
            )
        inputs = []
        for ref in nodes[0] if nodes else []:
            if isinstance(ref, dict) or int(ref[2]) != 0:
                raise HwSimError(f"layer {entry['name']!r}: unsupported inbound node format")
            inputs.append(ref[0])
        order.append((by_name[entry["name"]], inputs))
    return order


def from_keras_model(model, source: str = "") -> Graph:
    """Convert an in-memory tf.keras model (Functional or Sequential) into the IR."""
    tf = _import_tf()
    if isinstance(model, tf.keras.Sequential):
        ops = [Op("input", "input", [], tuple(model.input_shape[1:]), source_type="InputLayer")]
        topo, previous = [], "input"
        for layer in model.layers:
            topo.append((layer, [previous]))
            previous = layer.name
        outputs = [previous]
    else:
        ops, topo = [], _functional_topology(model)
        outputs = [ref[0] for ref in model.get_config()["output_layers"]]
    alias: dict[str, str] = {}
    shapes = {op.name: op.output_shape for op in ops}
    precisions = {op.name: "float32" for op in ops}
    for layer, raw_inputs in topo:
        if isinstance(layer, tf.keras.Model):
            raise HwSimError(f"layer {layer.name!r} is a nested model; flatten it first")
        inputs = [alias.get(n, n) for n in raw_inputs]
        if type(layer).__name__ == "InputLayer":
            shape = layer.get_config()["batch_input_shape"][1:]
            if any(d is None for d in shape):
                raise HwSimError(f"input {layer.name!r} has an unknown dimension: {shape}")
            op = Op(layer.name, "input", [], tuple(shape), source_type="InputLayer")
        else:
            op = _convert_layer(layer, inputs, shapes, precisions, tf)
            if op is None:
                alias[layer.name] = inputs[0]
                continue
            op.out_precision = tensor_precision(op, inputs, precisions)
        ops.append(op)
        shapes[op.name] = op.output_shape
        precisions[op.name] = op.out_precision
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
