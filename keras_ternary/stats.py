"""Metrics of the paper (Sec. 4.2): sparsity, entropy, training speed.

* sparsity: fraction of quantized weights equal to 0 (0..1);
* entropy: bits/symbol of the empirical distribution (:func:`entropy_bits`, from
  :mod:`keras_ternary.contract.entropy`) of the quantized weights over
  ``{-1, 0, +1}`` (a binary layer has no zeros: at most 1 bit/symbol);
* training speed: the (1-based) epoch at which the peak validation accuracy is reached.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import larq as lq
import numpy as np
import tensorflow as tf

from keras_ternary import layer_table
from keras_ternary.contract.entropy import entropy_bits
from keras_ternary.quantizers import Binary, Ternary

__all__ = [
    "LayerStats",
    "QuantizedKernel",
    "TernaryStats",
    "entropy_bits",
    "quantized_kernels",
    "quantized_weights",
    "ternary_stats",
    "training_speed",
]

HIST_BINS = 101
HIST_RANGE = (-1.0, 1.0)


def quantizer_kind(quantizer) -> str | None:
    """Name the family of a kernel quantizer: "ternary", "binary", larq's name, or None."""
    if quantizer is None:
        return None
    if isinstance(quantizer, Ternary):
        return "ternary"
    if isinstance(quantizer, Binary):
        return "binary"
    if isinstance(quantizer, lq.quantizers.SteTern):
        return "ternary"
    precision = getattr(quantizer, "precision", None)
    if precision == 1:
        return "binary"
    return getattr(quantizer, "__name__", type(quantizer).__name__).lower()


def _walk_layers(model: tf.keras.layers.Layer) -> Iterator[tf.keras.layers.Layer]:
    for layer in getattr(model, "layers", []):
        if getattr(layer, "layers", None):
            yield from _walk_layers(layer)
        else:
            yield layer


class QuantizedKernel(NamedTuple):
    """One quantized kernel of a model: its layer, name, latent variable and quantizer."""

    layer: tf.keras.layers.Layer
    kernel_attr: str  # the layer attribute holding it: "kernel", "depthwise_kernel", ...
    name: str
    kernel: tf.Variable
    quantizer: object


def quantized_weights(model: tf.keras.Model) -> Iterator[QuantizedKernel]:
    """Every quantized kernel of ``model`` (:data:`keras_ternary.layer_table.LAYER_WEIGHTS`).

    A layer with one quantized kernel names it after the layer; a separable convolution's
    two are ``<layer>/depthwise_kernel`` and ``<layer>/pointwise_kernel``.
    """
    for layer in _walk_layers(model):
        found = list(layer_table.quantized_weights(layer))
        for weight, kernel, quantizer in found:
            name = layer.name if len(found) == 1 else f"{layer.name}/{weight.kernel_attr}"
            yield QuantizedKernel(layer, weight.kernel_attr, name, kernel, quantizer)


def quantized_kernels(model: tf.keras.Model) -> Iterator[tuple[tf.keras.layers.Layer, object]]:
    """``(layer, kernel_quantizer)`` for every layer whose ``kernel`` attribute is quantized.

    Other quantized kernels (depthwise, pointwise): :func:`quantized_weights`.
    """
    for found in quantized_weights(model):
        if found.kernel_attr == "kernel":
            yield found.layer, found.quantizer


@dataclass
class LayerStats:
    """Counts of a quantized kernel and its derived metrics."""

    name: str
    quantizer: str
    n_weights: int
    n_neg: int
    n_zero: int
    n_pos: int
    delta: float | None = None
    histogram: tuple[list[int], list[float]] | None = field(default=None, repr=False)

    @property
    def sparsity(self) -> float:
        return self.n_zero / self.n_weights if self.n_weights else 0.0

    @property
    def entropy(self) -> float:
        return entropy_bits([self.n_neg, self.n_zero, self.n_pos])

    def to_dict(self, histogram: bool = False) -> dict:
        d = asdict(self)
        if not histogram:
            d.pop("histogram")
        d["sparsity"] = self.sparsity
        d["entropy"] = self.entropy
        return d


