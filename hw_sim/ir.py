"""Framework-free intermediate representation (IR) of a quantized network.

A :class:`Graph` is an ordered (topological) list of :class:`Op`. Every op names its
input tensors (a tensor is named after the op that produces it), knows its output shape
(without the batch dimension, channels last), and carries everything needed to *execute*
it, not only to count it: quantized weights, per-channel scales, biases, batch-norm
statistics, activation kind and the input quantizer with its threshold Δ.

Conventions
-----------
* Shapes are channels-last without batch: conv tensors ``(H, W, C)``, dense ``(N,)``.
* Conv kernels are ``(kh, kw, c_in / groups, c_out)`` (HWIO), dense kernels ``(n_in, n_out)``.
  A grouped conv2d's group ``g`` reads input channels ``[g·c_in/groups, (g+1)·c_in/groups)``
  and writes output channels ``[g·c_out/groups, (g+1)·c_out/groups)``; a depthwise
  convolution with depth multiplier ``m`` is ``groups = c_in``, kernel ``(kh, kw, 1, c_in·m)``
  (output channel ``c·m + j`` reads input channel ``c``, TensorFlow's order). A separable
  convolution is two ops: the depthwise one, then a 1×1 conv2d.
* Ternary / binary kernels are ``int8`` arrays of ``{-1, 0, +1}`` / ``{-1, +1}``; the real
  kernel is ``weights * weight_scale`` (``weight_scale`` per output channel, or ``None``
  meaning 1). Other kernels are ``float32`` (``weight_precision == "float32"``).
* Padding is explicit: ``(top, bottom, left, right)`` amounts, computed with TensorFlow's
  ``'same'`` rule by :func:`same_padding`; padded positions hold ``pad_value``, inserted
  *after* the input quantizer (larq's ``QuantConv2D`` quantizes, then pads).
* ``act_precision`` is the precision of the values the op actually consumes, i.e. after its
  ``input_quantizer`` if it has one; ``out_precision`` is that of the tensor it produces.

Only numpy and the TensorFlow-free :mod:`keras_ternary.contract` are imported here;
framework loaders live in :mod:`hw_sim.loaders`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from hw_sim.errors import HwSimError
from hw_sim.ops import OPS, spec
from keras_ternary.contract import activations
from keras_ternary.contract.geometry import conv_output_size, same_padding

__all__ = [
    "ACTIVATIONS",
    "OP_KINDS",
    "PRECISIONS",
    "Graph",
    "Op",
    "Quantizer",
    "bits_of",
    "conv_output_size",
    "same_padding",
]

#: Precision name -> bits per stored value.
PRECISIONS: dict[str, int] = {"float32": 32, "int32": 32, "int8": 8, "ternary": 2, "binary": 1}

#: Op kinds the IR represents; their behaviour is the table :data:`hw_sim.ops.OPS`.
OP_KINDS = tuple(OPS)

#: Element-wise activation kinds (:data:`keras_ternary.contract.activations.ACTIVATIONS`).
ACTIVATIONS = tuple(activations.ACTIVATIONS)

#: Quantizer kinds and the precision of their output values.
QUANTIZER_PRECISION: dict[str, str] = {
    "ternary": "ternary",  # keras_ternary.Ternary, Eq. 5: 0 where |x| <= Δ
    "ste_tern": "ternary",  # larq SteTern: 0 where |x| < Δ (|x| == Δ gives ±1)
    "sign": "binary",  # larq SteSign / ApproxSign / SwishSign / keras_ternary.Binary: sign, 0 -> +1
}


def bits_of(precision: str) -> int:
    """Bits per stored value of a precision name (``"ternary"`` -> 2)."""
    try:
        return PRECISIONS[precision]
    except KeyError:
        raise HwSimError(f"unknown precision {precision!r}; known: {sorted(PRECISIONS)}") from None


@dataclass(frozen=True)
class Quantizer:
    """A quantizer as data.

    Attributes:
        kind: ``"ternary"`` (Eq. 5), ``"ste_tern"`` (larq) or ``"sign"``.
        delta: threshold Δ for the ternary kinds (``None`` for ``"sign"``).
        twn: larq ``SteTern(ternary_weight_networks=True)``: Δ = 0.7·mean|x| of the input.
        clip_value: the training-time gradient clip (kept for reference; no forward effect).
    """

    kind: str
    delta: float | None = None
    twn: bool = False
    clip_value: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in QUANTIZER_PRECISION:
            raise HwSimError(f"unknown quantizer kind {self.kind!r}")

    @property
    def precision(self) -> str:
        """Precision of the quantizer's output values."""
        return QUANTIZER_PRECISION[self.kind]


