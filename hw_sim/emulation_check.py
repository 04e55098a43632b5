"""Check an emulation: measured counts next to the analytic ones, and agreement with Keras.

* :func:`emulation_report`: per compute layer, the data-dependent counts of the emulation
  (per image) beside the analytic counts of :mod:`hw_sim.accelerators` (``bitwise`` for
  popcount layers, ``zeroskip`` for add/subtract layers), measured activation sparsity,
  and compute energy from the measured actions (same technology table).
* :func:`compare_with_keras`: runs the Keras model and the emulator batch by batch and
  reports, free-running (the emulator on its own activations), top-1 agreement, the
  largest logit difference and, per layer, whether the integer accumulators equal the Keras
  layer outputs exactly; and teacher-forced (each layer fed the input Keras computed for
  it), whether every integer accumulator is exact and every float layer within rounding.

The ``--emulate`` option of ``python -m hw_sim`` (:mod:`hw_sim.__main__`) puts both in the
profile report.
"""

from __future__ import annotations

import numpy as np

from hw_sim.ir import Graph
from keras_ternary.layer_table import layer_of_earlier_kernel_op

__all__ = ["ACC_TOLERANCE", "FLOAT_TOLERANCE", "compare_with_keras", "emulation_report"]


def _measured_actions(op, counts: dict, tech) -> dict[str, float]:
    """Compute actions actually executed by one layer (totals over the images).

    A float-kernel layer's MACs are priced like the analytic count (``float_kernel_fallback``:
    at the table's ``other_precision``, an int8 kernel at int8).
    """
    from hw_sim.accelerators.bitwise import SHARED_OPS, WORD_OPS

    actions: dict[str, float] = {}

    def add(name: str, n: float) -> None:
        if n:
            actions[name] = actions.get(name, 0) + n

    kernel = counts["kernel"]
    if kernel == "popcount":
        key = (op.act_precision, op.weight_precision)
        executed = counts["words_executed"]
        per_word = WORD_OPS[key]
        for action, n in per_word.items():
            add(action, n * executed)
        shared = counts["popcounts"] - per_word["popcnt64"] * executed
        for action, n in SHARED_OPS.get(key, {}).items():
            add(action, n * shared)
        add("int32_add", counts["positions"] * op.out_channels)  # acc_1 - 2·acc_2
    elif kernel == "addsub":
        add(
            "int32_add" if counts["variant"].startswith("int8") else "fp32_add",
            counts["adds_executed"],
        )
    else:
        from hw_sim.accelerators.common import float_layer_precision
        from hw_sim.technology import MAC_ACTIONS

        for action in MAC_ACTIONS[float_layer_precision(op, tech)]:
            add(action, counts["macs"])
    add("int32_add", counts.get("threshold_compares", 0))  # a comparison is a subtraction
    return actions


def emulation_report(graph: Graph, result, tech=None) -> dict:
    """Per-layer measured vs analytic counts and compute energy (per image)."""
    from hw_sim.accelerators import ACCELERATORS
    from hw_sim.analysis import energy_pj
    from hw_sim.technology import load_tech

    tech = load_tech(tech)
    n = result.images
    plans = {p["name"]: p for p in result.plans}
    layers = []
    for op in graph.compute_ops:
        c = result.counts[op.name]
        kernel = c["kernel"]
        model = ACCELERATORS["zeroskip" if kernel == "addsub" else "bitwise"]
        lc = model.count_compute(op, graph, tech)
        measured_actions = {a: v / n for a, v in _measured_actions(op, c, tech).items()}
        row = {
            "name": op.name,
            "kernel": kernel,
            "variant": c["variant"],
            "thresholds": plans[op.name]["thresholds"],
            "act_sparsity": c["act_zeros"] / c["act_values"] if c["act_values"] else None,
            "macs": c["macs"] / n,
            "analytic": {
                "accelerator": model.name,
                "unit": lc.unit,
                "executed": float(lc.executed),
                "skipped": float(lc.skipped),
            },
            "energy_pj_compute": {
                "analytic": energy_pj({"compute": lc.actions.get("compute", {})}, tech, model)[
                    "total"
                ],
                "measured": energy_pj({"compute": measured_actions}, tech, model)["total"],
            },
        }
        if kernel == "popcount":
            row["measured"] = {
                "unit": "word-ops",
                "executed_static": c["words_executed_static"] / n,
                "executed": c["words_executed"] / n,
                "skipped_zero_weight": c["words_skipped_zero_weight"] / n,
                "skipped_zero_act": c["words_skipped_zero_act"] / n,
                "popcounts": c["popcounts"] / n,
            }
        elif kernel == "addsub":
            row["measured"] = {
                "unit": "adds",
                "executed_static": c["adds_static"] / n,
                "executed": c["adds_executed"] / n,
                "skipped_zero_weight": c["skipped_zero_weight"] / n,
                "skipped_zero_act": c["skipped_zero_act"] / n,
                "skipped_padding": c["skipped_padding"] / n,
            }
        else:
            row["measured"] = {"unit": "MACs", "executed": c["macs"] / n}
        layers.append(row)
    total = {
        "macs": sum(r["macs"] for r in layers),
        "energy_pj_compute": {
            k: sum(r["energy_pj_compute"][k] for r in layers) for k in ("analytic", "measured")
        },
    }
    return {
        "images": n,
        "act_mode": result.act_mode,
        "backend": result.backend,
        "calibration": {k: v for k, v in result.scales.items()},
        "layers": layers,
        "total": total,
    }


