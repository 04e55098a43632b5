"""TFLite (.tflite) loader: a model exported by ``keras_ternary.export.to_tflite`` -> IR.

The flatbuffer is read directly (LiteRT's generated schema; no interpreter, no
TensorFlow). Convolution / fully-connected weights are dequantized (int8 codes × per-channel
scale) and split into a ternary (or binary) sign pattern and a per-output-channel scale;
other kernels are kept at their precision (the source layer's, float32, with our metadata;
else as stored: int8 or float32). Each TFLite operator has one converter in
:data:`CONVERTERS` (registered with :func:`tflite_op`); the input quantizers the exporter
writes (ternary, SteTern, sign patterns of ABS / SIGN / GREATER / SELECT_V2) become the
``input_quantizer`` of the convolution / dense that reads them.

The exporter folds batch-norm into the preceding convolution and fuses activations into
convolutions and additions; it records the source model's layer names, kernel quantizers
and folded batch-norms as metadata (``keras_ternary.export``), one entry per kernel: a
separable convolution (``DEPTHWISE_CONV_2D`` then a 1×1 ``CONV_2D`` in the file) has
``<name>/depthwise`` and ``<name>``, the ops the Keras loader makes of it. With that metadata the
loader *unfolds* the graph again: a folded convolution becomes the ternary convolution
followed by a ``batchnorm`` op (γ = channel scale, β = folded bias, μ = 0,
σ² = 1 − ε, which computes the same function), a fused activation becomes an
``activation`` op, and a per-channel ``MUL``/``ADD`` by constants (a kept batch-norm)
becomes a ``batchnorm`` op. A batch-norm the exporter pushed back into the branches of a
residual sum (metadata ``residual``) is divided out of the branch convolutions again, its
depthwise scale and range clips are read as identities, and it is re-emitted after the
``ADD`` (or after the ``MEAN`` it followed). The IR then has the same ops, in the same
order of kinds, as the one :mod:`hw_sim.loaders.keras` builds from the source .h5, so the
analytic counts agree. Activations are taken at the source model's precision (float32
unless an input quantizer says otherwise), not at the int8 storage precision of this
deployment.

Without the metadata (a .tflite from elsewhere) the folded form is kept: per-channel
``weight_scale`` and ``bias`` on the convolution.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from hw_sim.errors import HwSimError
from hw_sim.ir import Graph, Op, Quantizer
from hw_sim.ops import broadcast_shape, tensor_precision
from keras_ternary.contract import activations, affine
from keras_ternary.contract.errors import ContractError
from keras_ternary.contract.geometry import output_hw, window_padding
from keras_ternary.contract.metadata import METADATA_NAME, ExportMetadata, LayerEntry
from keras_ternary.contract.ternary import is_unit_scale, split_kernel
from keras_ternary.contract.tflite_reader import TFLiteModel

__all__ = ["CONVERTERS", "METADATA_NAME", "SUFFIXES", "load", "tflite_op"]

SUFFIXES = (".tflite",)


class _Reader:
    """The contract's :class:`TFLiteModel` with this file's path and hw_sim's view of it."""

    def __init__(self, buf: bytes, path: str):
        self.path = path
        self.model = TFLiteModel(buf)

    def metadata(self) -> ExportMetadata | None:
        raw = self.model.metadata(METADATA_NAME)
        if raw is None:
            return None
        try:
            return ExportMetadata.from_json(raw)
        except ContractError as exc:
            raise HwSimError(f"{self.path}: {exc}") from None

    def name(self, t: int) -> str:
        return self.model.tensor(t).name

    def shape(self, t: int) -> tuple[int, ...]:
        return self.model.tensor(t).shape

    def constant(self, t: int) -> np.ndarray | None:
        """Dequantized float64 value of a constant tensor (None if not constant)."""
        return self.model.dequantized(t)

    def ops(self):
        for op in self.model.operators():
            yield op.kind, op.options, list(op.inputs), list(op.outputs)

    def padding(self, opts, in_shape, window: tuple[int, int], strides) -> tuple[int, ...]:
        """Explicit ``(top, bottom, left, right)`` padding of a conv / pooling operator."""
        name = self.model.enum_name("Padding", opts.padding).lower()
        return window_padding(name, in_shape[:2], window, strides)

    def fused(self, opts) -> str | None:
        """The fused activation of an operator (None: not one the IR knows)."""
        code = opts.fusedActivationFunction if opts is not None else 0
        return activations.from_tflite_fused(self.model.enum_name("ActivationFunctionType", code))


