"""Inference graph for export: constant ternary kernels, batch-norm folded into them.

A trained larq/keras-ternary model keeps *latent* float kernels and applies its kernel
quantizer on every call. For deployment we evaluate each quantizer once, so that a
``QuantConv2D`` / ``QuantDense`` becomes a plain ``Conv2D`` / ``Dense`` whose kernel is the
constant ternary tensor ``t ∈ {-1, 0, +1}`` (every kernel
:data:`keras_ternary.layer_table.LAYER_WEIGHTS` lists: a ``QuantSeparableConv2D`` becomes a
``SeparableConv2D`` with constant depthwise and pointwise kernels), and fold an
inference-mode batch-norm that directly follows a convolution into it (a separable one: into
its pointwise kernel) (:func:`batchnorm_affine`, :func:`fold_batchnorm`):

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

import tensorflow as tf

from keras_ternary.export.graph import ConfigGraph, ExportError
from keras_ternary.export.transforms import (
    CUSTOM_OBJECTS,
    ConstantKernel,
    ConvBatchNormFold,
    FoldedKernel,
    FoldLog,
    InputQuantizerSplit,
    QuantizerLayer,
    RangeClip,
    RangeClipInsert,
    ResidualBatchNormPushBack,
    ResidualFold,
    Transform,
    batchnorm_affine,
    constant_kernel,
    fold_batchnorm,
    is_ternary,
)

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

_RESIDUAL: tuple[Transform, ...] = (ResidualBatchNormPushBack(), RangeClipInsert())


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


def _rewrite(
    model: tf.keras.Model, transforms: tuple[Transform, ...], log: FoldLog
) -> tf.keras.Model:
    """Apply ``transforms`` in order to the config graph of ``model``; the rebuilt model."""
    graph = ConfigGraph.from_model(model)
    for transform in transforms:
        transform(graph, log)
    return graph.build(CUSTOM_OBJECTS)


def inference_model(
    model: tf.keras.Model, fold_bn: bool = True, fold_residual_bn: bool = False
) -> InferenceGraph:
    """Build the float inference twin of ``model``: constant (ternary) kernels, BN folded.

    Applies, in order, the transforms of :mod:`keras_ternary.export.transforms`:
    :class:`~keras_ternary.export.transforms.InputQuantizerSplit`,
    :class:`~keras_ternary.export.transforms.ConstantKernel`, with ``fold_bn``
    :class:`~keras_ternary.export.transforms.ConvBatchNormFold`, and with ``fold_bn`` and
    ``fold_residual_bn`` the residual push-back and its range clips
    (:func:`fold_residual_batchnorms`).

    Every layer keeps its name. Activation quantizers (larq ``input_quantizer``) become a
    :class:`QuantizerLayer` named ``<layer>_input_quantizer`` in front of the layer.

    Raises:
        ExportError: for subclassed models or layer options export does not support.
    """
    fmodel = _functional(model)
    transforms: tuple[Transform, ...] = (InputQuantizerSplit(), ConstantKernel())
    if fold_bn:
        transforms += (ConvBatchNormFold(),)
        if fold_residual_bn:
            transforms += _RESIDUAL
    log = FoldLog()
    new = _rewrite(fmodel, transforms, log)
    found = log.kernels.values()  # in layer order; a layer's kernels in the order it applies them
    kernels = [k for x in new.layers for k in found if k.keras_layer == x.name]
    return InferenceGraph(new, kernels, log.folded, log.residual)


def fold_residual_batchnorms(graph: InferenceGraph) -> InferenceGraph:
    """Push batch-norms after a residual ``Add`` back into the branches (see module docs).

    Returns a new :class:`InferenceGraph` computing the same function (up to float
    rounding); ``graph.residual`` lists what was done, ``graph.kernels`` carry the extra
    per-channel ``residual_scale`` of the convolutions that took it.
    """
    log = FoldLog({k.layer: copy.copy(k) for k in graph.kernels}, dict(graph.folded))
    new = _rewrite(graph.model, _RESIDUAL, log)
    if not log.residual:
        return graph
    kernels = [log.kernels[k.layer] for k in graph.kernels]
    return InferenceGraph(new, kernels, log.folded, [*graph.residual, *log.residual])
