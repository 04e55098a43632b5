"""The rewrites that turn a trained model's graph into its inference twin, one class each.

A :class:`Transform` names where it applies by one or more :class:`Chain` patterns (layer
classes, producer first, linked by single-use edges), may refuse a match
(:meth:`Transform.accept`), and rewrites a match in a
:class:`~keras_ternary.export.graph.ConfigGraph` (:meth:`Transform.replace`), writing down
what it did in a :class:`FoldLog`. Matches are
found on the graph as it is when the transform starts, then rewritten one by one.

In the order :func:`keras_ternary.export.fold.inference_model` applies them:

* :class:`InputQuantizerSplit` — a larq ``input_quantizer`` becomes a :class:`QuantizerLayer`.
* :class:`ConstantKernel` — ``QuantConv2D``/``QuantDense``/``QuantDepthwiseConv2D``/
  ``QuantSeparableConv2D``/… → plain layer, each kernel ``t``.
* :class:`ConvBatchNormFold` — batch-norm after a single-use conv/dense folded into it.
* :class:`ResidualBatchNormPushBack` — batch-norm after a residual ``Add`` (optionally
  through a global average pooling) pushed back into the branches of the sum.
* :class:`RangeClipInsert` — :class:`RangeClip` range hints on such sums before a hard-tanh.

The formulas are in the docs of :mod:`keras_ternary.export.fold`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from keras_ternary.contract import affine
from keras_ternary.contract.metadata import ResidualEntry
from keras_ternary.export.graph import ConfigGraph, ExportError, Node, layer_entry
from keras_ternary.layer_table import QuantizedWeight, kernel_op_names, kernel_weights

__all__ = [
    "Chain",
    "ConstantKernel",
    "ConstantPad",
    "ConvBatchNormFold",
    "FoldLog",
    "FoldedKernel",
    "InputQuantizerSplit",
    "QuantizerLayer",
    "RangeClip",
    "RangeClipInsert",
    "ResidualBatchNormPushBack",
    "ResidualFold",
    "Transform",
    "batchnorm_affine",
    "constant_kernel",
    "fold_batchnorm",
    "is_ternary",
]

# larq layer class -> plain Keras class with the same weights (its kernels[, bias]).
_PLAIN_CLASS = {
    "QuantConv1D": "Conv1D",
    "QuantConv2D": "Conv2D",
    "QuantConv3D": "Conv3D",
    "QuantDense": "Dense",
    "Conv1D": "Conv1D",
    "Conv2D": "Conv2D",
    "Conv3D": "Conv3D",
    "Dense": "Dense",
    "QuantDepthwiseConv2D": "DepthwiseConv2D",
    "QuantSeparableConv2D": "SeparableConv2D",
}
# larq config keys a plain layer does not take (besides the kernels' quantizers)
_LARQ_KEYS = ("input_quantizer", "metrics", "pad_values")
_LINEAR = ("Conv1D", "Conv2D", "Conv3D", "Dense")
_DEPTHWISE = "DepthwiseConv2D"
_SEPARABLE = "SeparableConv2D"
_BN = "BatchNormalization"
_HARD_TANH = "HardTanh"
_POOL = "GlobalAveragePooling2D"


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


@tf.keras.utils.register_keras_serializable(package="keras_ternary_export", name="ConstantPad")
class ConstantPad(tf.keras.layers.Layer):
    """Pads H and W by ``padding = (top, bottom, left, right)`` with ``value`` (TFLite PADV2).

    What a larq convolution with ``pad_values`` and ``padding="same"`` does before its
    (then ``"valid"``) convolution.
    """

    def __init__(self, padding=(0, 0, 0, 0), value: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.padding = tuple(int(p) for p in padding)
        self.value = float(value)

    def call(self, inputs):
        top, bottom, left, right = self.padding
        widths = [[0, 0], [top, bottom], [left, right], [0, 0]]
        return tf.pad(inputs, widths, constant_values=tf.cast(self.value, inputs.dtype))

    def get_config(self):
        return {**super().get_config(), "padding": list(self.padding), "value": self.value}


CUSTOM_OBJECTS = {
    "QuantizerLayer": QuantizerLayer,
    "RangeClip": RangeClip,
    "ConstantPad": ConstantPad,
}


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
            (:class:`ResidualBatchNormPushBack`), or None.
        residual_scale: that batch-norm's per-channel ``s`` (float64), or None.
        depthwise: True for a depthwise kernel ``(kh, kw, in, multiplier)``, whose output
            channel ``c·multiplier + m`` is its entry ``[..., c, m]``.
        part_of: the layer when this kernel is one of several of it, else None; ``layer`` is
            then the op that applies it (a separable convolution: ``<layer>/depthwise``
            and ``<layer>``, :func:`keras_ternary.layer_table.kernel_op_names`).
    """

    layer: str
    kind: str
    ternary: np.ndarray
    scale: np.ndarray
    folded_bn: str | None = None
    residual_bn: str | None = None
    residual_scale: np.ndarray | None = None
    depthwise: bool = False
    part_of: str | None = None

    @property
    def keras_layer(self) -> str:
        """The name of the layer holding this kernel."""
        return self.part_of or self.layer

    @property
    def total_scale(self) -> np.ndarray:
        """Per-channel factor of the inference kernel: ``scale``, times ``residual_scale``."""
        if self.residual_scale is None:
            return np.asarray(self.scale, np.float32)
        return (np.asarray(self.scale, np.float64) * self.residual_scale).astype(np.float32)

    @property
    def kernel(self) -> np.ndarray:
        """The constant kernel of the inference model, ``total_scale ⊙ t`` (channels last)."""
        scale = self.total_scale
        if self.depthwise:
            scale = scale.reshape(self.ternary.shape[-2:])
        return (self.ternary * scale).astype(np.float32)


