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
single-use convolution stay as they are; the TFLite converter turns them into a per-channel
multiply and add.

A batch-norm after a residual ``Add`` (optionally through a global average pooling, which
is linear per channel too) can instead be pushed *back* into the branches of the sum
(:func:`fold_residual_batchnorms`):

    BN(a + x) = (s ⊙ a + t) + s ⊙ x

A branch made by a single-use convolution gets ``s`` folded into its kernel (and ``t``
into its bias); an identity branch gets a 1×1 depthwise convolution holding ``s``. The
function is unchanged, but the sum is then computed in the *normalised* domain, which
matters for int8: quantizing ``a + x`` per tensor before a per-channel scale ``s`` of up
to several hundred throws the small-variance channels away. When the batch-norm feeds a
hard-tanh (``clip(·, -1, 1)``) and the branch inputs are bounded, each convolution branch
is also clipped to ``±(1 + bound of the other branch)`` (:class:`RangeClip`), which cannot
change the clipped sum but lets the int8 converter give that tensor a fine scale.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from keras_ternary.contract import affine
from keras_ternary.contract.metadata import ResidualEntry

__all__ = [
    "ExportError",
    "FoldedKernel",
    "InferenceGraph",
    "QuantizerLayer",
    "RangeClip",
    "ResidualFold",
    "batchnorm_affine",
    "constant_kernel",
    "fold_batchnorm",
    "fold_residual_batchnorms",
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


@tf.keras.utils.register_keras_serializable(package="keras_ternary_export", name="RangeClip")
class RangeClip(tf.keras.layers.Layer):
    """``clip(x, -bound, bound)``: an exact no-op where placed by the export, a range hint."""

    def __init__(self, bound: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if not bound > 0:
            raise ValueError(f"bound must be > 0, got {bound}")
        self.bound = float(bound)

    def call(self, inputs):
        return tf.clip_by_value(inputs, -self.bound, self.bound)

    def get_config(self):
        return {**super().get_config(), "bound": self.bound}


@dataclass
class FoldedKernel:
    """One quantized kernel of the source model as it appears in the inference model.

    Attributes:
        layer: name of the conv/dense layer (same in both models).
        kind: ``"ternary"`` (values in {-1, 0, +1}, binary included) or ``"other"``.
        ternary: the quantized kernel ``t`` (Keras layout), before any scaling.
        scale: per-output-channel factor multiplied in by batch-norm folding (ones if none).
        folded_bn: name of the batch-norm folded into this layer, or None.
        residual_bn: name of a batch-norm after a residual sum pushed back into this layer
            (:func:`fold_residual_batchnorms`), or None.
        residual_scale: that batch-norm's per-channel ``s`` (float64), or None.
    """

    layer: str
    kind: str
    ternary: np.ndarray
    scale: np.ndarray
    folded_bn: str | None = None
    residual_bn: str | None = None
    residual_scale: np.ndarray | None = None

    @property
    def total_scale(self) -> np.ndarray:
        """Per-channel factor of the inference kernel: ``scale``, times ``residual_scale``."""
        if self.residual_scale is None:
            return np.asarray(self.scale, np.float32)
        return (np.asarray(self.scale, np.float64) * self.residual_scale).astype(np.float32)

    @property
    def kernel(self) -> np.ndarray:
        """The constant kernel of the inference model, ``total_scale ⊙ t`` (channels last)."""
        return (self.ternary * self.total_scale).astype(np.float32)


@dataclass
class ResidualFold(ResidualEntry):
    """A batch-norm after a residual ``Add`` pushed back into the branches of the sum.

    Its fields (the batch-norm, the add, ``scale`` and ``shift``, the branches, the range
    clips added) are those recorded in the export metadata: see
    :class:`keras_ternary.contract.metadata.ResidualEntry`.
    """


@dataclass
class InferenceGraph:
    """Result of :func:`inference_model`: the float model and what was done to build it."""

    model: tf.keras.Model
    kernels: list[FoldedKernel] = field(default_factory=list)
    folded: dict[str, str] = field(default_factory=dict)  # bn name -> conv name
    residual: list[ResidualFold] = field(default_factory=list)

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
    return affine.batchnorm_affine(
        weights.get("gamma"),
        weights.get("beta"),
        weights["moving_mean"],
        weights["moving_variance"],
        bn.epsilon,
    )


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


def _normalises_last_axis(bn_entry: dict, model: tf.keras.Model) -> bool:
    """True if the batch-norm of config ``bn_entry`` works on the last (channel) axis."""
    axis = bn_entry["config"].get("axis", -1)
    axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
    rank = len(model.get_layer(bn_entry["name"]).output_shape)
    return axis in (-1, rank - 1)


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
        if (
            len(_nodes(producer)) != 1
            or consumers[producer["name"]] != [e["name"]]
            or producer["name"] in outputs
            or pc.get("activation", "linear") not in ("linear", None)
            or not _normalises_last_axis(e, model)
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


def inference_model(
    model: tf.keras.Model, fold_bn: bool = True, fold_residual_bn: bool = False
) -> InferenceGraph:
    """Build the float inference twin of ``model``: constant (ternary) kernels, BN folded.

    ``fold_residual_bn`` also pushes batch-norms after residual sums back into the
    branches (:func:`fold_residual_batchnorms`; needs ``fold_bn``).

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
    if fold_bn and fold_residual_bn:
        graph = fold_residual_batchnorms(graph)
    return graph


_HARD_TANH = ("HardTanh",)
_CONV_CLASSES = ("Conv1D", "Conv2D", "Conv3D", "Dense")


def _residual_plan(cfg: dict, model: tf.keras.Model) -> list[tuple[dict, dict, dict | None]]:
    """``(bn, add, via)`` config entries of every batch-norm that can be pushed back."""
    layers = cfg["layers"]
    by_name = {e["name"]: e for e in layers}
    consumers = _consumers(layers)
    outputs = {o[0] for o in cfg["output_layers"]}
    plan = []
    for e in layers:
        if e["class_name"] != "BatchNormalization":
            continue
        nodes = _nodes(e)
        if len(nodes) != 1 or len(nodes[0]) != 1 or not _normalises_last_axis(e, model):
            continue
        src, via = by_name.get(nodes[0][0][0]), None
        if src is not None and src["class_name"] == "GlobalAveragePooling2D":
            if consumers[src["name"]] != [e["name"]] or src["config"].get("keepdims"):
                continue
            via, (vnode,) = src, _nodes(src)
            src = by_name.get(vnode[0][0])
            if src is None or consumers[src["name"]] != [via["name"]]:
                continue
        elif src is None or consumers[src["name"]] != [e["name"]]:
            continue
        if src["class_name"] != "Add" or len(_nodes(src)) != 1 or src["name"] in outputs:
            continue
        if via is not None and via["name"] in outputs:
            continue
        plan.append((e, src, via))
    return plan


def _output_bound(name: str, by_name: dict) -> float | None:
    """A bound of ``|output|`` of layer ``name``: 1 for a hard-tanh, else None (unknown)."""
    entry = by_name.get(name)
    return 1.0 if entry is not None and entry["class_name"] in _HARD_TANH else None


def _clip_entry(name: str, bound: float, source: list) -> dict:
    """Functional-config entry of a :class:`RangeClip` applied to ``source`` (a node arg)."""
    return {
        "module": RangeClip.__module__,
        "class_name": "RangeClip",
        "registered_name": tf.keras.utils.get_registered_name(RangeClip),
        "name": name,
        "config": {"name": name, "trainable": False, "bound": float(bound)},
        "inbound_nodes": [[copy.deepcopy(source)]],
    }


def _foldable_branch(producer: dict | None, add: dict, consumers: dict) -> bool:
    """True if ``producer`` is a linear conv/dense layer used only by ``add`` (once)."""
    return (
        producer is not None
        and producer["class_name"] in _CONV_CLASSES
        and consumers[producer["name"]] == [add["name"]]
        and producer["config"].get("activation", "linear") in ("linear", None)
        and len(_nodes(producer)) == 1
    )


def fold_residual_batchnorms(graph: InferenceGraph) -> InferenceGraph:
    """Push batch-norms after a residual ``Add`` back into the branches (see module docs).

    Returns a new :class:`InferenceGraph` computing the same function (up to float
    rounding); ``graph.residual`` lists what was done, ``graph.kernels`` carry the extra
    per-channel ``residual_scale`` of the convolutions that took it.
    """
    model = graph.model
    cfg = copy.deepcopy(model.get_config())
    layers = cfg["layers"]
    by_name = {e["name"]: e for e in layers}
    consumers = _consumers(layers)
    plan = _residual_plan(cfg, model)
    if not plan:
        return graph
    kernels = {k.layer: copy.copy(k) for k in graph.kernels}
    weights: dict[str, list[np.ndarray]] = {}
    inserted: dict[str, list[dict]] = {}  # add name -> layers to insert before it
    rename: dict[str, str] = {}
    folds = []
    for bn_entry, add, via in plan:
        bn = model.get_layer(bn_entry["name"])
        s, t = batchnorm_affine(bn)
        (node,) = _nodes(add)
        foldable = [_foldable_branch(by_name.get(arg[0]), add, consumers) for arg in node]
        if not all(foldable) and len(model.get_layer(add["name"]).output_shape) != 4:
            continue  # an identity branch needs a depthwise (2-D) layer: keep this batch-norm
        branches, bounds, shift_branch = [], [], None
        extra: list[dict] = []
        for i, arg in enumerate(node):
            producer = by_name.get(arg[0])
            give_shift = shift_branch is None
            if foldable[i] and producer["name"] not in weights:
                layer = model.get_layer(producer["name"])
                current = layer.get_weights()
                bias = current[1] if len(current) > 1 else np.zeros_like(s)
                fk = kernels.get(layer.name)
                if fk is not None:
                    fk.residual_bn, fk.residual_scale = bn.name, s
                    kernel = fk.kernel
                else:
                    kernel = (np.asarray(current[0], np.float64) * s).astype(np.float32)
                new_bias = s * np.asarray(bias, np.float64) + (t if give_shift else 0.0)
                weights[layer.name] = [kernel, new_bias.astype(np.float32)]
                producer["config"]["use_bias"] = True
                branches.append((layer.name, "folded"))
                (pnode,) = _nodes(producer)
                b_in = _output_bound(pnode[0][0], by_name) if len(pnode) == 1 else None
                reduce_axes = tuple(range(kernel.ndim - 1))
                bounds.append(
                    None
                    if b_in is None
                    else np.abs(kernel).sum(axis=reduce_axes) * b_in + np.abs(new_bias)
                )
            else:
                name = f"{bn.name}_scale{i}"
                if name in by_name:
                    raise ExportError(f"cannot fold {bn.name}: a layer is already named {name!r}")
                extra.append(
                    {
                        "module": "keras.layers",
                        "class_name": "DepthwiseConv2D",
                        "registered_name": None,
                        "name": name,
                        "config": {
                            "name": name,
                            "trainable": False,
                            "kernel_size": [1, 1],
                            "padding": "valid",
                            "use_bias": give_shift,
                        },
                        "inbound_nodes": [[copy.deepcopy(arg)]],
                    }
                )
                dw = [s.reshape(1, 1, -1, 1).astype(np.float32)]
                weights[name] = dw + ([t.astype(np.float32)] if give_shift else [])
                arg[0], arg[1], arg[2] = name, 0, 0
                branches.append((name, "scaled"))
                b_in = _output_bound(extra[-1]["inbound_nodes"][0][0][0], by_name)
                bounds.append(
                    None if b_in is None else np.abs(s) * b_in + (np.abs(t) if give_shift else 0.0)
                )
            if give_shift:
                shift_branch = branches[-1][0]
        fold = ResidualFold(
            bn.name,
            add["name"],
            via["name"] if via else None,
            s,
            t,
            float(bn.epsilon),
            branches,
            shift_branch,
        )
        after = consumers[bn.name]
        clip_ok = (
            via is None
            and len(after) == 1
            and by_name[after[0]]["class_name"] in _HARD_TANH
            and all(b is not None for b in bounds)
        )
        if clip_ok:
            peak = [float(np.max(b)) for b in bounds]
            for i, (arg, (_, kind)) in enumerate(zip(node, branches, strict=True)):
                if kind != "folded":
                    continue
                bound = 1.0 + sum(p for j, p in enumerate(peak) if j != i)
                name = f"{bn.name}_clip{i}"
                extra.append(_clip_entry(name, bound, arg))
                arg[0], arg[1], arg[2] = name, 0, 0
                peak[i] = min(peak[i], bound)
                fold.clips.append(name)
        inserted[add["name"]] = extra
        rename[bn.name] = via["name"] if via else add["name"]
        if via is not None and len(after) == 1 and by_name[after[0]]["class_name"] in _HARD_TANH:
            # the pooled sum only matters in [-1, 1]: say so to the converter (MEAN's output
            # then gets an int8 step of about 2/255 instead of its calibrated range / 255).
            # Not exactly ±1: the converter would turn that into a stand-alone RELU_N1_TO_1,
            # whose range it does not pass back to the MEAN.
            name = f"{bn.name}_clip"
            clip = _clip_entry(name, 1.0 + 2.0**-6, [via["name"], 0, 0, {}])
            inserted.setdefault(after[0], []).append(clip)
            rename[bn.name] = name
            fold.clips.append(name)
        folds.append(fold)
    if not folds:
        return graph
    gone = {f.bn for f in folds}
    new_layers = []
    for e in layers:
        if e["name"] in gone:
            continue
        new_layers.extend(inserted.get(e["name"], []))
        for node in _nodes(e):
            for arg in node:
                arg[0] = rename.get(arg[0], arg[0])
        new_layers.append(e)
    cfg["layers"] = new_layers
    cfg["output_layers"] = [[rename.get(o[0], o[0]), *o[1:]] for o in cfg["output_layers"]]
    new = tf.keras.Model.from_config(
        cfg, custom_objects={"QuantizerLayer": QuantizerLayer, "RangeClip": RangeClip}
    )
    for layer in new.layers:
        if layer.name in weights:
            layer.set_weights(weights[layer.name])
        elif layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return InferenceGraph(
        new,
        kernels=[kernels.get(k.layer, k) for k in graph.kernels],
        folded=dict(graph.folded),
        residual=[*graph.residual, *folds],
    )
