"""TFLite (.tflite) loader: a model exported by ``keras_ternary.export.to_tflite`` -> IR.

The flatbuffer is read directly (LiteRT's generated schema; no interpreter, no
TensorFlow). Convolution / fully-connected weights are dequantized (int8 codes × per-channel
scale) and split into a ternary (or binary) sign pattern and a per-output-channel scale.

The exporter folds batch-norm into the preceding convolution and fuses activations into
convolutions and additions; it records the source model's layer names, kernel quantizers
and folded batch-norms as metadata (``keras_ternary.export``). With that metadata the
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

import numpy as np

from hw_sim.errors import HwSimError
from hw_sim.ir import Graph, Op
from keras_ternary.contract import activations, affine
from keras_ternary.contract.errors import ContractError
from keras_ternary.contract.geometry import output_hw, window_padding
from keras_ternary.contract.metadata import METADATA_NAME, ExportMetadata, LayerEntry
from keras_ternary.contract.ternary import is_unit_scale, split_kernel
from keras_ternary.contract.tflite_reader import TFLiteModel

__all__ = ["METADATA_NAME", "SUFFIXES", "load"]

SUFFIXES = (".tflite",)
_IDENTITY_OPS = {"QUANTIZE", "DEQUANTIZE"}


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


def _layer_name(tensor_name: str) -> str:
    """``model/layer/op;...`` -> ``layer`` (the Keras layer that made a tensor)."""
    parts = tensor_name.split(";")[0].split(":")[0].split("/")
    return parts[1] if len(parts) >= 3 else parts[0]


def _split_kernel(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kernel (channels last) -> (levels in {-1, 0, +1} as int8, per-channel magnitude)."""
    split = split_kernel(w)
    if split is None:
        raise HwSimError(
            "a convolution / dense kernel is not a per-channel scale times {-1, 0, +1}; hw_sim "
            "models ternary and binary kernels only"
        )
    return split