@dataclass
class TernaryStats:
    """Per-layer and total statistics of a model's quantized weights."""

    layers: list[LayerStats]
    total: LayerStats

    @property
    def sparsity(self) -> float:
        return self.total.sparsity

    @property
    def entropy(self) -> float:
        return self.total.entropy

    def to_dict(self, histogram: bool = False) -> dict:
        return {
            "layers": [s.to_dict(histogram) for s in self.layers],
            "total": self.total.to_dict(histogram),
        }


def _latent_histogram(values: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    counts, edges = np.histogram(np.clip(values, *HIST_RANGE), bins=bins, range=HIST_RANGE)
    return counts, edges


def ternary_stats(
    model: tf.keras.Model,
    kinds: Iterable[str] | None = ("ternary", "binary"),
    bins: int = HIST_BINS,
    histogram: bool = True,
) -> TernaryStats:
    """Count -1/0/+1 of every quantized kernel of ``model``, per layer and in total.

    Kernels are taken through the layer's own quantizer, so the counts are exactly the
    values the forward pass uses. ``kinds`` limits the quantizer families counted
    (``None``: every quantized kernel). ``histogram`` holds ``(counts, edges)`` of the
    latent (full-precision) weights clipped to [-1, 1] in ``bins`` bins, as in Fig. 1
    (``histogram=False`` skips it and leaves ``histogram`` None).
    """
    wanted = None if kinds is None else set(kinds)
    layers: list[LayerStats] = []
    total_hist = np.zeros(bins, dtype=np.int64)
    edges = np.linspace(*HIST_RANGE, bins + 1)
    for _, _, name, kernel, quantizer in quantized_weights(model):
        kind = quantizer_kind(quantizer)
        if wanted is not None and kind not in wanted:
            continue
        latent = np.asarray(kernel.numpy())
        q = np.asarray(quantizer(tf.convert_to_tensor(latent)).numpy())
        n_neg, n_zero, n_pos = int((q < 0).sum()), int((q == 0).sum()), int((q > 0).sum())
        hist = None
        if histogram:
            counts, edges = _latent_histogram(latent.ravel(), bins)
            total_hist += counts
            hist = (counts.tolist(), edges.tolist())
        layers.append(
            LayerStats(
                name=name,
                quantizer=kind,
                n_weights=int(q.size),
                n_neg=n_neg,
                n_zero=n_zero,
                n_pos=n_pos,
                delta=quantizer.delta if isinstance(quantizer, Ternary) else None,
                histogram=hist,
            )
        )
    total = LayerStats(
        name="total",
        quantizer="+".join(sorted({s.quantizer for s in layers})) or "none",
        n_weights=sum(s.n_weights for s in layers),
        n_neg=sum(s.n_neg for s in layers),
        n_zero=sum(s.n_zero for s in layers),
        n_pos=sum(s.n_pos for s in layers),
        histogram=(total_hist.tolist(), edges.tolist()) if histogram else None,
    )
    return TernaryStats(layers=layers, total=total)


def _history_dict(history) -> Mapping[str, Sequence[float]]:
    if isinstance(history, tf.keras.callbacks.History):
        return history.history
    if isinstance(history, Mapping):
        return history
    raise TypeError(f"expected a keras History or a dict of lists, got {type(history).__name__}")


def training_speed(history, monitor: str = "val_accuracy") -> int:
    """Sec. 4.2's training speed: the 1-based epoch of the peak of ``monitor``.

    ``history`` is a ``tf.keras.callbacks.History`` or a dict of per-epoch lists (e.g.
    ``History.history`` or a loaded CSV log). Ties go to the earliest epoch; NaNs are
    ignored. If the History came from ``fit(initial_epoch=k)``, its ``epoch`` list is used
    to report the epoch number, not the position.
    """
    values = _history_dict(history).get(monitor)
    if not values:
        raise ValueError(f"history has no {monitor!r} values (did fit() get validation_data?)")
    arr = np.asarray(values, dtype=np.float64)
    if np.all(np.isnan(arr)):
        raise ValueError(f"every {monitor!r} value is NaN")
    best = int(np.nanargmax(arr))
    epochs = getattr(history, "epoch", None)
    if isinstance(epochs, list) and len(epochs) == len(arr):
        return int(epochs[best]) + 1
    return best + 1