@dataclass
class ResidualFold(ResidualEntry):
    """A batch-norm after a residual ``Add`` pushed back into the branches of the sum.

    Its fields (the batch-norm, the add, ``scale`` and ``shift``, the branches, the range
    clips added) are those recorded in the export metadata: see
    :class:`keras_ternary.contract.metadata.ResidualEntry`.
    """


@dataclass
class FoldLog:
    """What the transforms did: kernels by layer, folded BN -> conv, residual folds."""

    kernels: dict[str, FoldedKernel] = field(default_factory=dict)
    folded: dict[str, str] = field(default_factory=dict)
    residual: list[ResidualFold] = field(default_factory=list)


def is_ternary(values: np.ndarray) -> bool:
    """True when every entry is exactly -1, 0 or +1 (a binary kernel is ternary too)."""
    v = np.asarray(values)
    return bool(np.all((v == -1) | (v == 0) | (v == 1)))


def _kernel_weight(layer: tf.keras.layers.Layer) -> QuantizedWeight:
    """The one kernel of a conv/dense/depthwise layer (``layer_table.LAYER_WEIGHTS``)."""
    weights = kernel_weights(layer)
    if len(weights) != 1:
        raise ExportError(f"layer {layer.name!r}: export needs exactly one kernel")
    return weights[0]


def constant_kernel(
    layer: tf.keras.layers.Layer, weight: QuantizedWeight | None = None
) -> np.ndarray:
    """A kernel as a (larq) layer uses it in inference: its quantizer applied to the latent.

    ``weight`` names the kernel (:data:`keras_ternary.layer_table.LAYER_WEIGHTS`); by
    default the layer's only one.
    """
    weight = weight or _kernel_weight(layer)
    latent = np.asarray(getattr(layer, weight.kernel_attr).numpy(), dtype=np.float32)
    quantizer = getattr(layer, weight.quantizer_attr, None)
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