def _keras_model(model, safe_mode: bool = True):
    if isinstance(model, str):
        from hw_sim.loaders.keras import _check_container, _import_tf
        from keras_ternary.modelfile import keras_load

        _check_container(model, safe_mode)
        _import_tf()
        return keras_load(model, compile=False, safe_mode=safe_mode)
    return model


#: An integer accumulator is a mismatch when it differs from Keras' by more than this (Keras'
#: output minus the bias, divided by a channel scale, in float64): Keras' value must round to
#: the emulator's integer. Any wrong term moves an accumulator by a whole unit or more (a
#: flipped sign by 2), while Keras' float32 sum of thousands of ±scale terms, in whatever
#: order oneDNN picks on a CPU (blocking, threads, Winograd), lands within a small fraction
#: of a unit; a tighter bound (it was 1e-3) made the verdict depend on the CPU and its load.
ACC_TOLERANCE = 0.5
#: A teacher-forced float layer agrees when ``max |emulated - Keras|`` of its accumulators is
#: at most this times ``max(1, max |Keras|)`` (fp32 sums in another order differ by ulps).
FLOAT_TOLERANCE = 1e-4


def _linear_twin(layer, tf):
    """``layer``, or for a fused activation (``activation="relu"`` etc.) a built twin with
    ``activation="linear"`` and the same weights: the accumulators are pre-activation values.
    """
    activation = getattr(layer, "activation", None)
    if activation is None or tf.keras.activations.serialize(activation) == "linear":
        return layer
    config = {**layer.get_config(), "activation": "linear", "name": f"{layer.name}_pre_act"}
    twin = type(layer).from_config(config)
    twin(tf.zeros((1, *layer.input_shape[1:])))  # builds it (quantizers' Δ included)
    twin.set_weights(layer.get_weights())
    return twin


def _expected_accumulators(op, keras_output: np.ndarray) -> np.ndarray:
    """Keras' pre-activation output of ``op``'s layer in accumulator units (float64): minus
    the bias, divided by the channel scale."""
    expected = np.asarray(keras_output, dtype=np.float64)
    if op.bias is not None:
        expected = expected - op.bias
    if op.weight_scale is not None:
        expected = expected / op.weight_scale
    return expected


def _near_threshold(x: np.ndarray, q) -> np.ndarray:
    """Where ``x`` lies within float32 rounding (4 ulps) of quantizer ``q``'s threshold."""
    x = np.asarray(x, dtype=np.float32)
    if q.kind == "sign":
        return np.abs(x) <= np.finfo(np.float32).tiny
    delta = np.float32(q.delta)
    return np.abs(np.abs(x) - delta) <= 4 * np.spacing(delta)


def _teacher_forced_units(graph, emulator, keras) -> tuple[dict[str, str], dict[str, str]]:
    """``({Keras layer: IR op fed its input}, {op: why not compared})``.

    A layer is usually one op, fed the layer's input. A separable convolution is two ops
    (``<name>/depthwise``, then ``<name>``) with no Keras tensor between them: the depthwise op
    is fed the layer's input and the 1×1 op the emulator's depthwise output, compared as a
    float layer; with int8 activations the 1×1 op quantizes a float Keras never computes,
    so the layer is not compared.
    """
    units: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for op in graph.compute_ops:
        first = op.name
        producer = graph.op(op.inputs[0])
        if layer_of_earlier_kernel_op(op.name) is not None:
            continue  # compared with its 1×1 op
        if layer_of_earlier_kernel_op(producer.name) == op.name and producer.is_compute:
            first = producer.name
            if emulator.plans[op.name].integer:
                for name in (first, op.name):
                    skipped[name] = "separable with int8 activations between its two ops"
                continue
        q = emulator.plans[first].op.input_quantizer
        if q is not None and q.kind != "sign" and q.delta >= 1:
            skipped[op.name] = "input quantizer's Δ >= 1 would quantize the ±1 fed to Keras again"
            continue
        try:
            keras.get_layer(op.name)
        except ValueError:
            skipped[op.name] = "no Keras layer of this name"
            continue
        units[op.name] = first
    return units, skipped


