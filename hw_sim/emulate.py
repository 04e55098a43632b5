"""Bit-exact emulation of an IR graph on the accelerator kernels (docs/emulation.md).

:func:`run` executes a :class:`hw_sim.ir.Graph` (or a model file / tf.keras model) on a
batch and returns its logits, computing every quantized layer the way the accelerator
would:

* ternary/binary activations x ternary/binary kernels: bit-planes packed into 64-bit words
  and a popcount GEMM, ``int32`` accumulators (:func:`hw_sim.kernels.bit_conv2d`);
* float activations x ternary/binary kernels: activations quantized to int8
  (:mod:`hw_sim.calibrate`) and one add/subtract per nonzero weight into an ``int32``
  accumulator, zero activations skipped (``act_mode="int8"``), or fp32 adds
  (``act_mode="float"``) (:func:`hw_sim.kernels.addsub_conv2d`);
* float kernels (layers left unquantized): fp32 MACs.

After the accumulator, a per-channel epilogue applies the int8 scale, the kernel's
channel scale and bias, and the fused activation in float32; batch-norm, activations,
residual additions, pooling, padding, concatenation, ... run in float32 as a vector unit
would (each kind's :attr:`hw_sim.ops.OpSpec.execute`). A grouped / depthwise convolution
runs its kernel once per group, on the group's input channels. Where an integer
accumulator reaches a ternary/sign quantizer only through per-channel monotone ops, the
whole chain is folded into two integer comparisons per output
(:mod:`hw_sim.kernels.threshold`) and never leaves the integer domain.

Data-dependent counts (popcounts and words executed, adds executed, zero activations
skipped) are collected per layer; :func:`hw_sim.emulation_check.emulation_report` sets them
next to the analytic counts of :mod:`hw_sim.accelerators`.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from hw_sim.calibrate import INT8_MAX, Capture, calibrate_scales, quantize_int8
from hw_sim.errors import HwSimError
from hw_sim.ir import Graph, Op, Quantizer
from hw_sim.kernels.backend import resolve
from hw_sim.kernels.conv import (
    PackedKernel,
    addsub_conv2d,
    bit_conv2d,
    grouped,
    mac_conv2d,
    pack_kernel,
    split_groups,
)
from hw_sim.kernels.threshold import Thresholds, derive_thresholds
from hw_sim.ops import activation, batchnorm, spec
from keras_ternary.contract import activations

__all__ = [
    "ACT_MODES",
    "EmulationResult",
    "Emulator",
    "activation",
    "apply_quantizer",
    "batchnorm",
    "run",
]

ACT_MODES = ("auto", "int8", "float")
_LOW = ("ternary", "binary")
#: Activations that are non-decreasing: a chain of them keeps q(acc) a step function.
MONOTONE = tuple(a.name for a in activations.ACTIVATIONS.values() if a.monotone)


# ----------------------------------------------------------------------------- float ops
def apply_quantizer(x: np.ndarray, q: Quantizer) -> np.ndarray:
    """An activation quantizer's forward pass in float32, as the Keras layer computes it.

    ``ternary`` (Eq. 5): ``sign(x)·1{|x| > Δ}``; ``ste_tern`` (larq):
    ``sign(sign(x + Δ) + sign(x - Δ))``; ``sign``: ``+1`` if ``x >= 0`` else ``-1``.
    """
    x = np.asarray(x, dtype=np.float32)
    if q.kind == "sign":
        return np.where(x >= 0, 1, -1).astype(np.int8)
    if q.twn:
        raise HwSimError("a TWN input quantizer (Δ from each batch) cannot be emulated")
    delta = np.float32(q.delta)
    if q.kind == "ternary":
        return (np.sign(x) * (np.abs(x) > delta)).astype(np.int8)
    return np.sign(np.sign(x + delta) + np.sign(x - delta)).astype(np.int8)


def epilogue(op: Op, acc: np.ndarray, act_scale: float | None) -> np.ndarray:
    """Accumulator -> float32 conv/dense output: int8 scale, channel scale, bias, activation."""
    y = acc.astype(np.float32)
    if act_scale is not None:
        y *= np.float32(act_scale)
    if op.weight_scale is not None:
        y *= op.weight_scale.astype(np.float32)
    if op.bias is not None:
        y += op.bias.astype(np.float32)
    return activation(op.activation, y)


def _elementwise(op: Op, inputs: list[np.ndarray]) -> np.ndarray:
    """A non-compute op in float32: its kind's :attr:`hw_sim.ops.OpSpec.execute`."""
    return spec(op.kind).execute(op, inputs)