#: Name parts of TFLite tensors that never name a layer (graph plumbing).
_PLUMBING = ("StatefulPartitionedCall", "serving_default", "arith.constant", "tfl.", "Identity")


def _layer_names(tensor_name: str) -> list[str]:
    """The Keras layers a (fused) tensor name mentions, first first.

    ``model/re_lu/Relu;model/conv2d/BiasAdd`` -> ``["re_lu", "conv2d"]``; plumbing names
    (``StatefulPartitionedCall:0``, ``tfl.quantize``, ``arith.constant``) give none.
    """
    names = []
    for part in tensor_name.split(";"):
        part = part.split(":")[0]
        if not part or part.startswith(_PLUMBING):
            continue
        segments = part.split("/")
        name = segments[1] if len(segments) >= 3 else segments[0]
        if name not in names:
            names.append(name)
    return names


def _layer_name(tensor_name: str, fallback: str) -> str:
    """The first layer a tensor name mentions, else ``fallback``."""
    return next(iter(_layer_names(tensor_name)), fallback)


class _Builder:
    """Turns TFLite operators into IR ops, unfolding what the exporter folded."""

    def __init__(self, reader: _Reader, meta: ExportMetadata | None):
        self.r, self.meta = reader, meta
        self.ops: list[Op] = []
        self.alias: dict[int, str] = {}  # tflite tensor -> IR op name
        self.precision: dict[str, str] = {}
        self.used: set[str] = set()
        layers = meta.layers if meta else []
        self.layers: dict[str, LayerEntry] = {entry.name: entry for entry in layers}
        self.layer_order = [entry.name for entry in layers]
        self.kept_bn = list(meta.batchnorms) if meta else []
        self.pending_mul: dict[int, tuple[np.ndarray, int]] = {}
        # batch-norms the exporter pushed back into residual branches: re-emitted after the
        # add (or its global pooling); their depthwise scales and range clips are identities
        residual = meta.residual if meta else []
        self.residual = {f.bn: f for f in residual}
        self.residual_identity = {
            name: f
            for f in residual
            for name in [*f.clips, *(layer for layer, kind in f.branches if kind == "scaled")]
        }
        self.branch_of: dict[int, dict] = {}  # tensor -> residual fold it is a branch of
        # tensors inside an input-quantizer pattern: tensor -> (what, IR source, ...)
        self.sym: dict[int, tuple] = {}

    # ------------------------------------------------------------------ helpers
    def _unique(self, name: str) -> str:
        base, k = name, 1
        while name in self.used:
            k += 1
            name = f"{base}_{k}"
        self.used.add(name)
        return name

    def emit(self, op: Op, output: int | None) -> str:
        op.name = self._unique(op.name)
        op.act_precision = self.precision[op.inputs[0]] if op.inputs else "float32"
        if op.input_quantizer is not None:
            op.act_precision = op.input_quantizer.precision
        if op.kind != "input":
            op.out_precision = tensor_precision(op, op.inputs, self.precision)
        self.ops.append(op)
        self.precision[op.name] = op.out_precision
        if output is not None:
            self.alias[output] = op.name
        return op.name

    def src(self, t: int) -> str:
        if t in self.sym:
            what = {
                "quantized": "an input quantizer and feeds a layer that is not a conv / dense",
                "shape": "a run-time shape and feeds a layer that is not a RESHAPE",
            }.get(self.sym[t][0], "part of an input quantizer and feeds another layer")
            raise HwSimError(
                f"{self.r.path}: tensor {self.r.name(t)!r} is {what}; hw_sim cannot represent that"
            )
        if t in self.pending_mul:
            self._emit_pending(t)
        if t not in self.alias:
            raise HwSimError(f"{self.r.path}: tensor {self.r.name(t)!r} is read before it is made")
        return self.alias[t]

    def shape(self, t: int) -> tuple[int, ...]:
        return self.r.shape(t)[1:]

    def unknown_pattern(self, kind: str, out: int) -> None:
        """Raise: ``kind`` here is not part of an input quantizer hw_sim knows."""
        name = _layer_name(self.r.name(out), kind.lower())
        raise HwSimError(
            f"{self.r.path}: layer {name!r}: TFLite operator {kind} is not part of an input "
            "quantizer hw_sim knows (ternary, SteTern or sign)"
        )

    def layer_for(self, tensor_names: list[str]) -> LayerEntry | None:
        for entry_name in self.layer_order:  # a separable layer's two entries: in order
            token = f"/{self.layers[entry_name].keras_layer}/"
            if any(token in n for n in tensor_names):
                self.layer_order.remove(entry_name)
                return self.layers[entry_name]
        return None

    def activation(self, kind: str, src: str, output: int, name: str) -> str:
        op = Op(name, "activation", [src], self.shape(output), source_type="fused", activation=kind)
        return self.emit(op, output)

    # ------------------------------------------------------------------ operators
    def quantized_src(self, t: int) -> tuple[str, Quantizer | None, tuple | None]:
        """The IR tensor a compute op reads, the input quantizer applied to it (if any), and
        ``(padding, pad_value, unpadded shape)`` if the quantized tensor was padded (PADV2)."""
        value = self.sym.get(t)
        if value is not None and value[0] == "quantized":
            return value[1], value[2], None
        if value is not None and value[0] == "padded":
            return value[1], value[2], value[3:]
        return self.src(t), None, None

    def compute_name(self, weights: int, output: int) -> str:
        """A compute layer's name without metadata: from its kernel's tensor, else its output."""
        names = _layer_names(self.r.name(weights)) or _layer_names(self.r.name(output))
        return names[0] if names else "layer"

    def _kernel(self, kind: str, opts, w: np.ndarray, in_shape, where: str):
        """TFLite kernel -> (IR kernel, strides, groups)."""
        if kind == "FULLY_CONNECTED":
            return w.T, (1, 1), 1  # (out, in) -> (in, out)
        if opts is None:
            raise HwSimError(f"{where}: no operator options")
        if opts.dilationHFactor != 1 or opts.dilationWFactor != 1:
            raise HwSimError(f"{where}: dilated convolutions are not supported")
        strides = (int(opts.strideH), int(opts.strideW))
        if kind == "CONV_2D":
            return np.transpose(w, (1, 2, 3, 0)), strides, 1  # OHWI -> HWIO
        # DEPTHWISE_CONV_2D: (1, kh, kw, c_in·m) -> (kh, kw, 1, c_in·m), groups = c_in
        groups = int(in_shape[-1])
        if w.shape[0] != 1 or w.shape[-1] % groups:
            raise HwSimError(f"{where}: depthwise kernel {w.shape} does not fit {groups} channels")
        return np.transpose(w, (1, 2, 0, 3)), strides, groups

    def compute(self, kind: str, opts, inputs: list[int], output: int) -> None:
        r = self.r
        layer = self.layer_for([r.name(inputs[1]), r.name(output)])
        name = layer.name if layer else self.compute_name(inputs[1], output)
        where = f"{r.path}: layer {name!r} ({kind})"
        w = r.constant(inputs[1])
        if w is None:
            raise HwSimError(f"{where}: weights are not a constant tensor")
        in_shape = self.shape(inputs[0])
        weights, strides, groups = self._kernel(kind, opts, w, in_shape, where)
        bias = r.constant(inputs[2]) if len(inputs) > 2 and inputs[2] >= 0 else None
        fused = r.fused(opts)
        if fused is None:
            raise HwSimError(f"{where}: unsupported fused activation")
        fold = self.residual.get((layer.residual_bn if layer else None) or "")
        if fold is not None:  # undo the residual batch-norm's scale (and shift) in this branch
            self.branch_of[output] = fold
            res_scale = np.asarray(fold.scale, np.float64)
            res_scale = np.where(res_scale != 0, res_scale, 1.0)
            weights = (weights / res_scale).astype(np.float32)
            bias = np.zeros(res_scale.size) if bias is None else np.asarray(bias, np.float64)
            if fold.shift_branch == layer.name:
                bias = bias - np.asarray(fold.shift, np.float64)
            bias = (bias / res_scale).astype(np.float32)
        quantized = layer is None or layer.quantizer is not None
        split = split_kernel(weights) if quantized else None
        if split is not None:
            levels, scale = split
            if layer and layer.folded_bn and layer.negative_channels:
                negative = np.asarray(layer.negative_channels, dtype=np.int64)
                levels[..., negative] *= -1  # recover t: the folded kernel is s_c · t, s_c < 0
                scale = scale.copy()
                scale[negative] *= -1
            precision = "ternary" if np.any(levels == 0) else "binary"
            if layer and layer.quantizer == "ternary":
                precision = "ternary"  # a ternary kernel that happens to have no zero
        elif layer is not None and layer.quantizer is not None:
            raise HwSimError(
                f"{where}: its {layer.quantizer} kernel is not a per-channel scale times "
                "{-1, 0, +1}"
            )
        else:  # a float / int8 kernel, at the source's precision (else as stored)
            levels, scale = np.asarray(weights, np.float32), np.ones(weights.shape[-1])
            stored = r.model.tensor(inputs[1]).dtype
            precision = "int8" if layer is None and stored == "INT8" else "float32"
        folded = layer is not None and layer.folded_bn
        has_bias = bias is not None and bool(np.any(bias))
        if layer is not None and layer.use_bias is not None:
            has_bias = layer.use_bias
        bias = np.zeros(levels.shape[-1]) if bias is None else bias
        unit_scale = bool(folded) or is_unit_scale(scale)
        in_name, input_quantizer, padded = self.quantized_src(inputs[0])
        common = dict(
            inputs=[in_name],
            output_shape=self.shape(output),
            source_type=f"tflite:{kind}",
            weights=levels,
            weight_precision=precision,
            weight_scale=None if unit_scale else scale,
            input_quantizer=input_quantizer,
            bias=None
            if not has_bias
            else (np.zeros_like(scale) if folded else bias.astype(np.float32)),
        )
        if kind == "FULLY_CONNECTED":
            if padded:
                raise HwSimError(f"{where}: reads a padded quantized tensor")
            current = self.emit(Op(name, "dense", **common), None)
        else:
            kernel = (int(levels.shape[0]), int(levels.shape[1]))
            pad = r.padding(opts, in_shape, kernel, strides)
            pad_value = 0.0
            if padded:  # a larq pad_values convolution: PADV2 of the quantized input, VALID
                if any(pad):
                    raise HwSimError(f"{where}: pads a padded quantized tensor again")
                pad, pad_value, in_shape = padded
            try:
                expect = output_hw(in_shape[:2], kernel, strides, pad)
            except ContractError:
                expect = None
            if expect != tuple(common["output_shape"][:2]):
                raise HwSimError(f"{where}: output size does not match its padding")
            op = Op(
                name,
                "conv2d",
                strides=strides,
                padding=pad,
                pad_value=pad_value,
                groups=groups,
                **common,
            )
            current = self.emit(op, None)
        if folded:
            eps = float(layer.bn_epsilon or 1e-3)
            beta = bias.astype(np.float32)
            current = self.emit(self._bn(folded, current, output, scale, beta, eps), None)
        if fused != "linear":
            current = self.activation(fused, current, output, self.act_name(output, name))
        self.alias[output] = current

    def act_name(self, output: int, producer: str) -> str:
        """A fused activation's name: the first layer its tensor names, else ``<op>_activation``."""
        names = _layer_names(self.r.name(output))
        if names and names[0] != producer:
            return names[0]
        return f"{producer}_activation"

    def _bn(self, name, src, output, scale, shift, eps) -> Op:
        """A batch-norm op computing ``scale·x + shift`` (μ = 0, σ² = 1 − ε)."""
        return Op(
            name,
            "batchnorm",
            [src],
            self.shape(output),
            source_type="tflite:batchnorm",
            epsilon=eps,
            **affine.batchnorm_from_affine(scale, shift, eps),
        )

    def affine(self, kind: str, op, inputs: list[int], output: int) -> None:
        """MUL / ADD with one constant operand: part of a kept batch-norm."""
        r = self.r
        consts = [r.constant(t) for t in inputs]
        var = [t for t, c in zip(inputs, consts, strict=True) if c is None]
        value = next(c for c in consts if c is not None)
        channels = self.shape(output)[-1]
        value = np.broadcast_to(np.asarray(value, np.float64).reshape(-1), (channels,))
        fused = r.fused(op) or "linear"
        if kind == "MUL" and fused == "linear":
            # wait for the ADD of the shift; emitted then as one batch-norm
            self.pending_mul[output] = (value, var[0])
            return
        if kind == "ADD" and var[0] in self.pending_mul:
            gamma, source = self.pending_mul.pop(var[0])
            beta = value
        elif kind == "ADD":
            gamma, source, beta = np.ones(channels), var[0], value
        else:
            gamma, source, beta = value, var[0], np.zeros(channels)
        name = self.bn_name([*inputs, output])
        current = self.emit(self._bn(name, self.src(source), output, gamma, beta, 1e-3), output)
        if fused != "linear":
            current = self.activation(fused, current, output, self.act_name(output, name))
        self.alias[output] = current

    def residual_bn(self, src: str, inputs: list[int], output: int, pooled: bool) -> str:
        """Re-emit the batch-norm whose branches meet in this ADD (or its pooling), if any.

        Returns the IR op that now stands for ``output``. A fold through a global pooling
        (``via``) is emitted after the MEAN: the ADD only passes it on.
        """
        fold = next((self.branch_of[t] for t in inputs if t in self.branch_of), None)
        if fold is None:
            return src
        if bool(fold.via) != pooled:
            if not pooled:
                self.branch_of[output] = fold
            return src
        return self.emit(
            self._bn(fold.bn, src, output, fold.scale, fold.shift, fold.epsilon), output
        )

    def residual_identity_of(self, output: int) -> dict | None:
        """The residual fold that added this op (a depthwise scale or a range clip), if any."""
        name = self.r.name(output)
        for layer, fold in self.residual_identity.items():
            if f"/{layer}/" in name or name.endswith(f"/{layer}"):
                return fold
        return None

    def bn_name(self, tensors: list[int]) -> str:
        """The kept batch-norm these MUL / ADD tensors come from (by name, else in order)."""
        names = [self.r.name(t) for t in tensors]
        for bn in self.kept_bn:
            if any(f"/{bn}/" in n for n in names):
                self.kept_bn.remove(bn)
                return bn
        return self.kept_bn.pop(0) if self.kept_bn else _layer_name(names[-1], "batchnorm")

    def _emit_pending(self, output: int) -> None:
        gamma, source = self.pending_mul.pop(output)
        name = self.bn_name([output])
        self.emit(
            self._bn(name, self.src(source), output, gamma, np.zeros_like(gamma), 1e-3), output
        )

    def flush_pending(self) -> None:
        for output in list(self.pending_mul):
            self._emit_pending(output)

    def operator(self, kind: str, opts, inputs: list[int], outputs: list[int]) -> None:
        out = outputs[0]
        added = (
            self.residual_identity_of(out)
            if kind in ("DEPTHWISE_CONV_2D", "MINIMUM", "MAXIMUM")
            else None
        )
        if added is not None:  # a residual fold's depthwise scale or range clip
            self.alias[out] = self.src(inputs[0])
            self.branch_of[out] = added
            return
        convert = CONVERTERS.get(kind)
        if convert is None and activations.from_tflite_op(kind) is not None:
            convert = _activation
        if convert is None:
            name = _layer_name(self.r.name(out), kind.lower())
            raise HwSimError(
                f"{self.r.path}: layer {name!r}: TFLite operator {kind} cannot be represented "
                "in the IR"
            )
        convert(self, kind, opts, inputs, out)

    def name_of(self, output: int, fallback: str, opts=None) -> str:
        """An op's name from its output tensor, else ``fallback``.

        With a fused activation (``opts``) the tensor names the activation's layer first and
        the op's own layer last.
        """
        names = _layer_names(self.r.name(output))
        fused = self.r.fused(opts) if opts is not None else "linear"
        if fused not in (None, "linear") and names:
            return names[-1]
        return names[0] if names else fallback

    def symbolic(self, t: int) -> tuple | None:
        """The input-quantizer pattern tensor ``t`` is part of (None: an ordinary tensor)."""
        return self.sym.get(t)

    def is_shape(self, tensors: list[int]) -> bool:
        """True if some of ``tensors`` is a run-time shape and the others are constants."""
        shape = [t in self.sym and self.sym[t][0] == "shape" for t in tensors]
        return any(shape) and all(
            s or self.r.constant(t) is not None for s, t in zip(shape, tensors, strict=True)
        )


