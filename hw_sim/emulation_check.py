"""Check an emulation: measured counts next to the analytic ones, and agreement with Keras.

* :func:`emulation_report`: per compute layer, the data-dependent counts of the emulation
  (per image) beside the analytic counts of :mod:`hw_sim.accelerators` (``bitwise`` for
  popcount layers, ``zeroskip`` for add/subtract layers), measured activation sparsity,
  and compute energy from the measured actions (same technology table).
* :func:`compare_with_keras`: runs the Keras model and the emulator batch by batch and
  reports top-1 agreement, the largest logit difference and, per layer, whether the
  integer accumulators equal the Keras layer outputs exactly.

The ``--emulate`` option of ``python -m hw_sim`` (:mod:`hw_sim.__main__`) puts both in the
profile report.
"""

from __future__ import annotations

import numpy as np

from hw_sim.ir import Graph

__all__ = ["compare_with_keras", "emulation_report"]


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

        _check_container(model, safe_mode)
        tf = _import_tf()
        return tf.keras.models.load_model(model, compile=False, safe_mode=safe_mode)
    return model


def _pre_activation_output(layer, tf):
    """The output of ``layer`` before its fused activation (``activation="relu"`` etc.).

    The accumulators are pre-activation values; for a layer with a fused activation the
    comparison reads a twin of the layer with ``activation="linear"`` and the same weights,
    applied to the same input.
    """
    activation = getattr(layer, "activation", None)
    if activation is None or tf.keras.activations.serialize(activation) == "linear":
        return layer.output
    config = {**layer.get_config(), "activation": "linear", "name": f"{layer.name}_pre_act"}
    twin = type(layer).from_config(config)
    output = twin(layer.input)
    twin.set_weights(layer.get_weights())
    return output


def compare_with_keras(
    model, emulator, x: np.ndarray, batch_size: int = 64, progress=False, safe_mode: bool = True
):
    """Run Keras and the emulator on ``x``; return ``(agreement dict, EmulationResult)``.

    A layer's accumulators are compared when they are integers: the Keras output before the
    layer's fused activation, minus its bias, must equal them exactly (a channel scale is
    divided out first).
    """
    keras = _keras_model(model, safe_mode)
    graph = emulator.graph
    names = [op.name for op in graph.compute_ops if emulator.plans[op.name].integer]
    import tensorflow as tf

    probe = tf.keras.Model(
        keras.inputs,
        [_pre_activation_output(keras.get_layer(n), tf) for n in names] + [keras.output],
    )
    stats = {n: {"values": 0, "mismatches": 0} for n in names}
    logits: list[np.ndarray] = []

    def on_batch(batch: np.ndarray, res) -> None:
        outs = probe(batch, training=False)
        outs = [np.asarray(o) for o in (outs if isinstance(outs, list) else [outs])]
        for name, ref in zip(names, outs[:-1], strict=True):
            op = graph.op(name)
            expected = ref.astype(np.float64)
            if op.bias is not None:
                expected = expected - op.bias
            if op.weight_scale is not None:
                expected = expected / op.weight_scale
            if op.act_precision == "float32" and emulator.plans[name].act_scale:
                continue  # int8 accumulators are not the Keras float pre-activations
            acc = res.accumulators[name].astype(np.float64)
            stats[name]["values"] += acc.size
            stats[name]["mismatches"] += int(np.count_nonzero(np.abs(acc - expected) > 1e-3))
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
    agreement["keras_logits"] = ref
    return agreement, result
