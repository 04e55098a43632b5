"""The one table of which weights of a Keras / larq layer are kernels, and their quantizers.

Keyed by layer class name; a layer is looked up by the names of its class and its bases
(its MRO), so a subclass of ``QuantConv2D`` finds the ``QuantConv2D`` row. A plain Keras layer
has the same kernel attribute as its larq ``Quant*`` form and simply no quantizer attribute.
Consulted by :func:`keras_ternary.stats.quantized_kernels` (sparsity and entropy),
:func:`keras_ternary.callbacks.find_ternary_quantizers` (``DeltaGrowth``), the export
(:mod:`keras_ternary.export.transforms`, :mod:`keras_ternary.export.packed`) and hw_sim's
loaders. TensorFlow-free: it only reads attributes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "LAYER_WEIGHTS",
    "QuantizedWeight",
    "kernel_op_names",
    "kernel_weights",
    "layer_of_earlier_kernel_op",
    "quantized_weights",
]


@dataclass(frozen=True)
class QuantizedWeight:
    """A kernel of a layer: the attribute holding it and the one holding its quantizer.

    ``depthwise``: the kernel is Keras' depthwise layout ``(kh, kw, c_in, multiplier)``,
    whose output channel ``c·multiplier + m`` is its entry ``[..., c, m]``.
    """

    kernel_attr: str
    quantizer_attr: str
    depthwise: bool = False


_KERNEL = (QuantizedWeight("kernel", "kernel_quantizer"),)
_DEPTHWISE = (QuantizedWeight("depthwise_kernel", "depthwise_quantizer", depthwise=True),)
_SEPARABLE = _DEPTHWISE + (QuantizedWeight("pointwise_kernel", "pointwise_quantizer"),)

#: Layer class name -> its kernels, in the order the layer applies them.
LAYER_WEIGHTS: dict[str, tuple[QuantizedWeight, ...]] = {
    # larq (every Quant* layer larq 0.14 has; hw_sim's loader models the 2-D ones and Dense)
    "QuantDense": _KERNEL,
    "QuantConv1D": _KERNEL,
    "QuantConv2D": _KERNEL,
    "QuantConv3D": _KERNEL,
    "QuantConv2DTranspose": _KERNEL,
    "QuantConv3DTranspose": _KERNEL,
    "QuantLocallyConnected1D": _KERNEL,
    "QuantLocallyConnected2D": _KERNEL,
    "QuantDepthwiseConv2D": _DEPTHWISE,
    "QuantSeparableConv1D": _SEPARABLE,
    "QuantSeparableConv2D": _SEPARABLE,
    # Keras (float kernels; also the bases of larq's layers and of user subclasses)
    "Dense": _KERNEL,
    "Conv": _KERNEL,  # base of Conv1D/2D/3D and the transposed convolutions
    "LocallyConnected1D": _KERNEL,
    "LocallyConnected2D": _KERNEL,
    "DepthwiseConv": _DEPTHWISE,  # base of DepthwiseConv1D/2D
    "SeparableConv": _SEPARABLE,  # base of SeparableConv1D/2D
}


def kernel_weights(layer: object) -> tuple[QuantizedWeight, ...]:
    """The kernels of ``layer`` per :data:`LAYER_WEIGHTS` (empty for a layer without one).

    A layer of no class in the table that follows larq's convention (a ``kernel`` and a
    ``kernel_quantizer`` attribute, e.g. a user's own quantized layer) has that one kernel.
    """
    for cls in type(layer).__mro__:
        found = LAYER_WEIGHTS.get(cls.__name__)
        if found is not None:
            return found
    if hasattr(layer, "kernel") and hasattr(layer, "kernel_quantizer"):
        return _KERNEL
    return ()


def kernel_op_names(layer_name: str, weights: tuple[QuantizedWeight, ...]) -> list[str]:
    """The name of the op that applies each kernel (hw_sim's IR, the export metadata).

    The last kernel's op carries the layer's name (it holds the bias and the activation); an
    earlier one is ``<layer>/<kernel attribute without "_kernel">``: a separable
    convolution is ``<layer>/depthwise`` then ``<layer>``.
    """
    names = [f"{layer_name}/{_op_suffix(w)}" for w in weights[:-1]]
    return names + [layer_name] if weights else []


def _op_suffix(weight: QuantizedWeight) -> str:
    return weight.kernel_attr.removesuffix("_kernel")


#: The suffixes :func:`kernel_op_names` gives the op of a kernel that is not a layer's last.
_EARLIER_KERNEL_SUFFIXES = frozenset(
    _op_suffix(w) for weights in LAYER_WEIGHTS.values() for w in weights[:-1]
)


def layer_of_earlier_kernel_op(op_name: str) -> str | None:
    """The inverse of :func:`kernel_op_names` for an earlier kernel's op, else ``None``.

    ``"sep/depthwise"`` -> ``"sep"`` (a separable convolution's first op); ``"sep"`` or
    ``"conv"`` -> ``None`` (an op named after its own layer).
    """
    layer, slash, suffix = op_name.rpartition("/")
    return layer if slash and layer and suffix in _EARLIER_KERNEL_SUFFIXES else None


def quantized_weights(layer: object) -> Iterator[tuple[QuantizedWeight, object, object]]:
    """``(weight, kernel variable, quantizer)`` for each kernel of ``layer`` with a quantizer."""
    for weight in kernel_weights(layer):
        quantizer = getattr(layer, weight.quantizer_attr, None)
        kernel = getattr(layer, weight.kernel_attr, None)
        if quantizer is not None and kernel is not None:
            yield weight, kernel, quantizer