class Chain:
    """Pattern: layers linked producer first, each of one of the given classes.

    Every layer but the first is called once with a single input; every layer but the
    last is called once, feeds only the next one (once) and is not a model output. A
    one-layer chain matches every layer of its classes.
    """

    def __init__(self, *links: str | tuple[str, ...]):
        self.links = tuple(frozenset((c,) if isinstance(c, str) else c) for c in links)

    def match(self, graph: ConfigGraph, last: Node) -> list[Node] | None:
        """The chain ending in ``last`` (producer first), or None."""
        if last.class_name not in self.links[-1]:
            return None
        chain = [last]
        for classes in reversed(self.links[:-1]):
            node = chain[0]
            if len(node.calls) != 1 or len(node.inputs) != 1:
                return None
            prev = graph.get(node.inputs[0])
            if (
                prev is None
                or prev.class_name not in classes
                or len(prev.calls) != 1
                or graph.consumers(prev.name) != [node.name]
                or graph.is_output(prev.name)
            ):
                return None
            chain.insert(0, prev)
        return chain


class Transform:
    """One rewrite: where (:attr:`patterns`, :meth:`accept`) and how (:meth:`replace`)."""

    patterns: tuple[Chain, ...] = ()

    def accept(self, graph: ConfigGraph, match: list[Node], log: FoldLog) -> bool:
        """Whether to rewrite this match (default: yes)."""
        return True

    def replace(self, graph: ConfigGraph, match: list[Node], log: FoldLog) -> None:
        """Rewrite the match in ``graph`` and note what was done in ``log``."""
        raise NotImplementedError

    def matches(self, graph: ConfigGraph, log: FoldLog) -> list[list[Node]]:
        """Every accepted match, in graph order of its last layer (first pattern that fits)."""
        found = []
        for node in graph:
            for pattern in self.patterns:
                match = pattern.match(graph, node)
                if match is not None and self.accept(graph, match, log):
                    found.append(match)
                    break
        return found

    def __call__(self, graph: ConfigGraph, log: FoldLog) -> None:
        for match in self.matches(graph, log):
            self.replace(graph, match, log)


def _normalises_last_axis(bn: Node) -> bool:
    """True if batch-norm ``bn`` works on the last (channel) axis."""
    axis = bn.config.get("axis", -1)
    axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
    return axis in (-1, bn.rank - 1)


def _is_linear(node: Node) -> bool:
    return node.config.get("activation", "linear") in ("linear", None)


class InputQuantizerSplit(Transform):
    """A conv/dense layer's larq ``input_quantizer`` → a :class:`QuantizerLayer` in front of it.

    The new layer is named ``<layer>_input_quantizer``.
    """

    patterns = (Chain(tuple(_PLAIN_CLASS)),)

    def accept(self, graph: ConfigGraph, match: list[Node], log: FoldLog) -> bool:
        return getattr(match[0].source, "input_quantizer", None) is not None

    def replace(self, graph: ConfigGraph, match: list[Node], log: FoldLog) -> None:
        import larq as lq

        (node,) = match
        source = node.source.input_quantizer
        quantizer = lq.quantizers.serialize(source)
        entry = layer_entry(
            f"{node.name}_input_quantizer", QuantizerLayer, {"quantizer": quantizer}
        )
        # a quantizer with state (keras_ternary.Ternary's Δ variable) keeps its value
        weights = source.get_weights() if isinstance(source, tf.keras.layers.Layer) else []
        graph.insert(entry, node.name, 0, weights)


