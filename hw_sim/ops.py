"""The table of IR op kinds: everything hw_sim knows about each kind, in one place.

:data:`OPS` maps every op kind of :mod:`hw_sim.ir` to an :class:`OpSpec` with

* ``execute(op, inputs)``: the float32 numpy forward pass of the kind (``(B, ...)`` arrays;
  the emulator runs non-compute ops with it; for conv2d / dense it is the float reference
  the integer kernels of :mod:`hw_sim.kernels` are checked against);
* ``aux_actions(op, in_shapes)``: the fp32 work the counting models charge as ``aux``
  (``{action: count}`` per image; a comparison costs an add);
* ``out_precision(op, in_precisions)``: the precision of the tensor the op produces;
* ``check(op)`` / ``check_inputs(op, in_shapes)``: the kind's validation of an op and of the
  shapes it reads (raising :class:`hw_sim.errors.HwSimError`);
* flags: ``compute`` (a multiply-accumulate layer with a kernel), ``elementwise`` (one input,
  per element: fusable into its producer, see :func:`hw_sim.memory.fused_tensors`) and
  ``passes_precision`` (the op only moves or selects its input's values, so its output has
  the input's precision and range).

Adding an op kind is one :class:`OpSpec` here; every behaviour is a required field, so a
kind missing one fails at import, not in the middle of a profile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from hw_sim.errors import HwSimError
from hw_sim.kernels.conv import patches, valid_taps
from keras_ternary.contract import activations, affine
from keras_ternary.contract.errors import ContractError

__all__ = [
    "ACTIVATION_COST",
    "OPS",
    "OpSpec",
    "activation",
    "batchnorm",
    "broadcast_shape",
    "spec",
    "tensor_precision",
]

Shape = tuple[int, ...]
#: A :class:`hw_sim.ir.Op`; not imported, since :mod:`hw_sim.ir` validates its ops with this
#: table (hw_sim stays acyclic).
Op = Any

#: Activation kind -> (fp32 mults, fp32 adds/compares) per element.
ACTIVATION_COST: dict[str, tuple[int, int]] = {
    "linear": (0, 0),
    "relu": (0, 1),
    "relu6": (0, 2),
    "hard_tanh": (0, 2),
    # assumption: a piecewise-polynomial evaluation of 4 multiply-adds
    "tanh": (4, 4),
    "sigmoid": (4, 4),
    "softmax": (5, 5),  # exp as above, plus a sum and a normalising multiply
}

_INTEGER = ("ternary", "binary", "int8")


@dataclass(frozen=True)
class OpSpec:
    """The behaviour of one op kind (see the module docstring)."""

    kind: str
    execute: Callable[[Op, list[np.ndarray]], np.ndarray]
    aux_actions: Callable[[Op, list[Shape]], dict[str, int]]
    out_precision: Callable[[Op, list[str]], str]
    check: Callable[[Op], None]
    check_inputs: Callable[[Op, list[Shape]], None]
    compute: bool
    elementwise: bool
    passes_precision: bool

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "bool" and not isinstance(value, bool):
                raise HwSimError(f"op kind {self.kind!r}: {f.name} must be True or False")
            if f.name not in ("kind",) and f.type != "bool" and not callable(value):
                raise HwSimError(f"op kind {self.kind!r}: behaviour {f.name!r} is missing")


# ----------------------------------------------------------------------------- helpers
def _elements(shape: Shape) -> int:
    return int(np.prod(shape, dtype=np.int64)) if shape else 1


def _fail(op: Op, why: str) -> None:
    raise HwSimError(f"op {op.name!r} ({op.kind}): {why}")


def _nothing(op: Op, *_) -> None:
    """No kind-specific rule."""


def _no_aux(op: Op, in_shapes: list[Shape]) -> dict[str, int]:
    return {}


def _first(op: Op, in_precisions: list[str]) -> str:
    return in_precisions[0]


def _float(op: Op, in_precisions: list[str]) -> str:
    return "float32"


def _common(op: Op, in_precisions: list[str]) -> str:
    """The inputs' precision when they all agree, else float32."""
    return in_precisions[0] if len(set(in_precisions)) == 1 else "float32"


