"""Inference graph for export: constant ternary kernels, batch-norm folded into them.

A trained larq/keras-ternary model keeps *latent* float kernels and applies its kernel
quantizer on every call. For deployment we evaluate each quantizer once, so that a
``QuantConv2D`` / ``QuantDense`` becomes a plain ``Conv2D`` / ``Dense`` whose kernel is the
constant ternary tensor ``t ∈ {-1, 0, +1}``, and fold an inference-mode batch-norm that
directly follows a convolution into it (:func:`batchnorm_affine`, :func:`fold_batchnorm`):

    BN(W * x + b) = (s ⊙ W) * x + (s·b + β − s·μ),   s = γ / sqrt(σ² + ε)   (per output channel)

The folded kernel of output channel ``c`` is ``s_c · t_c``: a per-channel scale times a
ternary tensor, which symmetric per-channel int8 quantization (scale ``|s_c| / 127``)
represents *exactly* as ``{-127, 0, +127}``. Batch-norms that do not directly follow a
single-use convolution (e.g. after a residual ``Add``) stay as they are; the TFLite
converter turns them into a per-channel multiply and add.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

__all__ = [
    "ExportError",
    "FoldedKernel",
    "InferenceGraph",
    "QuantizerLayer",
    "batchnorm_affine",
    "constant_kernel",
    "fold_batchnorm",
    "inference_model",
    "is_ternary",
]

# larq layer class -> plain Keras class with the same weights (kernel[, bias]).
_PLAIN_CLASS = {
    "QuantConv1D": "Conv1D",
    "QuantConv2D": "Conv2D",
    "QuantConv3D": "Conv3D",
    "QuantDense": "Dense",
    "Conv1D": "Conv1D",
    "Conv2D": "Conv2D",
    "Conv3D": "Conv3D",
    "Dense": "Dense",
}
_LARQ_KEYS = ("input_quantizer", "kernel_quantizer", "metrics", "pad_values")


class ExportError(ValueError):
    """The model cannot be exported as requested (the message says why)."""


@tf.keras.utils.register_keras_serializable(package="keras_ternary_export", name="QuantizerLayer")
class QuantizerLayer(tf.keras.layers.Layer):
    """Applies an activation quantizer (a larq input quantizer) as a layer of its own."""

    def __init__(self, quantizer=None, **kwargs):
        super().__init__(**kwargs)
        import larq as lq

        self.quantizer = lq.quantizers.get(quantizer)

    def call(self, inputs):
        return self.quantizer(inputs)

    def get_config(self):
        import larq as lq

        return {**super().get_config(), "quantizer": lq.quantizers.serialize(self.quantizer)}


@dataclass
class FoldedKernel:
    """One quantized kernel of the source model as it appears in the inference model.

    Attributes:
        layer: name of the conv/dense layer (same in both models).
        kind: ``"ternary"`` (values in {-1, 0, +1}, binary included) or ``"other"``.
        ternary: the quantized kernel ``t`` (Keras layout), before any scaling.
        scale: per-output-channel factor multiplied in by batch-norm folding (ones if none).
        folded_bn: name of the batch-norm folded into this layer, or None.
    """

    layer: str
    kind: str
    ternary: np.ndarray
    scale: np.ndarray
    folded_bn: str | None = None

    @property
    def kernel(self) -> np.ndarray:
        """The constant kernel of the inference model, ``scale ⊙ t`` (last axis = channels)."""
        return (self.ternary * self.scale).astype(np.float32)


@dataclass
class InferenceGraph:
    """Result of :func:`inference_model`: the float model and what was done to build it."""

    model: tf.keras.Model
    kernels: list[FoldedKernel] = field(default_factory=list)
    folded: dict[str, str] = field(default_factory=dict)  # bn name -> conv name

    @property
    def ternary_kernels(self) -> list[FoldedKernel]:
        return [k for k in self.kernels if k.kind == "ternary"]


def is_ternary(values: np.ndarray) -> bool:
    """True when every entry is exactly -1, 0 or +1 (a binary kernel is ternary too)."""
    v = np.asarray(values)
    return bool(np.all((v == -1) | (v == 0) | (v == 1)))


def constant_kernel(layer: tf.keras.layers.Layer) -> np.ndarray:
    """The kernel a (larq) layer uses in inference: its quantizer applied to the latent kernel."""
    latent = np.asarray(layer.get_weights()[0], dtype=np.float32)
    quantizer = getattr(layer, "kernel_quantizer", None)
    if quantizer is None:
        return latent
    return np.asarray(quantizer(tf.constant(latent)), dtype=np.float32)


def batchnorm_affine(bn: tf.keras.layers.BatchNormalization) -> tuple[np.ndarray, np.ndarray]:
    """Inference-mode batch-norm as ``y = s·x + t``: returns ``(s, t)`` per channel.

    ``s = γ / sqrt(σ² + ε)`` and ``t = β − s·μ`` (γ = 1 if ``scale=False``, β = 0 if
    ``center=False``), computed in float64.
    """
    weights = {w.name.split("/")[-1].split(":")[0]: np.asarray(w, np.float64) for w in bn.weights}
    mean, var = weights["moving_mean"], weights["moving_variance"]
    gamma = weights.get("gamma", np.ones_like(mean))
    beta = weights.get("beta", np.zeros_like(mean))
    s = gamma / np.sqrt(var + bn.epsilon)
    return s, beta - s * mean


def fold_batchnorm(
    kernel: np.ndarray, bias: np.ndarray | None, s: np.ndarray, t: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Fold ``y ↦ s·y + t`` into a conv/dense: ``(kernel·s, s·bias + t)`` (channels last)."""
    b = np.zeros_like(s) if bias is None else np.asarray(bias, np.float64)
    return (np.asarray(kernel, np.float64) * s).astype(np.float32), (s * b + t).astype(np.float32)


