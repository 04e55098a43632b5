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

import base64
import binascii
import json

import numpy as np

from hw_sim.errors import HwSimError
from hw_sim.ir import Graph, Op, conv_output_size, same_padding

__all__ = ["METADATA_NAME", "SUFFIXES", "load"]

SUFFIXES = (".tflite",)
METADATA_NAME = "keras_ternary.export"
_NP = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 7: np.int16, 9: np.int8}
_FUSED = {0: "linear", 1: "relu", 2: "hard_tanh", 3: "relu6", 4: "tanh"}
_ACT_OPS = {
    "RELU": "relu",
    "RELU6": "relu6",
    "RELU_N1_TO_1": "hard_tanh",
    "TANH": "tanh",
    "LOGISTIC": "sigmoid",
    "SOFTMAX": "softmax",
}
_IDENTITY_OPS = {"QUANTIZE", "DEQUANTIZE"}


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as s
    except ImportError:  # pragma: no cover - depends on the installation
        try:
            from tensorflow.lite.python import schema_py_generated as s
        except ImportError as exc:
            raise HwSimError(
                "reading .tflite needs ai-edge-litert (pip install ai-edge-litert)"
            ) from exc
    return s


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")


class _Reader:
    """Tensors, constant values and operators of the main subgraph of one flatbuffer."""

    def __init__(self, buf: bytes, path: str):
        s = _schema()
        self.s, self.path = s, path
        try:
            if len(buf) < 8 or buf[4:8] != b"TFL3":
                raise ValueError("missing the TFL3 file identifier")
            self.model = s.Model.GetRootAs(buf, 0)
            self.graph = self.model.Subgraphs(0)
            self.graph.TensorsLength()
        except Exception as exc:  # flatbuffers raises assorted errors on garbage
            raise HwSimError(f"{path}: not a valid .tflite file ({exc})") from None
        self.buf = buf
        self.op_names = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}

    def metadata(self) -> dict | None:
        for i in range(self.model.MetadataLength()):
            entry = self.model.Metadata(i)
            if _text(entry.Name()) == METADATA_NAME:
                raw = self._buffer(entry.Buffer(), np.uint8)
                try:
                    return json.loads(bytes(raw).decode("utf-8"))
                except (TypeError, ValueError):
                    raise HwSimError(f"{self.path}: unreadable {METADATA_NAME} metadata") from None
        return None

    def _buffer(self, index: int, dtype) -> np.ndarray | None:
        b = self.model.Buffers(index)
        if b is None:
            return None
        if b.Offset() > 1:
            raw = self.buf[b.Offset() : b.Offset() + b.Size()]
        elif b.DataLength():
            raw = b.DataAsNumpy().tobytes()
        else:
            return None
        return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))

    def name(self, t: int) -> str:
        return _text(self.graph.Tensors(t).Name())

    def shape(self, t: int) -> tuple[int, ...]:
        tensor = self.graph.Tensors(t)
        return tuple(int(d) for d in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()

    def constant(self, t: int) -> np.ndarray | None:
        """Dequantized float64 value of a constant tensor (None if not constant)."""
        tensor = self.graph.Tensors(t)
        dtype = _NP.get(tensor.Type())
        raw = self._buffer(tensor.Buffer(), dtype) if dtype is not None else None
        if raw is None:
            return None
        values = raw.astype(np.float64).reshape(self.shape(t))
        q = tensor.Quantization()
        if q is not None and q.ScaleLength() and dtype not in (np.float32, np.float16):
            scale = q.ScaleAsNumpy().astype(np.float64)
            zero = q.ZeroPointAsNumpy().astype(np.float64) if q.ZeroPointLength() else 0.0
            shape = [1] * values.ndim
            if scale.size > 1:
                shape[q.QuantizedDimension()] = scale.size
            values = (values - np.reshape(zero, shape if np.size(zero) > 1 else [])) * np.reshape(
                scale, shape
            )
        return values

    def ops(self):
        for i in range(self.graph.OperatorsLength()):
            op = self.graph.Operators(i)
            code = self.model.OperatorCodes(op.OpcodeIndex())
            kind = self.op_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?")
            inputs = [int(t) for t in op.InputsAsNumpy()] if op.InputsLength() else []
            outputs = [int(t) for t in op.OutputsAsNumpy()]
            yield kind, op, inputs, outputs

    def options(self, op, cls_name: str):
        table = op.BuiltinOptions()
        if table is None:
            return None
        opts = getattr(self.s, cls_name)()
        opts.Init(table.Bytes, table.Pos)
        return opts


def _floats(value) -> np.ndarray:
    """A metadata float vector: a JSON list, or base64 of little-endian float32."""
    if isinstance(value, str):
        try:
            return np.frombuffer(base64.b64decode(value, validate=True), "<f4").astype(np.float64)
        except (ValueError, binascii.Error):
            raise HwSimError("unreadable float vector in the export metadata") from None
    return np.asarray(value, np.float64)


def _layer_name(tensor_name: str) -> str:
    """``model/layer/op;...`` -> ``layer`` (the Keras layer that made a tensor)."""
    parts = tensor_name.split(";")[0].split(":")[0].split("/")
    return parts[1] if len(parts) >= 3 else parts[0]


def _split_kernel(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kernel (channels last) -> (levels in {-1, 0, +1} as int8, per-channel magnitude)."""
    axes = tuple(range(w.ndim - 1))
    scale = np.max(np.abs(w), axis=axes)
    safe = np.where(scale > 0, scale, 1.0)
    unit = w / safe
    levels = np.round(unit)
    if not np.allclose(unit, levels, atol=1e-4) or np.any(np.abs(levels) > 1):
        raise HwSimError(
            "a convolution / dense kernel is not a per-channel scale times {-1, 0, +1}; hw_sim "
            "models ternary and binary kernels only"
        )
    return levels.astype(np.int8), safe.astype(np.float32)


class _Builder:
    """Turns TFLite operators into IR ops, unfolding what the exporter folded."""

    def __init__(self, reader: _Reader, meta: dict | None):
        from hw_sim.loaders.keras import tensor_precision

        self.r, self.meta = reader, meta
        self.tensor_precision = tensor_precision
        self.ops: list[Op] = []
        self.alias: dict[int, str] = {}  # tflite tensor -> IR op name
        self.precision: dict[str, str] = {}
        self.used: set[str] = set()
        layers = (meta or {}).get("layers", [])
        self.layers = {entry["name"]: entry for entry in layers}
        self.layer_order = [entry["name"] for entry in layers]
        self.kept_bn = list((meta or {}).get("batchnorms", []))
        self.pending_mul: dict[int, tuple[np.ndarray, int]] = {}
        # batch-norms the exporter pushed back into residual branches: re-emitted after the
        # add (or its global pooling); their depthwise scales and range clips are identities
        try:
            residual = [
                {**f, "scale": _floats(f["scale"]), "shift": _floats(f["shift"])}
                for f in (meta or {}).get("residual", [])
            ]
            self.residual = {f["bn"]: f for f in residual}
            self.residual_identity = {
                name: f
                for f in residual
                for name in [
                    *f.get("clips", []),
                    *(b["layer"] for b in f["branches"] if b["kind"] == "scaled"),
                ]
            }
        except (KeyError, TypeError):
            raise HwSimError(f"{reader.path}: malformed 'residual' export metadata") from None
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

    def layer_for(self, tensor_names: list[str]) -> dict | None:
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
            opts = r.options(op, "Conv2DOptions")
            if opts.DilationHFactor() != 1 or opts.DilationWFactor() != 1:
                raise HwSimError(f"{r.path}: dilated convolutions are not supported")
            weights = np.transpose(w, (1, 2, 3, 0))  # OHWI -> HWIO
            strides = (int(opts.StrideH()), int(opts.StrideW()))
        else:
            opts = r.options(op, "FullyConnectedOptions")
            weights, strides = w.T, (1, 1)
        fused = _FUSED.get(opts.FusedActivationFunction())
        if fused is None:
            raise HwSimError(f"{r.path}: unsupported fused activation in {kind}")
        layer = self.layer_for([r.name(inputs[1]), r.name(output)])
        fold = self.residual.get((layer or {}).get("residual_bn") or "")
        if fold is not None:  # undo the residual batch-norm's scale (and shift) in this branch
            self.branch_of[output] = fold
            res_scale = np.asarray(fold["scale"], np.float64)
            res_scale = np.where(res_scale != 0, res_scale, 1.0)
            weights = (weights / res_scale).astype(np.float32)
            bias = np.zeros(res_scale.size) if bias is None else np.asarray(bias, np.float64)
            if fold.get("shift_branch") == layer["name"]:
                bias = bias - np.asarray(fold["shift"], np.float64)
            bias = (bias / res_scale).astype(np.float32)
        levels, scale = _split_kernel(weights)
        if layer and layer.get("folded_bn") and layer.get("negative_channels"):
            negative = np.asarray(layer["negative_channels"], dtype=np.int64)
            levels[..., negative] *= -1  # recover t: the folded kernel is s_c · t, s_c < 0
            scale = scale.copy()
            scale[negative] *= -1
        precision = "ternary" if np.any(levels == 0) else "binary"
        if layer and layer.get("quantizer") in ("ternary", "binary"):
            precision = layer["quantizer"]
            if precision == "binary" and np.any(levels == 0):
                precision = "ternary"
        folded = layer is not None and layer.get("folded_bn")
        has_bias = bias is not None and bool(np.any(bias))
        if layer is not None and "use_bias" in layer:
            has_bias = bool(layer["use_bias"])
        bias = np.zeros(levels.shape[-1]) if bias is None else bias
        name = layer["name"] if layer else _layer_name(r.name(output))
        unit_scale = bool(folded) or np.allclose(scale, 1.0, rtol=1e-4)
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
            padding_kind = opts.Padding()
            kh, kw = int(levels.shape[0]), int(levels.shape[1])
            if padding_kind == self.r.s.Padding.SAME:
                pad = (
                    *same_padding(in_shape[0], kh, strides[0]),
                    *same_padding(in_shape[1], kw, strides[1]),
                )
            else:
                pad = (0, 0, 0, 0)
            expect = (
                conv_output_size(in_shape[0], kh, strides[0], pad[0], pad[1]),
                conv_output_size(in_shape[1], kw, strides[1], pad[2], pad[3]),
            )
            if expect != tuple(common["output_shape"][:2]):
                raise HwSimError(f"{r.path}: convolution output size does not match its padding")
            current = self.emit(Op(name, "conv2d", strides=strides, padding=pad, **common), None)
        else:
            current = self.emit(Op(name, "dense", **common), None)
        if folded:
            eps = float(layer.get("bn_epsilon") or 1e-3)
            beta = bias.astype(np.float32)
            current = self.emit(self._bn(folded, current, output, scale, beta, eps), None)
        if fused != "linear":
            current = self.activation(fused, current, output, f"{name}_activation")
        self.alias[output] = current

    def _bn(self, name, src, output, gamma, beta, eps) -> Op:
        c = np.asarray(gamma).size
        return Op(
            name,
            "batchnorm",
            [src],
            self.shape(output),
            source_type="tflite:batchnorm",
            gamma=np.asarray(gamma, np.float32).reshape(c),
            beta=np.asarray(beta, np.float32).reshape(c),
            moving_mean=np.zeros(c, np.float32),
            moving_variance=np.full(c, 1.0 - eps, np.float32),
            epsilon=eps,
        )

    def affine(self, kind: str, op, inputs: list[int], output: int) -> None:
        """MUL / ADD with one constant operand: part of a kept batch-norm."""
        r = self.r
        consts = [r.constant(t) for t in inputs]
        var = [t for t, c in zip(inputs, consts, strict=True) if c is None]
        value = next(c for c in consts if c is not None)
        channels = self.shape(output)[-1]
        value = np.broadcast_to(np.asarray(value, np.float64).reshape(-1), (channels,))
        opts = r.options(op, "MulOptions" if kind == "MUL" else "AddOptions")
        fused = _FUSED.get(opts.FusedActivationFunction() if opts else 0, "linear")
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
        if bool(fold.get("via")) != pooled:
            if not pooled:
                self.branch_of[output] = fold
            return src
        eps = float(fold.get("epsilon", 1e-3))
        return self.emit(
            self._bn(fold["bn"], src, output, fold["scale"], fold["shift"], eps), output
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
            opts = r.options(op, "AddOptions")
            fused = _FUSED.get(opts.FusedActivationFunction() if opts else 0, "linear")
            name = _layer_name(r.name(out))
            current = self.emit(
                Op(name, "add", srcs, self.shape(out), source_type="tflite:ADD"), out
            )
            current = self.residual_bn(current, inputs, out, pooled=False)
            if fused != "linear":
                self.activation(fused, current, out, f"{name}_activation")
        elif kind == "MEAN":
            axes = r.constant(inputs[1])
            opts = r.options(op, "ReducerOptions")
            if (
                axes is None
                or sorted(int(a) for a in axes.reshape(-1)) != [1, 2]
                or (opts and opts.KeepDims())
            ):
                raise HwSimError(f"{r.path}: only MEAN over H, W without keep_dims is supported")
            src = self.src(inputs[0])
            pooled = self.emit(Op("global_avgpool", "global_avgpool", [src], self.shape(out)), out)
            self.residual_bn(pooled, inputs[:1], out, pooled=True)
        elif kind in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
            opts = r.options(op, "Pool2DOptions")
            pool = (int(opts.FilterHeight()), int(opts.FilterWidth()))
            strides = (int(opts.StrideH()), int(opts.StrideW()))
            in_shape = self.shape(inputs[0])
            pad = (0, 0, 0, 0)
            if opts.Padding() == r.s.Padding.SAME:
                pad = (
                    *same_padding(in_shape[0], pool[0], strides[0]),
                    *same_padding(in_shape[1], pool[1], strides[1]),
                )
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
        elif kind in _ACT_OPS:
            self.activation(_ACT_OPS[kind], self.src(inputs[0]), out, kind.lower())
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
    reader = _Reader(buf, path)
    meta = reader.metadata()
    b = _Builder(reader, meta)
    graph_inputs = [int(t) for t in reader.graph.InputsAsNumpy()]
    if len(graph_inputs) != 1:
        raise HwSimError(f"{path}: models with {len(graph_inputs)} inputs are not supported")
    t_in = graph_inputs[0]
    input_name = (meta or {}).get("input") or reader.name(t_in).split(":")[0]
    b.precision[input_name] = "float32"
    b.emit(Op(input_name, "input", [], b.shape(t_in), source_type="InputLayer"), t_in)
    for kind, op, inputs, outputs in reader.ops():
        b.operator(kind, op, inputs, outputs)
    b.flush_pending()
    outputs = [b.src(int(t)) for t in reader.graph.OutputsAsNumpy()]
    name = (meta or {}).get("model_name") or "tflite"
    graph = Graph(name=name, ops=b.ops, outputs=outputs, source=path)
    if not any(op.is_quantized for op in graph.ops):
        raise HwSimError(f"{path}: no ternary or binary kernel; hw_sim profiles ternary networks")
    return graph