# ---------------------------------------------------------------------------- the table
Converter = Callable[[_Builder, str, Any, list[int], int], None]
#: TFLite operator name -> converter(builder, kind, options, inputs, output).
CONVERTERS: dict[str, Converter] = {}


def tflite_op(*kinds: str) -> Callable[[Converter], Converter]:
    """Register a converter for the TFLite operators ``kinds``."""

    def register(fn: Converter) -> Converter:
        for kind in kinds:
            CONVERTERS[kind] = fn
        return fn

    return register


@tflite_op("QUANTIZE", "DEQUANTIZE")
def _identity(b: _Builder, kind: str, opts, inputs: list[int], out: int) -> None:
    if inputs[0] in b.sym:
        b.sym[out] = b.sym[inputs[0]]
    else:
        b.alias[out] = b.src(inputs[0])


@tflite_op("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
def _compute(b: _Builder, kind: str, opts, inputs: list[int], out: int) -> None:
    b.compute(kind, opts, inputs, out)


# Input quantizers (larq / keras_ternary quantizers the exporter applies in front of a layer)
# arrive as small TFLite patterns; they are followed symbolically and become the consumer's
# ``input_quantizer``:
#   ternary (|x| <= Δ -> 0):  SELECT_V2(GREATER(ABS(x), Δ), SIGN(x), ZEROS_LIKE(x))
#   SteTern (|x| < Δ -> 0):   the same with GREATER_EQUAL
#   sign (0 -> +1):           SIGN(ADD(SIGN(x), c > 0))
@tflite_op("ABS", "ZEROS_LIKE")
def _pattern_unary(b: _Builder, kind: str, opts, inputs: list[int], out: int) -> None:
    b.sym[out] = (kind, b.src(inputs[0]))


@tflite_op("SIGN")
def _sign(b: _Builder, kind: str, opts, inputs: list[int], out: int) -> None:
    value = b.symbolic(inputs[0])
    if value is None:
        b.sym[out] = ("SIGN", b.src(inputs[0]))
    elif value[0] == "SIGN+c":
        b.sym[out] = ("quantized", value[1], Quantizer("sign"))
    else:
        b.unknown_pattern(kind, out)


@tflite_op("GREATER", "GREATER_EQUAL")
def _compare(b: _Builder, kind: str, opts, inputs: list[int], out: int) -> None:
    value, delta = b.symbolic(inputs[0]), b.r.constant(inputs[1])
    if value is None or value[0] != "ABS" or delta is None or delta.size != 1:
        b.unknown_pattern(kind, out)
    quantizer = "ternary" if kind == "GREATER" else "ste_tern"
    b.sym[out] = ("compare", value[1], quantizer, float(delta.reshape(-1)[0]))


@tflite_op("SELECT", "SELECT_V2")
def _select(b: _Builder, kind: str, opts, inputs: list[int], out: int) -> None:
    cond, yes, no = (b.symbolic(t) for t in inputs)
    if (
        cond is None
        or cond[0] != "compare"
        or yes != ("SIGN", cond[1])
        or no != ("ZEROS_LIKE", cond[1])
    ):
        b.unknown_pattern(kind, out)
    b.sym[out] = ("quantized", cond[1], Quantizer(cond[2], delta=cond[3]))


@tflite_op("ADD", "MUL", "SUB")
def _binary(b: _Builder, kind: str, opts, inputs: list[int], out: int) -> None:
    r = b.r
    consts = [r.constant(t) for t in inputs]
    symbolic = [b.symbolic(t) for t in inputs]
    if kind == "ADD" and symbolic[0] is not None and symbolic[0][0] == "SIGN":
        c = consts[1]
        if c is None or c.size != 1 or not float(c.reshape(-1)[0]) > 0:
            b.unknown_pattern(kind, out)
        b.sym[out] = ("SIGN+c", symbolic[0][1])
        return
    if kind in ("MUL", "ADD") and any(c is not None for c in consts):
        b.affine(kind, opts, inputs, out)
        return
    if any(c is not None for c in consts):
        raise HwSimError(f"{r.path}: layer {b.name_of(out, 'sub')!r}: SUB of a constant")
    name = b.name_of(out, {"ADD": "add", "MUL": "multiply", "SUB": "subtract"}[kind], opts)
    srcs = [b.src(t) for t in inputs]
    if broadcast_shape([b.shape(t) for t in inputs]) != b.shape(out):
        raise HwSimError(f"{r.path}: layer {name!r}: the inputs of {kind} do not broadcast")
    ir_kind = {"ADD": "add", "MUL": "multiply", "SUB": "subtract"}[kind]
    current = b.emit(Op(name, ir_kind, srcs, b.shape(out), source_type=f"tflite:{kind}"), out)
    if kind == "ADD":
        current = b.residual_bn(current, inputs, out, pooled=False)
    fused = r.fused(opts) or "linear"
    if fused != "linear":
        b.activation(fused, current, out, b.act_name(out, name))


#: TFLite reduction over H, W -> the IR's global pooling kind.
_GLOBAL_POOL = {"MEAN": "global_avgpool", "REDUCE_MAX": "global_maxpool"}


@tflite_op(*_GLOBAL_POOL)
def _mean(b: _Builder, kind: str, opts, inputs: list[int], out: int) -> None:
    r = b.r
    axes = r.constant(inputs[1])
    pool_kind = _GLOBAL_POOL[kind]
    name = b.name_of(out, pool_kind)
    if (
        axes is None
        or sorted(int(a) for a in axes.reshape(-1)) != [1, 2]
        or (opts and opts.keepDims)
    ):
        raise HwSimError(
            f"{r.path}: layer {name!r}: only {kind} over H, W without keep_dims is supported"
        )
    src = b.src(inputs[0])
    pooled = b.emit(Op(name, pool_kind, [src], b.shape(out), source_type=f"tflite:{kind}"), out)
    if kind == "MEAN":
        b.residual_bn(pooled, inputs[:1], out, pooled=True)


@tflite_op("MAX_POOL_2D", "AVERAGE_POOL_2D")
def _pool(b: _Builder, kind: str, opts, inputs: list[int], out: int) -> None:
    pool_kind = "maxpool" if kind == "MAX_POOL_2D" else "avgpool"
    name = b.name_of(out, pool_kind, opts)
    if opts is None:
        raise HwSimError(f"{b.r.path}: layer {name!r}: {kind} without its options")
    pool = (int(opts.filterHeight), int(opts.filterWidth))
    strides = (int(opts.strideH), int(opts.strideW))
    pad = b.r.padding(opts, b.shape(inputs[0]), pool, strides)
    extra = {"count_include_pad": False} if pool_kind == "avgpool" else {}
    op = Op(
        name,
        pool_kind,
        [b.src(inputs[0])],
        b.shape(out),
        source_type=f"tflite:{kind}",
        pool_size=pool,
        strides=strides,
        padding=pad,
        extra=extra,
    )
    current = b.emit(op, out)
    fused = b.r.fused(opts) or "linear"
    if fused != "linear":
        b.activation(fused, current, out, b.act_name(out, name))


def _activation(b: _Builder, kind: str, opts, inputs: list[int], out: int) -> None:
    act = activations.from_tflite_op(kind)
    b.activation(act, b.src(inputs[0]), out, b.name_of(out, kind.lower()))


# A Keras Reshape / Flatten with a free batch size computes its target shape at run time:
# SHAPE(x), then STRIDED_SLICE / PACK / CONCATENATION of that with constants. Those tensors
# are followed symbolically (``("shape", ...)``); RESHAPE takes its shape from its output.
@tflite_op("SHAPE")
def _shape_of(b: _Builder, kind: str, opts, inputs: list[int], out: int) -> None:
    b.sym[out] = ("shape", b.r.name(inputs[0]))


@tflite_op("STRIDED_SLICE", "PACK")
def _shape_math(b: _Builder, kind: str, opts, inputs: list[int], out: int) -> None:
    """Arithmetic on a run-time shape; anything else is not a layer the IR knows."""
    if b.is_shape(inputs):
        b.sym[out] = ("shape", kind)
        return
    name = _layer_name(b.r.name(out), kind.lower())
    raise HwSimError(
        f"{b.r.path}: layer {name!r}: TFLite operator {kind} cannot be represented in the IR"
    )


@tflite_op("RESHAPE")
def _reshape(b: _Builder, kind: str, opts, inputs: list[int], out: int) -> None:
    shape = b.shape(out)
    ir_kind = "flatten" if len(shape) == 1 else "reshape"
    name = b.name_of(out, ir_kind)
    b.emit(Op(name, ir_kind, [b.src(inputs[0])], shape, source_type="tflite:RESHAPE"), out)


@tflite_op("PAD", "PADV2")
def _pad(b: _Builder, kind: str, opts, inputs: list[int], out: int) -> None:
    r = b.r
    name = b.name_of(out, "pad")
    pads = r.constant(inputs[1])
    if pads is None or pads.shape != (4, 2) or np.any(pads[0]) or np.any(pads[3]):
        raise HwSimError(f"{r.path}: layer {name!r}: only spatial {kind} of an image is supported")
    value = 0.0
    if kind == "PADV2" and len(inputs) > 2 and inputs[2] >= 0:
        constant = r.constant(inputs[2])
        value = float(constant.reshape(-1)[0]) if constant is not None else 0.0
    padding = tuple(int(p) for p in (*pads[1], *pads[2]))
    quantized = b.symbolic(inputs[0])
    if quantized is not None and quantized[0] == "quantized":
        # larq pads the quantized input of a convolution (pad_values): the quantizer's output
        # is -1, 0 or +1, the pad value too (int8 files store it rounded)
        if abs(value - round(value)) > 0.05 or abs(round(value)) > 1:
            raise HwSimError(f"{r.path}: layer {name!r}: pads a quantized tensor with {value}")
        _, src, quantizer = quantized
        b.sym[out] = ("padded", src, quantizer, padding, float(round(value)), b.shape(inputs[0]))
        return
    op = Op(
        name,
        "pad",
        [b.src(inputs[0])],
        b.shape(out),
        source_type=f"tflite:{kind}",
        padding=padding,
        pad_value=value,
    )
    b.emit(op, out)


@tflite_op("CONCATENATION")
def _concat(b: _Builder, kind: str, opts, inputs: list[int], out: int) -> None:
    name = b.name_of(out, "concat", opts)
    rank = len(b.r.shape(out))
    axis = int(opts.axis) if opts is not None else -1
    if axis not in (-1, rank - 1):
        raise HwSimError(f"{b.r.path}: layer {name!r}: only channel concatenation is supported")
    if b.is_shape(inputs):  # a run-time shape for a RESHAPE
        b.sym[out] = ("shape", kind)
        return
    srcs = [b.src(t) for t in inputs]
    current = b.emit(
        Op(name, "concat", srcs, b.shape(out), source_type="tflite:CONCATENATION"), out
    )
    fused = b.r.fused(opts) or "linear"
    if fused != "linear":
        b.activation(fused, current, out, b.act_name(out, name))


@tflite_op("PRELU", "LEAKY_RELU")
def _prelu(b: _Builder, kind: str, opts, inputs: list[int], out: int) -> None:
    name = b.name_of(out, kind.lower())
    if kind == "LEAKY_RELU":
        alpha = float(opts.alpha) if opts is not None else 0.2
    else:
        alpha = b.r.constant(inputs[1])
        if alpha is None:
            raise HwSimError(f"{b.r.path}: layer {name!r}: PRELU alpha is not a constant")
        alpha = np.asarray(alpha, np.float32)
        if alpha.ndim > len(b.shape(out)):  # a leading batch axis
            alpha = alpha.reshape(alpha.shape[1:])
    extra = {"alpha": alpha}
    op = Op(
        name, "prelu", [b.src(inputs[0])], b.shape(out), source_type=f"tflite:{kind}", extra=extra
    )
    b.emit(op, out)


def load(path: str, safe_mode: bool = True) -> Graph:
    """Load a .tflite file (ideally exported by keras_ternary.export) into the IR.

    ``safe_mode`` is accepted for the loader interface; a .tflite file holds no Python code.
    """
    from keras_ternary.fileio import read_input_file

    try:  # a regular file of at most 2 GiB: a FIFO or /dev/zero must not hang or exhaust memory
        buf = read_input_file(path, "tflite", "model file")
    except OSError as exc:
        raise HwSimError(str(exc)) from None
    try:
        return _build(buf, path)
    except ContractError as exc:
        raise HwSimError(f"{path}: not a valid .tflite file ({exc})") from None


def _build(buf: bytes, path: str) -> Graph:
    reader = _Reader(buf, path)
    meta = reader.metadata()
    b = _Builder(reader, meta)
    graph_inputs = reader.model.inputs
    if len(graph_inputs) != 1:
        raise HwSimError(f"{path}: models with {len(graph_inputs)} inputs are not supported")
    t_in = graph_inputs[0]
    input_name = (meta.input if meta else None) or reader.name(t_in).split(":")[0]
    b.precision[input_name] = "float32"
    b.emit(Op(input_name, "input", [], b.shape(t_in), source_type="InputLayer"), t_in)
    for kind, op, inputs, outputs in reader.ops():
        b.operator(kind, op, inputs, outputs)
    b.flush_pending()
    outputs = [b.src(t) for t in reader.model.outputs]
    name = (meta.model_name if meta else None) or "tflite"
    graph = Graph(name=name, ops=b.ops, outputs=outputs, source=path)
    if not any(op.is_quantized for op in graph.ops):
        raise HwSimError(f"{path}: no ternary or binary kernel; hw_sim profiles ternary networks")
    return graph
