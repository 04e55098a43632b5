"""Reports of an emulation: measured counts next to analytic ones, Keras agreement, CLI.

* :func:`emulation_report`: per compute layer, the data-dependent counts of the emulation
  (per image) beside the analytic counts of :mod:`hw_sim.accelerators` (``bitwise`` for
  popcount layers, ``zeroskip`` for add/subtract layers), measured activation sparsity,
  and compute energy from the measured actions (same technology table).
* :func:`compare_with_keras`: runs the Keras model and the emulator batch by batch and
  reports top-1 agreement, the largest logit difference and, per layer, whether the
  integer accumulators equal the Keras layer outputs exactly.
* :func:`add_cli_arguments` / :func:`report_from_args`: the ``--emulate`` hook of
  ``python -m hw_sim.profile``.
"""

from __future__ import annotations

import numpy as np

from hw_sim.errors import HwSimError
from hw_sim.ir import Graph

__all__ = [
    "add_cli_arguments",
    "compare_with_keras",
    "emulation_report",
    "load_inputs",
    "report_from_args",
]


def _measured_actions(op, counts: dict) -> dict[str, float]:
    """Compute actions actually executed by one layer (totals over the images)."""
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
        add("fp32_mult", counts["macs"])
        add("fp32_add", counts["macs"])
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
        measured_actions = {a: v / n for a, v in _measured_actions(op, c).items()}
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
                "analytic": energy_pj({"compute": lc.actions.get("compute", {})}, tech)["total"],
                "measured": energy_pj({"compute": measured_actions}, tech)["total"],
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


def compare_with_keras(
    model, emulator, x: np.ndarray, batch_size: int = 64, progress=False, safe_mode: bool = True
):
    """Run Keras and the emulator on ``x``; return ``(agreement dict, EmulationResult)``.

    A layer's accumulators are compared when they are integers: the Keras output minus
    its bias must equal them exactly (a channel scale is divided out first).
    """
    keras = _keras_model(model, safe_mode)
    graph = emulator.graph
    names = [op.name for op in graph.compute_ops if emulator.plans[op.name].integer]
    import tensorflow as tf

    probe = tf.keras.Model(
        keras.inputs, [keras.get_layer(n).output for n in names] + [keras.output]
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


def load_inputs(inputs: str | None, data_dir: str | None, n: int):
    """``(x, y or None, x_calibration or None, description)`` for ``--emulate``.

    ``--inputs FILE.npz``: array ``x`` (float: used as is; uint8: normalised with the
    CIFAR-10 mean/std of training) and optional ``y``; ``--data-dir``: the CIFAR-10 test
    set, normalised as in training, with 512 training images for int8 calibration.
    """
    if bool(inputs) == bool(data_dir):
        raise HwSimError("--emulate needs exactly one of --inputs FILE.npz or --data-dir DIR")
    from keras_ternary.data import CIFAR10_MEAN, CIFAR10_STD

    def normalise(images: np.ndarray) -> np.ndarray:
        x = images.astype(np.float32) / np.float32(255.0)
        return (x - np.float32(CIFAR10_MEAN)) / np.float32(CIFAR10_STD)

    if inputs:
        from keras_ternary.fileio import check_input_file

        try:  # a FIFO or device would block np.load
            check_input_file(inputs, "array", "--inputs file")
        except OSError as exc:
            raise HwSimError(str(exc)) from None
        try:
            with np.load(inputs) as f:
                if "x" not in f:
                    raise HwSimError(f"{inputs}: no array named 'x'")
                x, y = f["x"], f.get("y")
        except (OSError, ValueError) as exc:
            raise HwSimError(f"{inputs}: cannot read .npz ({exc})") from None
        if x.dtype == np.uint8:
            x = normalise(x)
        x = x.astype(np.float32)[:n]
        return x, None if y is None else np.asarray(y).reshape(-1)[:n], None, inputs
    from keras_ternary.data import DataError, load_cifar10_binary

    try:
        data = load_cifar10_binary(data_dir)
    except DataError as exc:
        raise HwSimError(str(exc)) from None
    calib = normalise(data.x_train[:512])
    return normalise(data.x_test[:n]), data.y_test[:n], calib, f"CIFAR-10 test set ({data_dir})"


def add_cli_arguments(parser) -> None:
    """``--emulate N [--inputs FILE.npz | --data-dir DIR]`` and emulation options."""
    group = parser.add_argument_group("emulation (bit-exact, on the accelerator kernels)")
    group.add_argument(
        "--emulate",
        type=int,
        metavar="N",
        help="run N images bit-exactly on the accelerator kernels and add agreement with "
        "Keras, measured activation sparsity and data-dependent counts/energy to the report",
    )
    group.add_argument(
        "--inputs",
        metavar="FILE.npz",
        help="images as array 'x' (uint8 images are normalised like CIFAR-10 training; float "
        "used as is) and optional labels 'y'",
    )
    group.add_argument(
        "--data-dir",
        metavar="DIR",
        help="directory with the CIFAR-10 binary files: emulate the first N test images "
        "(512 training images calibrate int8 activations)",
    )
    group.add_argument(
        "--act-mode",
        default="auto",
        choices=("auto", "int8", "float"),
        help="activations entering float-activation layers: int8 (symmetric per tensor, "
        "calibrated), float, or auto (int8 when the model quantizes no activation; default)",
    )
    group.add_argument(
        "--backend",
        default="auto",
        choices=("auto", "numpy", "numba"),
        help="kernel implementation (auto: numba when installed; results are identical)",
    )
    group.add_argument(
        "--batch-size",
        type=int,
        default=64,
        help="images per emulated batch (default: %(default)s)",
    )
    group.add_argument(
        "--no-compare", action="store_true", help="skip running the Keras model for agreement"
    )


def report_from_args(args, graph: Graph, model_path: str | None, tech=None) -> dict | None:
    """The ``emulation`` report section for parsed ``args``; None without ``--emulate``."""
    if not getattr(args, "emulate", None):
        return None
    if args.emulate < 1 or args.batch_size < 1:
        raise HwSimError("--emulate and --batch-size must be >= 1")
    from hw_sim.emulate import Emulator

    x, y, calib, source = load_inputs(args.inputs, args.data_dir, args.emulate)
    emulator = Emulator(graph, act_mode=args.act_mode, calibration=calib, backend=args.backend)
    keras_ok = model_path is not None and model_path.lower().endswith((".h5", ".hdf5", ".keras"))
    agreement = None
    if keras_ok and not args.no_compare:
        agreement, result = compare_with_keras(
            model_path,
            emulator,
            x,
            args.batch_size,
            progress=True,
            safe_mode=not getattr(args, "unsafe_load", False),
        )
    else:
        result = emulator.run(x, batch_size=args.batch_size, progress=True)
    report = emulation_report(graph, result, tech)
    report["source"] = source
    if agreement is not None:
        keras_logits = agreement.pop("keras_logits")
        report["agreement"] = agreement
    if y is not None:
        report["accuracy"] = {"emulated": float(np.mean(result.logits.argmax(-1) == y))}
        if agreement is not None:
            report["accuracy"]["keras"] = float(np.mean(keras_logits.argmax(-1) == y))
    return report