class _TeacherForced:
    """Per-layer statistics of the teacher-forced comparison (see :func:`compare_with_keras`).

    Each compute op is fed what Keras computed as its layer's input. A layer with an input
    quantizer gets the values TensorFlow's quantizer (the Keras layer's own) makes of it;
    an int8 layer gets the emulator's int8 quantization of it; a float layer the float
    values. The same values go into the emulator's kernel and into the Keras layer (its
    input quantizer leaves quantized values unchanged), so Keras' output in accumulator
    units must round to the emulator's integer whatever the CPU (:data:`ACC_TOLERANCE`;
    with a scaled kernel Keras sums ±scale terms in float32). The emulator's own quantizer is
    compared with TensorFlow's on the same float input separately; a disagreement within
    float rounding of the threshold is counted apart from one that is not.
    """

    def __init__(self, emulator, keras, units: dict[str, str], skipped: dict[str, str], twin, tf):
        self.emulator, self.tf, self.skipped, self.first = emulator, tf, skipped, units
        self.layers = {n: keras.get_layer(n) for n in units}
        self.twins = {n: twin(n) for n in units}
        self.stats: dict[str, dict] = {}
        for name, first in units.items():
            plan = emulator.plans[name]
            integer = plan.integer and first == name
            s = {"kind": "integer" if integer else "float", "values": 0}
            s.update({"mismatches": 0} if integer else {"max_abs_diff": 0.0, "max_abs": 0.0})
            if first != name:
                s["ops"] = [first, name]
            if emulator.plans[first].op.input_quantizer is not None:
                s.update(quantizer_values=0, quantizer_mismatches=0, quantizer_at_threshold=0)
            self.stats[name] = s

    def inputs(self) -> list:
        """The Keras tensors to capture: each layer's input."""
        return [layer.input for layer in self.layers.values()]

    def update(self, captured: list[np.ndarray]) -> None:
        """Feed one batch of captured layer inputs to the emulator's kernels and to Keras."""
        from hw_sim.emulate import epilogue

        tf, emulator = self.tf, self.emulator
        for (name, layer), x in zip(self.layers.items(), captured, strict=True):
            first, s = self.first[name], self.stats[name]
            q = emulator.plans[first].op.input_quantizer
            if q is not None:
                fed = np.asarray(layer.input_quantizer(tf.constant(x, tf.float32)))
                fed = fed.astype(np.int8)
                differ = emulator.kernel_input(first, x) != fed
                near = _near_threshold(x, q)
                s["quantizer_values"] += fed.size
                s["quantizer_mismatches"] += int(np.count_nonzero(differ & ~near))
                s["quantizer_at_threshold"] += int(np.count_nonzero(differ & near))
            else:
                fed = emulator.kernel_input(first, x)
            acc = emulator.accumulate(first, fed)
            if first != name:  # separable: the 1×1 op reads the emulated depthwise output
                plan = emulator.plans[first]
                mid = epilogue(plan.op, acc, plan.act_scale)
                acc = emulator.accumulate(name, emulator.kernel_input(name, mid))
            acc = acc.astype(np.float64)
            ref = self.twins[name](tf.constant(fed.astype(np.float32)))
            diff = np.abs(acc - _expected_accumulators(emulator.plans[name].op, np.asarray(ref)))
            s["values"] += acc.size
            if s["kind"] == "integer":
                s["mismatches"] += int(np.count_nonzero(diff > ACC_TOLERANCE))
            else:
                s["max_abs_diff"] = max(s["max_abs_diff"], float(diff.max(initial=0.0)))
                s["max_abs"] = max(s["max_abs"], float(np.abs(acc).max(initial=0.0)))

    def summary(self) -> dict:
        """The ``teacher_forced`` section of the agreement."""
        layers = {}
        for name, s in self.stats.items():
            s = dict(s)
            if s["kind"] == "integer":
                s["exact"] = s["mismatches"] == 0
            else:
                s["close"] = s["max_abs_diff"] <= FLOAT_TOLERANCE * max(1.0, s["max_abs"])
            layers[name] = s
        integer = [s for s in layers.values() if s["kind"] == "integer"]
        floats = [s for s in layers.values() if s["kind"] == "float"]
        out = {
            "layers": layers,
            "skipped": dict(self.skipped),
            "accumulators_exact": all(s["exact"] for s in integer),
            "float_close": all(s["close"] for s in floats),
            "quantizer_mismatches": sum(s.get("quantizer_mismatches", 0) for s in layers.values()),
            "quantizer_at_threshold": sum(
                s.get("quantizer_at_threshold", 0) for s in layers.values()
            ),
        }
        out["agrees"] = (
            out["accumulators_exact"] and out["float_close"] and not out["quantizer_mismatches"]
        )
        return out