class ConstantKernel(Transform):
    """A (larq) conv/dense layer → the plain Keras layer with the constant kernels ``t``.

    Every kernel :data:`keras_ternary.layer_table.LAYER_WEIGHTS` lists for the layer is
    replaced by its quantizer's output: a ``QuantDepthwiseConv2D`` becomes a
    ``DepthwiseConv2D`` (``depthwise_kernel``/``depthwise_quantizer``), a
    ``QuantSeparableConv2D`` a ``SeparableConv2D`` with both its depthwise and its pointwise
    kernel constant.

    Quantized kernels are noted in ``log.kernels`` (:class:`FoldedKernel`, scale 1), under
    the name of the op that applies each (:func:`keras_ternary.layer_table.kernel_op_names`).

    A ``"same"`` convolution with larq ``pad_values != 0`` becomes a :class:`ConstantPad`
    named ``<layer>_pad`` (after its input quantizer, as larq pads the quantized input)
    followed by the ``"valid"`` convolution.

    Raises:
        ExportError: for ``pad_values != 0`` on a layer that is not a 2-D convolution with
            dilation 1.
    """

    patterns = (Chain(tuple(_PLAIN_CLASS)),)

    def _pad_values(self, graph: ConfigGraph, node: Node, config: dict) -> None:
        """Move ``pad_values`` of a ``"same"`` convolution into a :class:`ConstantPad`."""
        from keras_ternary.contract.geometry import window_padding

        value = float(config.get("pad_values", 0.0) or 0.0)
        if value == 0.0 or config.get("padding") != "same":
            return
        if node.class_name not in ("QuantConv2D", "QuantDepthwiseConv2D") or any(
            d != 1 for d in config.get("dilation_rate", (1, 1))
        ):
            raise ExportError(
                f"layer {node.name!r} ({node.class_name}): pad_values != 0 is supported by "
                "export only on 2-D convolutions without dilation"
            )
        in_hw = tuple(node.source.input_shape[1:3])
        pads = window_padding("same", in_hw, tuple(config["kernel_size"]), tuple(config["strides"]))
        entry = layer_entry(
            f"{node.name}_pad", ConstantPad, {"trainable": False, "padding": pads, "value": value}
        )
        graph.insert(entry, node.name, 0)
        config["padding"] = "valid"

    def replace(self, graph: ConfigGraph, match: list[Node], log: FoldLog) -> None:
        (node,) = match
        src = node.source
        config = copy.deepcopy(node.config)
        self._pad_values(graph, node, config)
        weights = kernel_weights(src)
        for key in (*_LARQ_KEYS, *(w.quantizer_attr for w in weights)):
            config.pop(key, None)
        config["kernel_constraint"] = None
        for w in weights:  # kernel_constraint, depthwise_constraint, pointwise_constraint
            constraint = w.kernel_attr.removesuffix("kernel") + "constraint"
            if constraint in config:
                config[constraint] = None
        use_bias = bool(getattr(src, "use_bias", False))
        config["use_bias"] = bool(node.config.get("use_bias", False))
        kernels = [constant_kernel(src, w) for w in weights]
        entry = {
            **node.entry,
            "module": "keras.layers",
            "class_name": _PLAIN_CLASS[node.class_name],
            "registered_name": None,
            "config": config,
        }
        graph.replace(node.name, entry, kernels + ([src.bias.numpy()] if use_bias else []))
        names = kernel_op_names(node.name, weights)
        for w, name, kernel in zip(weights, names, kernels, strict=True):
            if getattr(src, w.quantizer_attr, None) is None:
                continue
            kind = "ternary" if is_ternary(kernel) else "other"
            n_out = kernel.shape[-2] * kernel.shape[-1] if w.depthwise else kernel.shape[-1]
            ones = np.ones(n_out, np.float32)
            part_of = None if name == node.name else node.name
            log.kernels[name] = FoldedKernel(
                name, kind, kernel, ones, depthwise=w.depthwise, part_of=part_of
            )