class _Builder:
    """Turns TFLite operators into IR ops, unfolding what the exporter folded."""

    def __init__(self, reader: _Reader, meta: ExportMetadata | None):
        from hw_sim.loaders.keras import tensor_precision

        self.r, self.meta = reader, meta
        self.tensor_precision = tensor_precision
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
        if op.kind != "input":
            op.out_precision = self.tensor_precision(op, op.inputs, self.precision)
        self.ops.append(op)
        self.precision[op.name] = op.out_precision
        if output is not None:
            self.alias[output] = op.name
        return op.name

    def src(self, t: int) -> str:
        if t in self.pending_mul:
            self._emit_pending(t)
        if t not in self.alias:
            raise HwSimError(f"{self.r.path}: tensor {self.r.name(t)!r} is read before it is made")
        return self.alias[t]

    def shape(self, t: int) -> tuple[int, ...]:
        return self.r.shape(t)[1:]

    def layer_for(self, tensor_names: list[str]) -> LayerEntry | None:
        for entry_name in self.layer_order:
            token = f"/{entry_name}/"
            if any(token in n for n in tensor_names):
                self.layer_order.remove(entry_name)
                return self.layers[entry_name]
        return None

    def activation(self, kind: str, src: str, output: int, name: str) -> str:
        op = Op(name, "activation", [src], self.shape(output), source_type="fused", activation=kind)
        return self.emit(op, output)

    # ------------------------------------------------------------------ operators
    def compute(self, kind: str, op, inputs: list[int], output: int) -> None:
        r = self.r
        w = r.constant(inputs[1])
        if w is None:
            raise HwSimError(f"{r.path}: {kind} weights are not a constant tensor")
        bias = r.constant(inputs[2]) if len(inputs) > 2 and inputs[2] >= 0 else None
        if kind == "CONV_2D":
            if op is None:
                raise HwSimError(f"{r.path}: CONV_2D without its options")
            if op.dilationHFactor != 1 or op.dilationWFactor != 1:
                raise HwSimError(f"{r.path}: dilated convolutions are not supported")
            weights = np.transpose(w, (1, 2, 3, 0))  # OHWI -> HWIO
            strides = (int(op.strideH), int(op.strideW))
        else:
            weights, strides = w.T, (1, 1)
        fused = r.fused(op)
        if fused is None:
            raise HwSimError(f"{r.path}: unsupported fused activation in {kind}")
        layer = self.layer_for([r.name(inputs[1]), r.name(output)])
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
        levels, scale = _split_kernel(weights)
        if layer and layer.folded_bn and layer.negative_channels:
            negative = np.asarray(layer.negative_channels, dtype=np.int64)
            levels[..., negative] *= -1  # recover t: the folded kernel is s_c · t, s_c < 0
            scale = scale.copy()
            scale[negative] *= -1
        precision = "ternary" if np.any(levels == 0) else "binary"
        if layer and layer.quantizer in ("ternary", "binary"):
            precision = layer.quantizer
            if precision == "binary" and np.any(levels == 0):
                precision = "ternary"
        folded = layer is not None and layer.folded_bn
        has_bias = bias is not None and bool(np.any(bias))
        if layer is not None and layer.use_bias is not None:
            has_bias = layer.use_bias
        bias = np.zeros(levels.shape[-1]) if bias is None else bias
        name = layer.name if layer else _layer_name(r.name(output))
        unit_scale = bool(folded) or is_unit_scale(scale)
        in_name = self.src(inputs[0])
        in_shape = self.shape(inputs[0])
        common = dict(
            inputs=[in_name],
            output_shape=self.shape(output),
            source_type=f"tflite:{kind}",
            weights=levels,
            weight_precision=precision,
            weight_scale=None if unit_scale else scale,
            bias=None
            if not has_bias
            else (np.zeros_like(scale) if folded else bias.astype(np.float32)),
        )
        if kind == "CONV_2D":
            kernel = (int(levels.shape[0]), int(levels.shape[1]))
            pad = r.padding(op, in_shape, kernel, strides)
            try:
                expect = output_hw(in_shape[:2], kernel, strides, pad)
            except ContractError:
                expect = None
            if expect != tuple(common["output_shape"][:2]):
                raise HwSimError(f"{r.path}: convolution output size does not match its padding")
            current = self.emit(Op(name, "conv2d", strides=strides, padding=pad, **common), None)
        else:
            current = self.emit(Op(name, "dense", **common), None)
        if folded:
            eps = float(layer.bn_epsilon or 1e-3)
            beta = bias.astype(np.float32)
            current = self.emit(self._bn(folded, current, output, scale, beta, eps), None)
        if fused != "linear":
            current = self.activation(fused, current, output, f"{name}_activation")
        self.alias[output] = current

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
            current = self.activation(fused, current, output, f"{name}_activation")
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
        return self.kept_bn.pop(0) if self.kept_bn else _layer_name(names[-1])

    def _emit_pending(self, output: int) -> None:
        gamma, source = self.pending_mul.pop(output)
        name = self.bn_name([output])
        self.emit(
            self._bn(name, self.src(source), output, gamma, np.zeros_like(gamma), 1e-3), output
        )

    def flush_pending(self) -> None:
        for output in list(self.pending_mul):
            self._emit_pending(output)

    def operator(self, kind: str, op, inputs: list[int], outputs: list[int]) -> None:
        r = self.r
        out = outputs[0]
        added = (
            self.residual_identity_of(out)
            if kind in ("DEPTHWISE_CONV_2D", "MINIMUM", "MAXIMUM")
            else None
        )
        if kind in _IDENTITY_OPS:
            self.alias[out] = self.src(inputs[0])
        elif added is not None:  # a residual fold's depthwise scale or range clip
            self.alias[out] = self.src(inputs[0])
            self.branch_of[out] = added
        elif kind in ("CONV_2D", "FULLY_CONNECTED"):
            self.compute(kind, op, inputs, out)
        elif kind in ("MUL", "ADD") and any(r.constant(t) is not None for t in inputs):
            self.affine(kind, op, inputs, out)
        elif kind == "ADD":
            srcs = [self.src(t) for t in inputs]
            if any(self.shape(t) != self.shape(out) for t in inputs):
                raise HwSimError(f"{r.path}: broadcasting ADD is not supported")
            fused = r.fused(op) or "linear"
            name = _layer_name(r.name(out))
            current = self.emit(
                Op(name, "add", srcs, self.shape(out), source_type="tflite:ADD"), out
            )
            current = self.residual_bn(current, inputs, out, pooled=False)
            if fused != "linear":
                self.activation(fused, current, out, f"{name}_activation")
        elif kind == "MEAN":
            axes = r.constant(inputs[1])
            if (
                axes is None
                or sorted(int(a) for a in axes.reshape(-1)) != [1, 2]
                or (op and op.keepDims)
            ):
                raise HwSimError(f"{r.path}: only MEAN over H, W without keep_dims is supported")
            src = self.src(inputs[0])
            pooled = self.emit(Op("global_avgpool", "global_avgpool", [src], self.shape(out)), out)
            self.residual_bn(pooled, inputs[:1], out, pooled=True)
        elif kind in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
            if op is None:
                raise HwSimError(f"{r.path}: {kind} without its options")
            pool = (int(op.filterHeight), int(op.filterWidth))
            strides = (int(op.strideH), int(op.strideW))
            pad = r.padding(op, self.shape(inputs[0]), pool, strides)
            pool_kind = "maxpool" if kind == "MAX_POOL_2D" else "avgpool"
            extra = {"count_include_pad": False} if pool_kind == "avgpool" else {}
            self.emit(
                Op(
                    pool_kind,
                    pool_kind,
                    [self.src(inputs[0])],
                    self.shape(out),
                    pool_size=pool,
                    strides=strides,
                    padding=pad,
                    extra=extra,
                ),
                out,
            )
        elif (act := activations.from_tflite_op(kind)) is not None:
            self.activation(act, self.src(inputs[0]), out, kind.lower())
        elif kind == "RESHAPE" and len(self.shape(out)) == 1:
            self.emit(Op("flatten", "flatten", [self.src(inputs[0])], self.shape(out)), out)
        else:
            raise HwSimError(f"{r.path}: TFLite operator {kind} cannot be represented in the IR")


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