def _int32_if_all(op: Op, in_precisions: list[str]) -> str:
    return "int32" if all(p == "int32" for p in in_precisions) else "float32"


def _count_inputs(n: int) -> Callable[[Op], None]:
    def check(op: Op) -> None:
        if len(op.inputs) != n:
            _fail(op, f"expects {n} input(s), got {len(op.inputs)}")

    return check


def broadcast_shape(in_shapes: list[Shape]) -> Shape | None:
    """The shape numpy-style broadcasting gives ``in_shapes`` (per sample, no batch axis;
    shapes aligned at their last axis, size-1 axes stretched), None if they do not broadcast.

    Keras' merge layers (``Multiply()([x, s])``) and TensorFlow's ``x * s`` follow this rule:
    an attention tensor ``(1, 1, C)`` scales every pixel of ``(H, W, C)``.
    """
    try:
        return tuple(int(d) for d in np.broadcast_shapes(*in_shapes))
    except ValueError:
        return None


def _broadcasts(op: Op, in_shapes: list[Shape]) -> None:
    if broadcast_shape(in_shapes) != op.output_shape:
        _fail(op, f"inputs of shapes {in_shapes} do not broadcast to the output {op.output_shape}")


def _aligned(op: Op, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Batched inputs as float32 of the output's rank (``(B, C)`` -> ``(B, 1, 1, C)``), so
    that numpy broadcasts them per sample as :func:`broadcast_shape` does."""
    rank = len(op.output_shape) + 1
    return [
        x.astype(np.float32, copy=False).reshape(x.shape[0], *(1,) * (rank - x.ndim), *x.shape[1:])
        for x in inputs
    ]


# ----------------------------------------------------------------------------- float ops
def activation(kind: str, x: np.ndarray) -> np.ndarray:
    """Element-wise activation in float32 (:mod:`keras_ternary.contract.activations`)."""
    try:
        return activations.apply(kind, x)
    except ContractError as exc:
        raise HwSimError(str(exc)) from None


def batchnorm(op: Op, x: np.ndarray) -> np.ndarray:
    """Inference batch-norm as a per-channel affine: ``x·s + (β - μ·s)``, ``s = γ/√(σ²+ε)``."""
    scale, shift = affine.batchnorm_affine(
        op.gamma, op.beta, op.moving_mean, op.moving_variance, op.epsilon, np.float32
    )
    return (x * scale + shift).astype(np.float32, copy=False)


def _fed(op: Op, inputs: list[np.ndarray]) -> np.ndarray:
    raise HwSimError(f"op {op.name!r}: an input is fed, not executed")


def _real_kernel(op: Op, dtype) -> np.ndarray:
    w = op.weights.astype(dtype)
    return w if op.weight_scale is None else w * op.weight_scale.astype(dtype)


def _conv2d(op: Op, inputs: list[np.ndarray]) -> np.ndarray:
    """Float reference of a (grouped) conv2d: im2col per group, kernel times scale, bias."""
    x = inputs[0]
    dtype = np.result_type(x.dtype, np.float32)
    w = _real_kernel(op, dtype)
    kh, kw, cg, cout = w.shape
    cols = patches(x.astype(dtype), (kh, kw), op.strides, op.padding, dtype.type(op.pad_value))
    per_group = cout // op.groups
    y = np.concatenate(
        [
            np.einsum(
                "bhwijc,ijcn->bhwn",
                cols[..., g * cg : (g + 1) * cg],
                w[..., g * per_group : (g + 1) * per_group],
            )
            for g in range(op.groups)
        ],
        axis=-1,
    )
    if op.bias is not None:
        y = y + op.bias.astype(dtype)
    return activation(op.activation, y).astype(dtype, copy=False)


def _dense(op: Op, inputs: list[np.ndarray]) -> np.ndarray:
    x = inputs[0]
    dtype = np.result_type(x.dtype, np.float32)
    y = x.astype(dtype) @ _real_kernel(op, dtype)
    if op.bias is not None:
        y = y + op.bias.astype(dtype)
    return activation(op.activation, y).astype(dtype, copy=False)


def _activation(op: Op, inputs: list[np.ndarray]) -> np.ndarray:
    return activation(op.activation, inputs[0])


def _add(op: Op, inputs: list[np.ndarray]) -> np.ndarray:
    first, *others = _aligned(op, inputs)
    y = first.copy()
    for other in others:
        y = y + other
    return y


def _multiply(op: Op, inputs: list[np.ndarray]) -> np.ndarray:
    x, y = _aligned(op, inputs)
    return x * y


def _subtract(op: Op, inputs: list[np.ndarray]) -> np.ndarray:
    x, y = _aligned(op, inputs)
    return x - y


def _concat(op: Op, inputs: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([x.astype(np.float32, copy=False) for x in inputs], axis=-1)


def _pad(op: Op, inputs: list[np.ndarray]) -> np.ndarray:
    top, bottom, left, right = op.padding
    x = inputs[0].astype(np.float32, copy=False)
    widths = [(0, 0), (top, bottom), (left, right)] + [(0, 0)] * (x.ndim - 3)
    return np.pad(x, widths, constant_values=np.float32(op.pad_value))


def _reshape(op: Op, inputs: list[np.ndarray]) -> np.ndarray:
    return inputs[0].reshape(inputs[0].shape[0], *op.output_shape)


def _flatten(op: Op, inputs: list[np.ndarray]) -> np.ndarray:
    return inputs[0].reshape(inputs[0].shape[0], -1)


def _alpha(op: Op) -> np.ndarray:
    return np.asarray(op.extra["alpha"], dtype=np.float32)


def _prelu(op: Op, inputs: list[np.ndarray]) -> np.ndarray:
    x = inputs[0].astype(np.float32, copy=False)
    return np.maximum(x, 0) + _alpha(op) * np.minimum(x, 0)


def _window(op: Op, inputs: list[np.ndarray]) -> np.ndarray:
    """max / average pooling over ``pool_size`` windows (padding never counts as a value)."""
    x = inputs[0]
    fill = -np.inf if op.kind == "maxpool" else 0.0
    cols = patches(x.astype(np.float32), op.pool_size, op.strides, op.padding, np.float32(fill))
    if op.kind == "maxpool":
        return cols.max(axis=(3, 4))
    total = cols.sum(axis=(3, 4), dtype=np.float32)
    if op.extra.get("count_include_pad", False):
        return total / np.float32(op.pool_size[0] * op.pool_size[1])
    valid = valid_taps(x.shape[1:3], op.pool_size, op.strides, op.padding).sum(axis=(2, 3))
    return total / valid[None, :, :, None].astype(np.float32)


def _global_avgpool(op: Op, inputs: list[np.ndarray]) -> np.ndarray:
    return inputs[0].mean(axis=(1, 2), dtype=np.float32)


def _global_maxpool(op: Op, inputs: list[np.ndarray]) -> np.ndarray:
    return inputs[0].max(axis=(1, 2))


# ----------------------------------------------------------------------------- aux work
def _activation_aux(op: Op, in_shapes: list[Shape]) -> dict[str, int]:
    """Fused (conv2d / dense) or stand-alone activation: ``ACTIVATION_COST`` per element."""
    mults, adds = ACTIVATION_COST[op.activation]
    out = _elements(op.output_shape)
    return {"fp32_mult": mults * out, "fp32_add": adds * out}


def _per_element(mults: int, adds: int) -> Callable[[Op, list[Shape]], dict[str, int]]:
    def aux(op: Op, in_shapes: list[Shape]) -> dict[str, int]:
        out = _elements(op.output_shape)
        return {"fp32_mult": mults * out, "fp32_add": adds * out}

    return aux


def _add_aux(op: Op, in_shapes: list[Shape]) -> dict[str, int]:
    """(inputs - 1) adds per *output* element: a broadcast operand is re-read, not re-added."""
    return {"fp32_add": (len(op.inputs) - 1) * _elements(op.output_shape)}


def _pool_aux(window: Callable[[Op, list[Shape]], int], average: bool):
    """``window - 1`` comparisons / adds per output, plus one mult for an average."""

    def aux(op: Op, in_shapes: list[Shape]) -> dict[str, int]:
        out = _elements(op.output_shape)
        return {"fp32_add": (window(op, in_shapes) - 1) * out, "fp32_mult": out * average}

    return aux


def _pool_window(op: Op, in_shapes: list[Shape]) -> int:
    return op.pool_size[0] * op.pool_size[1]


def _global_window(op: Op, in_shapes: list[Shape]) -> int:
    return in_shapes[0][0] * in_shapes[0][1]


# ----------------------------------------------------------------------------- precisions
def _compute_precision(op: Op, in_precisions: list[str]) -> str:
    """int32 when integer operands meet an exact epilogue (no scale, bias, or non-ReLU)."""
    integer_in = op.act_precision in _INTEGER
    integer_w = op.weight_precision in _INTEGER
    exact = op.bias is None and op.weight_scale is None and op.activation in ("linear", "relu")
    return "int32" if integer_in and integer_w and exact else "float32"


def _activation_precision(op: Op, in_precisions: list[str]) -> str:
    return in_precisions[0] if op.activation in ("linear", "relu") else "float32"


def _pad_precision(op: Op, in_precisions: list[str]) -> str:
    """The input's precision if it can hold ``pad_value`` (a binary tensor padded with 0 is
    ternary), else float32."""
    p, v = in_precisions[0], op.pad_value
    if p == "float32" or (p in ("int32", "int8") and float(v).is_integer()):
        return p
    if p in ("ternary", "binary") and v in (-1.0, 1.0):
        return p
    return "ternary" if p in ("ternary", "binary") and v == 0 else "float32"


# ----------------------------------------------------------------------------- checks
def _check_kernel(op: Op) -> None:
    if op.weights is None:
        _fail(op, "needs weights")
    ndim = 4 if op.kind == "conv2d" else 2
    if op.weights.ndim != ndim:
        _fail(op, f"kernel must have {ndim} dimensions, got shape {op.weights.shape}")
    if op.groups < 1 or op.out_channels % op.groups:
        _fail(op, f"groups={op.groups} must divide the {op.out_channels} output channels")
    if op.kind == "dense" and op.groups != 1:
        _fail(op, "a dense layer has no groups")
    if op.output_shape[-1] != op.out_channels:
        _fail(op, f"output shape {op.output_shape} does not end in {op.out_channels} channels")


def _check_conv_input(op: Op, in_shapes: list[Shape]) -> None:
    c = in_shapes[0][-1]
    if c != op.groups * op.in_channels:
        _fail(op, f"reads {c} channels, kernel expects {op.groups} x {op.in_channels}")


def _check_dense_input(op: Op, in_shapes: list[Shape]) -> None:
    if in_shapes[0] != (op.in_channels,):
        _fail(op, f"reads shape {in_shapes[0]}, kernel expects ({op.in_channels},)")


def _check_activation(op: Op) -> None:
    if op.activation not in activations.ACTIVATIONS:
        _fail(op, f"unsupported activation {op.activation!r}")


def _check_binary(op: Op) -> None:
    _count_inputs(2)(op)


def _check_pad(op: Op) -> None:
    _count_inputs(1)(op)
    if len(op.padding) != 4 or min(op.padding) < 0:
        _fail(op, f"padding {op.padding} is not 4 amounts >= 0 (top, bottom, left, right)")


def _check_pad_input(op: Op, in_shapes: list[Shape]) -> None:
    h, w, *rest = in_shapes[0]
    top, bottom, left, right = op.padding
    want = (h + top + bottom, w + left + right, *rest)
    if op.output_shape != want:
        _fail(op, f"padding {in_shapes[0]} by {op.padding} gives {want}, not {op.output_shape}")


def _check_concat_input(op: Op, in_shapes: list[Shape]) -> None:
    if (
        len({s[:-1] for s in in_shapes}) != 1
        or sum(s[-1] for s in in_shapes) != (op.output_shape[-1])
    ):
        _fail(op, f"cannot concatenate {in_shapes} on the channel axis into {op.output_shape}")


def _check_same_size(op: Op, in_shapes: list[Shape]) -> None:
    if _elements(in_shapes[0]) != _elements(op.output_shape):
        _fail(op, f"cannot reshape {in_shapes[0]} to {op.output_shape}")


def _check_prelu(op: Op) -> None:
    if "alpha" not in op.extra:
        _fail(op, 'needs extra["alpha"] (a float, or an array broadcastable to the input)')


# ----------------------------------------------------------------------------- the table
def _spec(
    kind: str,
    execute,
    aux=_no_aux,
    precision=None,
    check=_nothing,
    check_inputs=_nothing,
    compute: bool = False,
    elementwise: bool = False,
    passes: bool = False,
) -> OpSpec:
    """An :class:`OpSpec`; the output precision defaults to the input's for ops that only move
    values (``passes``), else float32."""
    if precision is None:
        precision = _first if passes else _float
    return OpSpec(kind, execute, aux, precision, check, check_inputs, compute, elementwise, passes)


_conv_kw = {"aux": _activation_aux, "precision": _compute_precision, "check": _check_kernel}

#: Op kind -> its behaviour (the order is :data:`hw_sim.ir.OP_KINDS`).
OPS: dict[str, OpSpec] = {
    s.kind: s
    for s in (
        _spec("input", _fed, check=_count_inputs(0)),
        _spec("conv2d", _conv2d, check_inputs=_check_conv_input, compute=True, **_conv_kw),
        _spec("dense", _dense, check_inputs=_check_dense_input, compute=True, **_conv_kw),
        _spec(
            "batchnorm", lambda op, xs: batchnorm(op, xs[0]), _per_element(1, 1), elementwise=True
        ),
        _spec(
            "activation",
            _activation,
            _activation_aux,
            _activation_precision,
            check=_check_activation,
            elementwise=True,
        ),
        # add / multiply / subtract broadcast their inputs (numpy's rule, per sample); the
        # work is per output element, the memory model reads each input tensor once
        _spec("add", _add, _add_aux, _int32_if_all, check_inputs=_broadcasts),
        _spec("maxpool", _window, _pool_aux(_pool_window, False), passes=True),
        _spec("avgpool", _window, _pool_aux(_pool_window, True)),
        _spec("global_avgpool", _global_avgpool, _pool_aux(_global_window, True)),
        _spec("global_maxpool", _global_maxpool, _pool_aux(_global_window, False), passes=True),
        _spec("flatten", _flatten, check_inputs=_check_same_size, passes=True),
        _spec(
            "pad", _pad, precision=_pad_precision, check=_check_pad, check_inputs=_check_pad_input
        ),
        _spec("concat", _concat, precision=_common, check_inputs=_check_concat_input),
        # product of two int32 accumulators may overflow 32 bits: stored as float32
        _spec(
            "multiply",
            _multiply,
            _per_element(1, 0),
            check=_check_binary,
            check_inputs=_broadcasts,
        ),
        _spec(
            "subtract",
            _subtract,
            _per_element(0, 1),
            _int32_if_all,
            check=_check_binary,
            check_inputs=_broadcasts,
        ),
        _spec("reshape", _reshape, check_inputs=_check_same_size, passes=True),
        # max(x, 0) + alpha·min(x, 0): one compare and one multiply per element
        _spec("prelu", _prelu, _per_element(1, 1), check=_check_prelu, elementwise=True),
    )
}


def spec(kind: str) -> OpSpec:
    """The :class:`OpSpec` of ``kind``; an unknown kind is an error naming the known ones."""
    try:
        return OPS[kind]
    except KeyError:
        raise HwSimError(f"unknown op kind {kind!r}; known: {', '.join(OPS)}") from None


def tensor_precision(op: Op, inputs: list[str], precisions: dict[str, str]) -> str:
    """Precision of the tensor ``op`` produces, given its input tensors' precisions.

    Shared by both loaders so they give the same IR precisions.
    """
    if op.kind == "input":
        return op.out_precision
    return spec(op.kind).out_precision(op, [precisions[n] for n in inputs])