def compare_with_keras(
    model,
    emulator,
    x: np.ndarray,
    batch_size: int = 64,
    progress=False,
    safe_mode: bool = True,
    teacher_forced: bool = True,
):
    """Run Keras and the emulator on ``x``; return ``(agreement dict, EmulationResult)``.

    Free-running (what a deployment computes): the emulator runs on its own activations;
    ``top1_agreement``, ``max_abs_logit_diff`` and, per layer whose accumulators are
    integers, ``accumulators`` (mismatches against the Keras output before the layer's
    fused activation, minus its bias, divided by a channel scale). A value that lies within
    float rounding of a quantizer threshold can quantize differently in TensorFlow and numpy
    and the flip propagates downstream, so these may differ by a few values on some CPUs.

    Teacher-forced (``teacher_forced=True``; ``agreement["teacher_forced"]``): each compute
    op is fed its Keras layer's input (see :class:`_TeacherForced`): integer accumulators
    must then be exact on any CPU, float layers within :data:`FLOAT_TOLERANCE`, and the
    emulator's input quantizers equal to TensorFlow's away from thresholds (``agrees``).
    """
    keras = _keras_model(model, safe_mode)
    graph = emulator.graph
    # integer accumulators Keras computes as a layer's output: not int8 ones (Keras sums the
    # float values) nor a separable convolution's depthwise part (no Keras tensor)
    names = [
        op.name
        for op in graph.compute_ops
        if emulator.plans[op.name].integer
        and emulator.plans[op.name].act != "int8"
        and layer_of_earlier_kernel_op(op.name) is None
    ]
    import tensorflow as tf

    twins: dict = {}

    def twin(name: str):
        if name not in twins:
            twins[name] = _linear_twin(keras.get_layer(name), tf)
        return twins[name]

    forced = None
    if teacher_forced:
        forced = _TeacherForced(
            emulator, keras, *_teacher_forced_units(graph, emulator, keras), twin, tf
        )

    def pre_activation(name: str):
        """The layer's output, or its linear twin's on the same input (a fused activation)."""
        layer = keras.get_layer(name)
        linear = twin(name)
        return layer.output if linear is layer else linear(layer.input)

    captures = forced.inputs() if forced else []
    probe = tf.keras.Model(
        keras.inputs, [pre_activation(n) for n in names] + captures + [keras.output]
    )
    stats = {n: {"values": 0, "mismatches": 0} for n in names}
    logits: list[np.ndarray] = []

    def on_batch(batch: np.ndarray, res) -> None:
        outs = probe(batch, training=False)
        outs = [np.asarray(o) for o in (outs if isinstance(outs, list) else [outs])]
        for name, ref in zip(names, outs[: len(names)], strict=True):
            acc = res.accumulators[name].astype(np.float64)
            expected = _expected_accumulators(graph.op(name), ref)
            stats[name]["values"] += acc.size
            stats[name]["mismatches"] += int(
                np.count_nonzero(np.abs(acc - expected) > ACC_TOLERANCE)
            )
        if forced is not None:
            forced.update(outs[len(names) : -1])
        logits.append(outs[-1])

    result = emulator.run(x, batch_size=batch_size, progress=progress, on_batch=on_batch)
    ref = np.concatenate(logits)
    emu = result.logits
    agreement = {
        "top1_agreement": float(np.mean(ref.argmax(-1) == emu.argmax(-1))),
        "max_abs_logit_diff": float(np.max(np.abs(ref - emu))),
        "accumulators": {
            n: {**s, "exact": s["mismatches"] == 0} for n, s in stats.items() if s["values"]
        },
    }
    agreement["accumulators_exact"] = all(s["exact"] for s in agreement["accumulators"].values())
    if forced is not None:
        agreement["teacher_forced"] = forced.summary()
    agreement["keras_logits"] = ref
    return agreement, result