# ----------------------------------------------------------------------------- plans
@dataclass
class LayerPlan:
    """How one conv2d/dense op runs: kernel, input form, and folded epilogue."""

    op: Op
    kernel: str  # "popcount", "addsub" or "mac"
    act: str  # what the kernel consumes: "ternary", "binary", "int8" or "float32"
    packed: list[PackedKernel] | None = None  # one per group
    act_scale: float | None = None
    chain: list[Op] = field(default_factory=list)
    tail: str | None = None  # tensor the thresholds produce (chain end)
    quantizer: Quantizer | None = None
    thresholds: Thresholds | None = None

    @property
    def integer(self) -> bool:
        """True when the accumulator is an exact integer."""
        return self.kernel == "popcount" or (self.kernel == "addsub" and self.act == "int8")

    @property
    def bound(self) -> int:
        """Largest ``|accumulator|`` the layer can produce."""
        return self.op.fan_in * (INT8_MAX if self.act == "int8" else 1)

    def describe(self) -> dict:
        return {
            "name": self.op.name,
            "kernel": self.kernel,
            "act": self.act,
            "weight": self.op.weight_precision,
            "act_scale": self.act_scale,
            "thresholds": None
            if self.thresholds is None
            else {"folds": [c.name for c in self.chain], "output": self.tail},
        }


@dataclass
class ForwardResult:
    """One batch through the graph."""

    outputs: list[np.ndarray]
    accumulators: dict[str, np.ndarray]
    captured: dict[str, np.ndarray]
    counts: dict[str, dict]


@dataclass
class EmulationResult:
    """Outputs of :meth:`Emulator.run` over all batches."""

    outputs: dict[str, np.ndarray]
    accumulators: dict[str, np.ndarray]
    counts: dict[str, dict]
    plans: list[dict]
    act_mode: str
    backend: str
    scales: dict[str, dict]
    images: int

    @property
    def logits(self) -> np.ndarray:
        """The first graph output."""
        return next(iter(self.outputs.values()))


def _add_counts(total: dict, counts: dict) -> None:
    for key, value in counts.items():
        if isinstance(value, int | float | np.integer) and not isinstance(value, bool):
            total[key] = total.get(key, 0) + int(value)
        else:
            total[key] = value