def _functional(model: tf.keras.Model) -> tf.keras.Model:
    if isinstance(model, tf.keras.Sequential):
        if not model.built or not model.inputs:
            raise ExportError("the Sequential model is not built: call it once or give input_shape")
        return tf.keras.Model(model.inputs, model.outputs, name=model.name)
    if not getattr(model, "_is_graph_network", False):
        raise ExportError(
            "only functional and Sequential Keras models can be exported (got a subclassed model)"
        )
    return model


def _nodes(entry: dict) -> list[list[list]]:
    nodes = entry.get("inbound_nodes", [])
    for node in nodes:
        if not isinstance(node, list) or not all(isinstance(a, list) for a in node):
            raise ExportError(f"unsupported inbound node format in layer {entry['name']!r}")
    return nodes


def _consumers(layers: list[dict]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {e["name"]: [] for e in layers}
    for e in layers:
        for node in _nodes(e):
            for arg in node:
                out.setdefault(arg[0], []).append(e["name"])
    return out


def _foldable_pairs(cfg: dict, model: tf.keras.Model) -> dict[str, str]:
    """Batch-norm name -> conv/dense name for every BN that can be folded exactly."""
    layers = cfg["layers"]
    by_name = {e["name"]: e for e in layers}
    consumers = _consumers(layers)
    outputs = {o[0] for o in cfg["output_layers"]}
    pairs = {}
    for e in layers:
        if e["class_name"] != "BatchNormalization":
            continue
        nodes = _nodes(e)
        if len(nodes) != 1 or len(nodes[0]) != 1:
            continue
        producer = by_name.get(nodes[0][0][0])
        if producer is None or producer["class_name"] not in _PLAIN_CLASS:
            continue
        pc = producer["config"]
        axis = e["config"].get("axis", -1)
        axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
        rank = len(model.get_layer(producer["name"]).output_shape)
        if (
            len(_nodes(producer)) != 1
            or consumers[producer["name"]] != [e["name"]]
            or producer["name"] in outputs
            or pc.get("activation", "linear") not in ("linear", None)
            or axis not in (-1, rank - 1)
            or pc.get("data_format", "channels_last") != "channels_last"
        ):
            continue
        pairs[e["name"]] = producer["name"]
    return pairs


def _plain_layer_config(entry: dict, use_bias: bool) -> dict:
    conf = copy.deepcopy(entry["config"])
    if float(conf.get("pad_values", 0.0) or 0.0) != 0.0:
        raise ExportError(f"layer {entry['name']!r}: pad_values != 0 is not supported by export")
    for key in _LARQ_KEYS:
        conf.pop(key, None)
    conf["kernel_constraint"] = None
    conf["use_bias"] = use_bias
    return conf


def inference_model(model: tf.keras.Model, fold_bn: bool = True) -> InferenceGraph:
    """Build the float inference twin of ``model``: constant (ternary) kernels, BN folded.

    Every layer keeps its name. Activation quantizers (larq ``input_quantizer``) become a
    :class:`QuantizerLayer` named ``<layer>_input_quantizer`` in front of the layer.

    Raises:
        ExportError: for subclassed models or layer options export does not support.
    """
    fmodel = _functional(model)
    cfg = copy.deepcopy(fmodel.get_config())
    pairs = _foldable_pairs(cfg, fmodel) if fold_bn else {}
    folded_into = {conv: bn for bn, conv in pairs.items()}
    rename = {bn: conv for bn, conv in pairs.items()}

    new_layers = []
    for e in cfg["layers"]:
        if e["name"] in pairs:
            continue
        for node in _nodes(e):
            for arg in node:
                arg[0] = rename.get(arg[0], arg[0])
        layer = fmodel.get_layer(e["name"])
        if e["class_name"] in _PLAIN_CLASS:
            use_bias = bool(e["config"].get("use_bias", False)) or e["name"] in folded_into
            input_q = getattr(layer, "input_quantizer", None)
            e = {
                **e,
                "module": "keras.layers",
                "class_name": _PLAIN_CLASS[e["class_name"]],
                "registered_name": None,
                "config": _plain_layer_config(e, use_bias),
            }
            if input_q is not None:
                import larq as lq

                qname = f"{e['name']}_input_quantizer"
                new_layers.append(
                    {
                        "module": QuantizerLayer.__module__,
                        "class_name": "QuantizerLayer",
                        "registered_name": tf.keras.utils.get_registered_name(QuantizerLayer),
                        "name": qname,
                        "config": {"name": qname, "quantizer": lq.quantizers.serialize(input_q)},
                        "inbound_nodes": copy.deepcopy(e["inbound_nodes"]),
                    }
                )
                e["inbound_nodes"] = [[[qname, 0, 0, {}]]]
        new_layers.append(e)
    cfg["layers"] = new_layers
    cfg["output_layers"] = [[rename.get(o[0], o[0]), *o[1:]] for o in cfg["output_layers"]]
    new = tf.keras.Model.from_config(cfg, custom_objects={"QuantizerLayer": QuantizerLayer})

    graph = InferenceGraph(new, folded=dict(pairs))
    for layer in new.layers:
        if isinstance(layer, QuantizerLayer) or not layer.weights:
            continue
        src = fmodel.get_layer(layer.name)
        if _PLAIN_CLASS.get(type(src).__name__) is None:
            layer.set_weights(src.get_weights())
            continue
        kernel = constant_kernel(src)
        bias = src.bias.numpy() if getattr(src, "use_bias", False) else None
        channels = kernel.shape[-1]
        s, t = np.ones(channels), np.zeros(channels)
        bn_name = folded_into.get(layer.name)
        if bn_name is not None:
            s, t = batchnorm_affine(fmodel.get_layer(bn_name))
        if getattr(src, "kernel_quantizer", None) is not None:
            kind = "ternary" if is_ternary(kernel) else "other"
            scale = s.astype(np.float32)
            graph.kernels.append(FoldedKernel(layer.name, kind, kernel, scale, bn_name))
        if bn_name is not None:
            kernel, bias = fold_batchnorm(kernel, bias, s, t)
        layer.set_weights([kernel] if bias is None else [kernel, bias])
    return graph