@dataclass
class Op:
    """One node of the graph; fields that do not apply to its ``kind`` stay ``None``."""

    name: str
    kind: str
    inputs: list[str]
    output_shape: tuple[int, ...]
    act_precision: str = "float32"
    out_precision: str = "float32"
    source_type: str = ""  # e.g. the Keras layer class it came from
    # conv2d / dense
    weights: np.ndarray | None = None
    weight_precision: str | None = None
    weight_scale: np.ndarray | None = None
    bias: np.ndarray | None = None
    kernel_quantizer: Quantizer | None = None
    input_quantizer: Quantizer | None = None
    strides: tuple[int, int] = (1, 1)
    groups: int = 1  # conv2d: input channels split in groups; depthwise: groups == c_in
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    pad_value: float = 0.0
    activation: str = "linear"  # fused activation of conv2d / dense, or the activation op's kind
    # batchnorm (over the last axis)
    gamma: np.ndarray | None = None
    beta: np.ndarray | None = None
    moving_mean: np.ndarray | None = None
    moving_variance: np.ndarray | None = None
    epsilon: float = 1e-3
    # pooling
    pool_size: tuple[int, int] = (1, 1)
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in OPS:
            raise HwSimError(f"op {self.name!r}: unknown kind {self.kind!r}")
        self.output_shape = tuple(int(d) for d in self.output_shape)
        for precision in (self.act_precision, self.out_precision, self.weight_precision):
            if precision is not None and precision not in PRECISIONS:
                raise HwSimError(f"op {self.name!r}: unknown precision {precision!r}")
        spec(self.kind).check(self)

    @property
    def is_compute(self) -> bool:
        """True for the multiply-accumulate ops with a kernel (conv2d, dense)."""
        return OPS[self.kind].compute

    @property
    def is_quantized(self) -> bool:
        """True if the kernel is ternary or binary."""
        return self.weight_precision in ("ternary", "binary")

    @property
    def kernel_size(self) -> tuple[int, int]:
        """``(kh, kw)`` of a conv2d, ``(1, 1)`` for a dense."""
        if self.kind == "conv2d":
            return int(self.weights.shape[0]), int(self.weights.shape[1])
        return 1, 1

    @property
    def in_channels(self) -> int:
        """Input channels per group (conv; all of them unless grouped) or input features."""
        return int(self.weights.shape[-2])

    @property
    def out_channels(self) -> int:
        """Output channels (conv) or units (dense)."""
        return int(self.weights.shape[-1])

    @property
    def is_depthwise(self) -> bool:
        """True for a conv2d with one input channel per group (Keras DepthwiseConv2D)."""
        return self.kind == "conv2d" and self.groups > 1 and self.in_channels == 1

    @property
    def fan_in(self) -> int:
        """Length K of each output's inner product: kh·kw·c_in (conv) or n_in (dense)."""
        kh, kw = self.kernel_size
        return kh * kw * self.in_channels

    @property
    def output_positions(self) -> int:
        """Output pixels H_out·W_out (conv), 1 (dense)."""
        if self.kind == "conv2d":
            return int(self.output_shape[0] * self.output_shape[1])
        return 1

    @property
    def n_weights(self) -> int:
        """Number of kernel weights (bias excluded)."""
        return 0 if self.weights is None else int(self.weights.size)

    @property
    def n_zero_weights(self) -> int:
        """Number of kernel weights equal to zero."""
        return 0 if self.weights is None else int(np.count_nonzero(self.weights == 0))


@dataclass
class Graph:
    """An ordered op graph: every op appears after the ops producing its inputs."""

    name: str
    ops: list[Op]
    outputs: list[str]
    source: str = ""

    def __post_init__(self) -> None:
        self.validate()

    def __iter__(self) -> Iterator[Op]:
        return iter(self.ops)

    def __len__(self) -> int:
        return len(self.ops)

    def validate(self) -> None:
        """Check names are unique, inputs come earlier, outputs exist, and each op's kind
        accepts the shapes it reads (:attr:`hw_sim.ops.OpSpec.check_inputs`)."""
        seen: set[str] = set()
        self._by_name: dict[str, Op] = {}
        for op in self.ops:
            if op.name in seen:
                raise HwSimError(f"duplicate op name {op.name!r}")
            for name in op.inputs:
                if name not in seen:
                    raise HwSimError(f"op {op.name!r} reads {name!r}, which no earlier op makes")
            OPS[op.kind].check_inputs(op, [self._by_name[n].output_shape for n in op.inputs])
            seen.add(op.name)
            self._by_name[op.name] = op
        for name in self.outputs:
            if name not in seen:
                raise HwSimError(f"graph output {name!r} is not produced by any op")

    def op(self, name: str) -> Op:
        """The op producing tensor ``name``."""
        return self._by_name[name]

    def shape_of(self, name: str) -> tuple[int, ...]:
        """Shape of tensor ``name``."""
        return self.op(name).output_shape

    def consumers(self, name: str) -> list[Op]:
        """Ops that read tensor ``name``."""
        return [op for op in self.ops if name in op.inputs]

    @property
    def inputs(self) -> list[Op]:
        """The graph's input ops."""
        return [op for op in self.ops if op.kind == "input"]

    @property
    def compute_ops(self) -> list[Op]:
        """conv2d and dense ops, in order."""
        return [op for op in self.ops if op.is_compute]
