"""``python -m hw_sim MODEL [--accelerator ...] [--tech FILE] [--import MODULE] [--emulate N ...]``.

The command line of hw_sim (also ``python -m hw_sim.profile``): :func:`add_arguments` and
:func:`run` follow the convention of :mod:`keras_ternary.cliutil`. Bad input (missing or
corrupt model file, unsupported layer, bad technology file or option) gives one
``hw_sim: error: ...`` line on stderr and exit status 2; nothing is written half-way
(outputs go to a temporary file first, then ``os.replace``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

import numpy as np

from hw_sim.accelerators import ACCELERATORS
from hw_sim.errors import HwSimError
from hw_sim.ir import Graph
from hw_sim.technology import OTHER_PRECISIONS
from keras_ternary.cliutil import Parser, add_import_argument, import_modules, run_guarded
from keras_ternary.fileio import WriteError, atomic_write, check_not_input

__all__ = ["add_arguments", "emulation_from_args", "load_inputs", "main", "run"]

FORMATS = ("table", "json", "csv")
DEFAULT_ACCELERATOR = "bitwise"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m hw_sim``; ``--accelerator`` offers every registered model."""
    parser.add_argument(
        "model",
        help="model file: .h5 / .keras (keras_ternary or larq model) or .tflite (exported by "
        "`python -m keras_ternary export`)",
    )
    parser.add_argument(
        "--accelerator",
        default=DEFAULT_ACCELERATOR,
        choices=(*ACCELERATORS, "all"),
        help="accelerator model: "
        + ", ".join(m.title for m in ACCELERATORS.values())
        + ", or all of them (default: %(default)s); FP32/INT8/binary baselines are always "
        "reported",
    )
    parser.add_argument(
        "--tech",
        metavar="FILE",
        help="YAML or JSON file overriding entries of the technology table "
        "(default table: hw_sim/tech/horowitz45.yaml, Horowitz ISSCC 2014, 45 nm)",
    )
    parser.add_argument(
        "--other-precision",
        choices=OTHER_PRECISIONS,
        help="precision at which every accelerator and every baseline runs the layers whose "
        "kernel is not ternary/binary (e.g. a float first/last layer) and stores float "
        "tensors and weights (default: the technology table's other_precision, int8; "
        "float32 gives the counts of hw_sim before this option)",
    )
    parser.add_argument(
        "--format",
        default="table",
        choices=FORMATS,
        help="report format: a per-layer table, JSON, or CSV (default: %(default)s)",
    )
    parser.add_argument("--out", metavar="FILE", help="write the report here instead of stdout")
    parser.add_argument(
        "--plot", metavar="FILE.png", help="energy breakdown per layer and component"
    )
    parser.add_argument(
        "--unsafe-load",
        action="store_true",
        help="allow the model to hold Python code (a Lambda layer), which loading runs; by "
        "default such a model is refused (Keras' safe_mode, applied to .h5 too)",
    )
    add_import_argument(parser)
    _add_emulation_arguments(parser)


def _add_emulation_arguments(parser: argparse.ArgumentParser) -> None:
    """``--emulate N [--inputs FILE.npz | --data-dir DIR]`` and emulation options."""
    group = parser.add_argument_group("emulation (bit-exact, on the accelerator kernels)")
    group.add_argument(
        "--emulate",
        type=int,
        metavar="N",
        help="run N images bit-exactly on the accelerator kernels and add agreement with "
        "Keras (free-running, and teacher-forced: each layer fed Keras' input for it), "
        "measured activation sparsity and data-dependent counts/energy to the report",
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
        "--no-compare",
        action="store_true",
        help="skip running the Keras model (both agreement checks)",
    )


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


def emulation_from_args(
    args: argparse.Namespace, graph: Graph, model_path: str | None, tech=None
) -> dict | None:
    """The ``emulation`` report section for parsed ``args``; None without ``--emulate``."""
    if not getattr(args, "emulate", None):
        return None
    if args.emulate < 1 or args.batch_size < 1:
        raise HwSimError("--emulate and --batch-size must be >= 1")
    from hw_sim.emulate import Emulator
    from hw_sim.emulation_check import compare_with_keras, emulation_report

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