class Emulator:
    """A compiled emulation plan of one graph (see the module docstring).

    Args:
        graph: the IR.
        act_mode: ``"int8"`` or ``"float"`` for float activations entering ternary/binary
            kernels; ``"auto"``: ``"float"`` when the model quantizes its activations
            elsewhere (a BNN/TNN keeps its first layer wide), else ``"int8"``.
        scales: precomputed int8 scales ``{tensor: {"scale", ...}}`` (see
            :func:`hw_sim.calibrate.calibrate_scales`).
        calibration: images to calibrate int8 scales on; if None and some tensor needs
            measuring, the first batch given to :meth:`run` is used (stated in the report).
        backend: kernel back-end (``"auto"``, ``"numpy"``, ``"numba"``).
        fuse: fold BN/activation/quantizer chains into integer thresholds.
        percentile: calibration percentile of ``|x|`` (100 = max-abs).
    """

    def __init__(
        self,
        graph: Graph,
        act_mode: str = "auto",
        scales: dict | None = None,
        calibration: np.ndarray | None = None,
        backend: str = "auto",
        fuse: bool = True,
        percentile: float = 100.0,
    ):
        if act_mode not in ACT_MODES:
            raise HwSimError(f"act_mode must be one of {ACT_MODES}, got {act_mode!r}")
        self.graph = graph
        self.backend = resolve(backend)
        self.fuse = fuse
        self.percentile = percentile
        if act_mode == "auto":
            low = any(op.is_compute and op.act_precision in _LOW for op in graph.ops)
            act_mode = "float" if low else "int8"
        self.act_mode = act_mode
        self.plans: dict[str, LayerPlan] = {}
        for op in graph.ops:
            if op.is_compute:
                self.plans[op.name] = self._plan(op)
        self.int8_tensors = sorted({p.op.inputs[0] for p in self.plans.values() if p.act == "int8"})
        self.scales: dict[str, dict] = dict(scales or {})
        self.skip: set[str] = set()
        self._compiled = False
        if calibration is not None or all(t in self.scales for t in self.int8_tensors):
            self._compile(calibration)
        #: wall-clock seconds by step of :meth:`forward` (kernel phases: PHASE_SECONDS)
        self.seconds: dict[str, float] = defaultdict(float)
        # reads left of each tensor (an op may read one twice, e.g. multiply(x, x))
        self._remaining = {op.name: 0 for op in graph.ops}
        for op in graph.ops:
            for name in op.inputs:
                self._remaining[name] += 1

    # -- planning
    def _plan(self, op: Op) -> LayerPlan:
        q = op.input_quantizer
        if q is not None and q.twn:
            raise HwSimError(f"op {op.name!r}: a TWN input quantizer cannot be emulated")
        act = q.precision if q is not None else "float32"
        if not op.is_quantized:
            return LayerPlan(op, "mac", act)
        kernel = op.weights if op.kind == "conv2d" else op.weights[None, None]
        packed = [pack_kernel(k, op.weight_precision) for k in split_groups(kernel, op.groups)]
        if act in _LOW:
            if op.pad_value not in (-1.0, 0.0, 1.0):
                raise HwSimError(f"op {op.name!r}: pad value {op.pad_value} is not 0 or ±1")
            return LayerPlan(op, "popcount", act, packed)
        if self.act_mode == "int8":
            if op.pad_value != 0:
                raise HwSimError(f"op {op.name!r}: int8 activations need zero padding")
            return LayerPlan(op, "addsub", "int8", packed)
        return LayerPlan(op, "addsub", "float32", packed)

    def _compile(self, calibration: np.ndarray | None) -> None:
        missing = [t for t in self.int8_tensors if t not in self.scales]
        if missing:
            self.scales.update(
                calibrate_scales(
                    self.graph, missing, calibration, self._float_capture(), self.percentile
                )
            )
        for plan in self.plans.values():
            if plan.act == "int8":
                plan.act_scale = float(self.scales[plan.op.inputs[0]]["scale"])
        if self.fuse:
            for plan in self.plans.values():
                if plan.integer:
                    self._fold(plan)
        self._compiled = True

    def _float_capture(self) -> Capture:
        """``capture(images, names)`` for calibration: this graph run with float activations."""
        made: list[Emulator] = []  # built on first use: static bounds need no forward pass

        def capture(x: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
            if not made:
                made.append(
                    Emulator(self.graph, act_mode="float", backend=self.backend, fuse=False)
                )
            return made[0].forward(x, capture=names).captured

        return capture

    def _fold(self, plan: LayerPlan) -> None:
        """Fold ``acc -> [BN | monotone activation]* -> quantizer`` into thresholds."""
        graph = self.graph
        if plan.op.activation not in MONOTONE:
            return
        chain: list[Op] = []
        tensor = plan.op.name
        while tensor not in graph.outputs:
            consumers = graph.consumers(tensor)
            nxt = consumers[0] if len(consumers) == 1 else None
            if nxt is None or not (
                nxt.kind == "batchnorm" or (nxt.kind == "activation" and nxt.activation in MONOTONE)
            ):
                break
            chain.append(nxt)
            tensor = nxt.name
        consumers = graph.consumers(tensor)
        if tensor in graph.outputs or not consumers:
            return
        quantizers = {c.input_quantizer for c in consumers if c.is_compute}
        if len(consumers) != sum(c.is_compute for c in consumers) or len(quantizers) != 1:
            return
        (q,) = quantizers
        if q is None:
            return
        plan.chain, plan.tail, plan.quantizer = chain, tensor, q

        def fn(acc: np.ndarray) -> np.ndarray:
            y = epilogue(plan.op, acc, plan.act_scale)
            for op in chain:
                y = _elementwise(op, [y])
            return apply_quantizer(y, q)

        plan.thresholds = derive_thresholds(fn, plan.op.out_channels, plan.bound)
        self.skip.update(op.name for op in chain)

    # -- execution
    def _kernel(self, plan: LayerPlan, x: np.ndarray) -> tuple[np.ndarray, dict]:
        op = plan.op
        dense = op.kind == "dense"
        geo = {"strides": op.strides, "padding": op.padding, "pad_value": op.pad_value}
        if dense:
            x = x[:, None, None, :]
            geo = {"pad_value": op.pad_value}
        if plan.packed is not None:
            w = plan.packed
        else:
            w = split_groups(op.weights if not dense else op.weights[None, None], op.groups)
        if plan.kernel == "popcount":
            acc, counts = grouped(bit_conv2d, x, w, act=plan.act, backend=self.backend, **geo)
        elif plan.kernel == "addsub":
            acc, counts = grouped(addsub_conv2d, x, w, backend=self.backend, **geo)
        else:
            acc, counts = grouped(mac_conv2d, x, w, **geo)
        if dense:
            acc = acc.reshape(acc.shape[0], -1)
        return acc, counts

    def _input(self, plan: LayerPlan, values: dict, quantized: dict) -> np.ndarray:
        name = plan.op.inputs[0]
        if plan.op.input_quantizer is not None and name in quantized:
            return quantized[name]
        return self.kernel_input(plan.op.name, values[name])

    def kernel_input(self, name: str, x: np.ndarray) -> np.ndarray:
        """What compute op ``name``'s kernel consumes for its float input ``x``: the input
        quantizer's values (int8 ``{-1, 0, +1}``), int8 integers, or float32."""
        plan = self.plans[name]
        q = plan.op.input_quantizer
        if q is not None:
            return apply_quantizer(x, q)
        if plan.act == "int8":
            return quantize_int8(x, plan.act_scale)
        return np.asarray(x).astype(np.float32, copy=False)

    def accumulate(self, name: str, x_in: np.ndarray) -> np.ndarray:
        """The accumulators of compute op ``name`` alone, for a kernel input ``x_in`` in the
        form :meth:`kernel_input` gives (a teacher-forced step: the rest of the graph does
        not run, and no counts are kept)."""
        if not self._compiled:
            raise HwSimError("run a batch first: int8 scales are calibrated on it")
        return self._kernel(self.plans[name], x_in)[0]

    def forward(self, x: np.ndarray, capture=(), keep_accumulators: bool = False) -> ForwardResult:
        """Run one batch; ``capture`` names float tensors to return."""
        if not self._compiled:
            self._compile(x)
        graph = self.graph
        values: dict[str, np.ndarray] = {}
        quantized: dict[str, np.ndarray] = {}
        remaining = dict(self._remaining)
        accumulators: dict[str, np.ndarray] = {}
        captured: dict[str, np.ndarray] = {}
        counts: dict[str, dict] = {}
        keep = set(capture) | set(graph.outputs)
        for op in graph.ops:
            if op.name in self.skip:
                continue
            if op.kind == "input":
                expect = tuple(op.output_shape)
                if tuple(x.shape[1:]) != expect:
                    raise HwSimError(f"inputs have shape {x.shape[1:]}, the model expects {expect}")
                values[op.name] = np.asarray(x, dtype=np.float32)
            elif op.is_compute:
                plan = self.plans[op.name]
                t0 = time.perf_counter()
                x_in = self._input(plan, values, quantized)
                t1 = time.perf_counter()
                acc, counts[op.name] = self._kernel(plan, x_in)
                t2 = time.perf_counter()
                if keep_accumulators:
                    accumulators[op.name] = acc
                if plan.thresholds is not None:
                    quantized[plan.tail] = plan.thresholds.apply(acc)
                    counts[op.name]["threshold_compares"] = (
                        acc.size * plan.thresholds.compares_per_output
                    )
                else:
                    values[op.name] = epilogue(op, acc, plan.act_scale)
                self.seconds["input quantization"] += t1 - t0
                self.seconds[f"kernel: {plan.kernel}"] += t2 - t1
                self.seconds["thresholds / epilogue"] += time.perf_counter() - t2
            else:
                t0 = time.perf_counter()
                values[op.name] = _elementwise(op, [values[n] for n in op.inputs])
                self.seconds["vector ops (BN, add, pool, ...)"] += time.perf_counter() - t0
            for name in op.inputs:  # free tensors nobody reads any more
                remaining[name] -= 1
                if remaining[name] == 0 and name not in keep:
                    values.pop(name, None)
            if op.name in capture:
                captured[op.name] = values[op.name]
        outputs = [values[n] for n in graph.outputs]
        return ForwardResult(outputs, accumulators, captured, counts)

    def run(
        self,
        x: np.ndarray,
        batch_size: int = 64,
        keep_accumulators: bool = False,
        progress: bool = False,
        on_batch=None,
    ) -> EmulationResult:
        """Run all of ``x`` in batches; concatenate outputs, sum counts.

        ``on_batch(x_batch, forward_result)`` is called after each batch (its accumulators
        are filled when ``on_batch`` is given, without being kept for the result).
        """
        x = np.asarray(x)
        if len(x) == 0:
            raise HwSimError("no input images to emulate")
        outs: dict[str, list] = {n: [] for n in self.graph.outputs}
        accs: dict[str, list] = {}
        counts: dict[str, dict] = {}
        starts = range(0, len(x), batch_size)
        if progress:
            from tqdm import tqdm

            starts = tqdm(starts, desc="emulate", unit="batch", leave=False)
        for start in starts:
            batch = x[start : start + batch_size]
            res = self.forward(batch, keep_accumulators=keep_accumulators or on_batch is not None)
            if on_batch is not None:
                on_batch(batch, res)
            if not keep_accumulators:
                res.accumulators.clear()
            for name, value in zip(self.graph.outputs, res.outputs, strict=True):
                outs[name].append(value)
            for name, value in res.accumulators.items():
                accs.setdefault(name, []).append(value)
            for name, c in res.counts.items():
                _add_counts(counts.setdefault(name, {}), c)
        return EmulationResult(
            outputs={n: np.concatenate(v) for n, v in outs.items()},
            accumulators={n: np.concatenate(v) for n, v in accs.items()},
            counts=counts,
            plans=[p.describe() for p in self.plans.values()],
            act_mode=self.act_mode,
            backend=self.backend,
            scales=self.scales,
            images=len(x),
        )


def _to_graph(model) -> Graph:
    from hw_sim.analysis import to_graph

    return to_graph(model)


def run(model, x: np.ndarray, *, return_result: bool = False, batch_size: int = 64, **kwargs):
    """Emulate ``model`` (Graph, model file or tf.keras model) on images ``x``.

    Keyword arguments go to :class:`Emulator` (``act_mode``, ``scales``, ``calibration``,
    ``backend``, ``fuse``, ``percentile``). Returns the logits ``(B, classes)``, or the
    :class:`EmulationResult` (with per-layer counts) when ``return_result`` is True.
    """
    keep = kwargs.pop("keep_accumulators", False)
    emu = Emulator(_to_graph(model), **kwargs)
    result = emu.run(x, batch_size=batch_size, keep_accumulators=keep)
    return result if return_result else result.logits
