"""The one table of which weights of a Keras / larq layer are kernels, and their quantizers.

Keyed by layer class name; a layer is looked up by the names of its class and its bases
(its MRO), so a subclass of ``QuantConv2D`` finds the ``QuantConv2D`` row. A plain Keras layer
has the same kernel attribute as its larq ``Quant*`` form and simply no quantizer attribute.
Consulted by :func:`keras_ternary.stats.quantized_kernels` (sparsity and entropy),
:func:`keras_ternary.callbacks.find_ternary_quantizers` (``DeltaGrowth``) and hw_sim's Keras
loader. TensorFlow-free: it only reads attributes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["LAYER_WEIGHTS", "QuantizedWeight", "kernel_weights", "quantized_weights"]


@dataclass(frozen=True)
class QuantizedWeight:
    """A kernel of a layer: the attribute holding it and the one holding its quantizer."""

    kernel_attr: str
    quantizer_attr: str


_KERNEL = (QuantizedWeight("kernel", "kernel_quantizer"),)
_DEPTHWISE = (QuantizedWeight("depthwise_kernel", "depthwise_quantizer"),)
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


def quantized_weights(layer: object) -> Iterator[tuple[QuantizedWeight, object, object]]:
    """``(weight, kernel variable, quantizer)`` for each kernel of ``layer`` with a quantizer."""
    for weight in kernel_weights(layer):
        quantizer = getattr(layer, weight.quantizer_attr, None)
        kernel = getattr(layer, weight.kernel_attr, None)
        if quantizer is not None and kernel is not None:
            yield weight, kernel, quantizer