class ConvBatchNormFold(Transform):
    """Batch-norm right after a single-use linear conv/dense/depthwise/separable conv → folded
    into its last kernel (a separable convolution's pointwise one) and its bias (a depthwise
    kernel's output channel ``c·multiplier + m`` is ``[..., c, m]``).
    """

    patterns = (Chain((*_LINEAR, _DEPTHWISE, _SEPARABLE), _BN),)

    def accept(self, graph: ConfigGraph, match: list[Node], log: FoldLog) -> bool:
        conv, bn = match
        return (
            conv.source is not None
            and _is_linear(conv)
            and _normalises_last_axis(bn)
            and conv.config.get("data_format", "channels_last") == "channels_last"
        )

    def replace(self, graph: ConfigGraph, match: list[Node], log: FoldLog) -> None:
        conv, bn = match
        s, t = batchnorm_affine(bn.source)
        kernels = kernel_weights(conv.source)
        last, i = kernels[-1], len(kernels) - 1  # weights: the kernels, then the bias
        bias = conv.weights[i + 1] if len(conv.weights) > i + 1 else None
        shape = np.shape(conv.weights[i])
        kernel = np.asarray(conv.weights[i])
        if last.depthwise:  # (kh, kw, in, m) -> (kh, kw, in·m): channels last
            kernel = kernel.reshape(*shape[:-2], -1)
        kernel, bias = fold_batchnorm(kernel, bias, s, t)
        conv.config["use_bias"] = True
        graph.replace(conv.name, weights=[*conv.weights[:i], kernel.reshape(shape), bias])
        graph.remove(bn.name)
        log.folded[bn.name] = conv.name
        kernel = log.kernels.get(conv.name)
        if kernel is not None:
            kernel.scale, kernel.folded_bn = s.astype(np.float32), bn.name


class ResidualBatchNormPushBack(Transform):
    """``BN(a + x) = (s ⊙ a + t) + s ⊙ x``: a batch-norm after an ``Add`` into its branches.

    A branch made by a single-use linear conv/dense takes ``s`` into its kernel; any other
    branch gets a 1×1 ``DepthwiseConv2D`` named ``<bn>_scale<i>`` holding ``s`` (so the sum
    must be 4-D, else the batch-norm stays). The first branch takes ``t`` into its bias.
    Biases are kept in float64 here (cast on rebuild) so that :class:`RangeClipInsert`
    bounds them exactly.

    Raises:
        ExportError: if a layer is already named ``<bn>_scale<i>``.
    """

    patterns = (Chain("Add", _BN), Chain("Add", _POOL, _BN))

    def _foldable(self, graph: ConfigGraph, add: Node) -> list[bool]:
        """Per input of ``add``: a linear conv/dense, called once, used only by ``add``."""
        out = []
        for name in add.inputs:
            node = graph.get(name)
            out.append(
                node is not None
                and node.class_name in _LINEAR
                and graph.consumers(name) == [add.name]
                and _is_linear(node)
                and len(node.calls) == 1
            )
        return out

    def accept(self, graph: ConfigGraph, match: list[Node], log: FoldLog) -> bool:
        add, *via, bn = match
        if not _normalises_last_axis(bn) or (via and via[0].config.get("keepdims")):
            return False
        return all(self._foldable(graph, add)) or add.rank == 4

    def replace(self, graph: ConfigGraph, match: list[Node], log: FoldLog) -> None:
        add, *via, bn = match
        s, t = batchnorm_affine(bn.source)
        branches = []
        for i, (name, foldable) in enumerate(
            zip(add.inputs, self._foldable(graph, add), strict=True)
        ):
            shift = t if i == 0 else 0.0
            if foldable:
                conv = graph[name]
                bias = conv.weights[1] if len(conv.weights) > 1 else np.zeros_like(s)
                kernel = log.kernels.get(name)
                if kernel is not None:
                    kernel.residual_bn, kernel.residual_scale = bn.name, s
                    k = kernel.kernel
                else:
                    k = (np.asarray(conv.weights[0], np.float64) * s).astype(np.float32)
                conv.config["use_bias"] = True
                graph.replace(name, weights=[k, s * np.asarray(bias, np.float64) + shift])
                branches.append((name, "folded"))
            else:
                scaled = f"{bn.name}_scale{i}"
                if scaled in graph:
                    raise ExportError(f"cannot fold {bn.name}: a layer is already named {scaled!r}")
                config = {"trainable": False, "kernel_size": [1, 1], "padding": "valid"}
                entry = layer_entry(scaled, tf.keras.layers.DepthwiseConv2D, config)
                entry["config"]["use_bias"] = i == 0
                weights = [s.reshape(1, 1, -1, 1)] + ([t] if i == 0 else [])
                graph.insert(entry, add.name, i, weights)
                branches.append((scaled, "scaled"))
        graph.remove(bn.name)
        fold = ResidualFold(
            bn.name,
            add.name,
            via[0].name if via else None,
            s,
            t,
            float(bn.source.epsilon),
            branches,
            branches[0][0],
        )
        log.residual.append(fold)