def _check_output(path: str) -> None:
    """Refuse an output path whose directory is missing or that names a directory."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise HwSimError(f"cannot write {path}: directory does not exist")
    if os.path.isdir(path):
        raise HwSimError(f"cannot write {path}: it is a directory")


def _check_not_input(path: str, args: argparse.Namespace) -> None:
    """Refuse an output path that is one of the inputs (the model, --tech, --inputs)."""
    inputs = {
        "the model": args.model,
        "the --tech file": args.tech,
        "the --inputs file": getattr(args, "inputs", None),
    }
    try:
        check_not_input(path, inputs)
    except OSError as exc:
        raise HwSimError(str(exc).replace("--out", "the output", 1)) from None


@contextlib.contextmanager
def _quiet_native_stderr(imports=()):
    """Drop TensorFlow's native start-up lines while a model loads; keep any other output.

    See :mod:`keras_ternary.tflog` (``KERAS_TERNARY_TF_LOG=1`` or ``HW_SIM_DEBUG=1`` show
    everything). Python-level errors still propagate and are printed by :func:`main`.
    """
    if os.environ.get("HW_SIM_DEBUG"):
        from keras_ternary import _register_with_keras

        _register_with_keras()
        import_modules(imports)
        yield
        return
    from keras_ternary import _register_with_keras
    from keras_ternary.tflog import filtered_stderr, quiet_entry_point

    quiet_entry_point()
    with filtered_stderr():
        _register_with_keras()  # registers our classes with Keras (keras_ternary/__init__.py)
        import_modules(imports)  # --import: other packages' custom objects (e.g. larq_zoo)
        yield


def run(args: argparse.Namespace) -> int:
    """Profile, emulate if asked, write the outputs; raises :class:`HwSimError` on bad input."""
    if args.plot and not args.plot.lower().endswith(".png"):
        raise HwSimError(f"--plot needs a .png file name, got {args.plot!r}")
    for path in (args.plot, args.out):  # before the (slow) model load; nothing half-written
        if path:
            _check_output(path)
            _check_not_input(path, args)
    from hw_sim.analysis import profile_model, to_graph
    from hw_sim.tables import to_csv, to_json, to_table
    from hw_sim.technology import load_tech

    tech = load_tech(args.tech).with_other_precision(args.other_precision)

    tflite = args.model.lower().endswith(".tflite") and not args.imports  # no TensorFlow
    with contextlib.nullcontext() if tflite else _quiet_native_stderr(args.imports):
        graph = to_graph(args.model, safe_mode=not args.unsafe_load)
        result = profile_model(graph, accelerator=args.accelerator, tech=tech)
    if args.emulate is not None:
        result["emulation"] = emulation_from_args(args, graph, args.model, tech=tech)
    text = {"table": to_table, "json": to_json, "csv": to_csv}[args.format](result)
    if args.plot:
        from hw_sim.plot import plot_energy

        plot_energy(result, args.plot)
    if args.out:
        atomic_write(args.out, text)
        print(_written(args, result))
    else:
        sys.stdout.write(text)
    return 0


def _written(args: argparse.Namespace, result: dict) -> str:
    """What ``--out`` (and ``--plot``) received, like ``keras_ternary export`` says it."""
    from hw_sim.tables import reports_of

    names = ", ".join(reports_of(result))
    return (
        f"wrote {args.out}: {args.format} report of {args.model} on "
        f"{names}"
        + (" with emulation" if result.get("emulation") else "")
        + (f"; plot {args.plot}" if args.plot else "")
    )


def main(argv: list[str] | None = None, prog: str = "python -m hw_sim") -> int:
    """Entry point: exit status 0, 2 with one error line on stderr, or 1 (unexpected)."""

    def body() -> int:
        parser = Parser(
            prog=prog,
            description="Count actions and estimate energy of a ternary/binary network on "
            "accelerator models, against FP32, INT8 and binary baselines.",
        )
        add_arguments(parser)
        return run(parser.parse_args(argv))

    return run_guarded(
        body, lambda: (HwSimError, WriteError), prefix="hw_sim: ", debug_env="HW_SIM_DEBUG"
    )


if __name__ == "__main__":
    sys.exit(main())
