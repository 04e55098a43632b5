"""An independent MAC / kernel-weight count per Keras layer: the oracle of the zoo tests.

Computed only from each layer's class, its config and the input/output shapes Keras reports,
never from hw_sim code, so that hw_sim's counts can be checked against it. Textbook rules
(padding taps included, biases excluded, batch excluded):

* Conv2D (and larq QuantConv2D): ``H_out·W_out · kh·kw·C_in/groups · filters``
* DepthwiseConv2D: ``H_out·W_out · kh·kw·C_in·depth_multiplier``
* SeparableConv2D: the depthwise count plus ``H_out·W_out · C_in·depth_multiplier · filters``
* Dense: ``(positions) · features_in · units``
* every other layer: no MACs, no kernel weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import tensorflow as tf

__all__ = ["LayerCount", "count_layer", "count_model"]


@dataclass(frozen=True)
class LayerCount:
    """MACs of one layer and the number of weights in its kernel(s) (no bias)."""

    macs: int
    kernel_weights: int


def _shape(shape) -> tuple[int, ...]:
    if isinstance(shape, list):  # a layer with several inputs: not a MAC layer
        shape = shape[0]
    return tuple(int(d) for d in shape[1:])


def count_layer(layer: tf.keras.layers.Layer) -> LayerCount:
    """MACs and kernel weights of one layer of a built model (see the module docstring)."""
    cfg = layer.get_config()
    layers = tf.keras.layers
    if isinstance(layer, layers.SeparableConv2D | layers.DepthwiseConv2D | layers.Conv2D):
        h_in, w_in, c_in = _shape(layer.input_shape)
        h_out, w_out, c_out = _shape(layer.output_shape)
        kh, kw = cfg["kernel_size"]
        if isinstance(layer, layers.SeparableConv2D):
            mult = cfg["depth_multiplier"]
            weights = kh * kw * c_in * mult + c_in * mult * cfg["filters"]
        elif isinstance(layer, layers.DepthwiseConv2D):
            weights = kh * kw * c_in * cfg["depth_multiplier"]
        else:
            weights = kh * kw * (c_in // cfg.get("groups", 1)) * cfg["filters"]
        return LayerCount(h_out * w_out * weights, weights)
    if isinstance(layer, layers.Dense):
        in_shape = _shape(layer.input_shape)
        weights = in_shape[-1] * cfg["units"]
        return LayerCount(math.prod(in_shape[:-1]) * weights, weights)
    return LayerCount(0, 0)


def count_model(model: tf.keras.Model) -> dict[str, LayerCount]:
    """``{layer name: LayerCount}`` for the layers of ``model`` that multiply (MACs > 0)."""
    counts = {layer.name: count_layer(layer) for layer in model.layers}
    return {name: c for name, c in counts.items() if c.macs}