def _output_bound(graph: ConfigGraph, name: str) -> np.ndarray | None:
    """A per-channel bound of ``|output|`` of a linear branch layer whose input is a
    hard-tanh (``Σ|w|·1 + |b|``), or None if its input is anything else."""
    node = graph[name]
    (source,) = node.inputs
    if graph[source].class_name != _HARD_TANH:
        return None
    kernel = np.abs(node.weights[0])
    if node.class_name == "DepthwiseConv2D":
        bound = kernel.sum(axis=(0, 1)).reshape(-1)
    else:
        bound = kernel.sum(axis=tuple(range(kernel.ndim - 1)))
    return bound + (np.abs(node.weights[1]) if len(node.weights) > 1 else 0.0)


class RangeClipInsert(Transform):
    """Range hints (:class:`RangeClip`) on a pushed-back residual sum that feeds a hard-tanh.

    Without pooling, when every branch is bounded (:func:`_output_bound`), each folded
    branch ``i`` is clipped to ``±(1 + peaks of the other branches)`` (``<bn>_clip<i>``):
    the hard-tanh of the sum cannot change. Through a global average pooling, the pooled
    sum is clipped to ``±(1 + 2⁻⁶)`` before the hard-tanh (``<bn>_clip``): the mean's int8
    step becomes about 2/255 instead of its calibrated range / 255. Not exactly ±1: the
    converter would make that a stand-alone RELU_N1_TO_1, whose range it does not pass
    back to the mean. Applies to the folds in ``log.residual`` that have no clips yet.
    """

    patterns = (Chain("Add", _HARD_TANH), Chain("Add", _POOL, _HARD_TANH))

    def _fold(self, match: list[Node], log: FoldLog) -> ResidualFold | None:
        add, *via, _ = match
        via_name = via[0].name if via else None
        return next(
            (f for f in log.residual if f.add == add.name and f.via == via_name and not f.clips),
            None,
        )

    def accept(self, graph: ConfigGraph, match: list[Node], log: FoldLog) -> bool:
        fold = self._fold(match, log)
        if fold is None:
            return False
        return fold.via is not None or all(
            _output_bound(graph, name) is not None for name, _ in fold.branches
        )

    def replace(self, graph: ConfigGraph, match: list[Node], log: FoldLog) -> None:
        fold = self._fold(match, log)
        add, *_, tanh = match
        if fold.via is not None:
            name = f"{fold.bn}_clip"
            graph.insert(layer_entry(name, RangeClip, _clip_config(1.0 + 2.0**-6)), tanh.name, 0)
            fold.clips.append(name)
            return
        peak = [float(np.max(_output_bound(graph, name))) for name, _ in fold.branches]
        for i, (_, kind) in enumerate(fold.branches):
            if kind != "folded":
                continue
            bound = 1.0 + sum(p for j, p in enumerate(peak) if j != i)
            name = f"{fold.bn}_clip{i}"
            graph.insert(layer_entry(name, RangeClip, _clip_config(bound)), add.name, i)
            peak[i] = min(peak[i], bound)
            fold.clips.append(name)


def _clip_config(bound: float) -> dict:
    return {"trainable": False, "bound": float(bound)}
