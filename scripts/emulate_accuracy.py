"""Test-set accuracy of a model emulated on the accelerator kernels vs Keras.

    python scripts/emulate_accuracy.py MODEL.h5 --data-dir /work/data/cifar-10-batches-bin
        [--images N] [--calibration 512] [--act-mode auto|int8|float] [--tolerance 0.5]
        [--backend auto|numpy|numba] [--batch-size 100] [--out FILE.json] [--check]

The test images are normalised as in training; int8 activation scales (float-activation
models) are calibrated on the first ``--calibration`` training images (max-abs, static
bounds for bounded activations; docs/emulation.md). Prints a JSON report: Keras and
emulated accuracy, their difference in percentage points, top-1 agreement, whether every
integer accumulator matched Keras exactly (free-running, and teacher-forced: each layer fed
Keras' input for it; docs/emulation.md), and ``within_tolerance``; ``--check`` makes the
exit status 1 when the difference exceeds ``--tolerance`` points. Bad input: one error
line on stderr, exit status 2.
"""

from __future__ import annotations

import keras_ternary  # noqa: F401  (tf.keras = Keras 2; registers the custom layers)

# isort: split
import argparse
import json
import sys
import time

import numpy as np

from hw_sim.emulate import Emulator
from hw_sim.emulation_check import compare_with_keras
from hw_sim.errors import HwSimError
from hw_sim.loaders import load_graph
from keras_ternary.fileio import WriteError, atomic_write


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise HwSimError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="emulate_accuracy.py", description=__doc__.splitlines()[0])
    p.add_argument("model", help="trained model (.h5 / .keras)")
    p.add_argument("--data-dir", required=True, help="CIFAR-10 binary directory")
    p.add_argument("--images", type=int, default=None, help="test images (default: all)")
    p.add_argument("--calibration", type=int, default=512, help="training images for int8")
    p.add_argument("--act-mode", default="auto", choices=("auto", "int8", "float"))
    p.add_argument("--backend", default="auto", choices=("auto", "numpy", "numba"))
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--tolerance", type=float, default=0.5, help="allowed |Δ accuracy| (points)")
    p.add_argument("--out", help="also write the JSON report here")
    p.add_argument("--check", action="store_true", help="exit 1 if beyond tolerance")
    return p


def measure(args) -> dict:
    """Run Keras and the emulator on the test set; return the report."""
    from keras_ternary.data import DataError, load_cifar10_binary

    if args.batch_size < 1 or args.calibration < 1 or (args.images is not None and args.images < 1):
        raise HwSimError("--images, --calibration and --batch-size must be >= 1")
    try:
        data = load_cifar10_binary(args.data_dir)
    except DataError as exc:
        raise HwSimError(str(exc)) from None
    mean, std = np.float32(data.mean), np.float32(data.std)

    def normalise(images: np.ndarray) -> np.ndarray:
        return (images.astype(np.float32) / np.float32(255.0) - mean) / std

    n = len(data.x_test) if args.images is None else min(args.images, len(data.x_test))
    x, y = normalise(data.x_test[:n]), data.y_test[:n]
    graph = load_graph(args.model)
    emulator = Emulator(
        graph,
        act_mode=args.act_mode,
        calibration=normalise(data.x_train[: args.calibration]),
        backend=args.backend,
    )
    start = time.perf_counter()
    agreement, result = compare_with_keras(
        args.model, emulator, x, args.batch_size, progress=sys.stderr.isatty()
    )
    seconds = time.perf_counter() - start
    keras_acc = 100.0 * float(np.mean(agreement.pop("keras_logits").argmax(-1) == y))
    emu_acc = 100.0 * float(np.mean(result.logits.argmax(-1) == y))
    return {
        "model": args.model,
        "images": n,
        "act_mode": result.act_mode,
        "backend": result.backend,
        "calibration": result.scales,
        "keras_accuracy": keras_acc,
        "emulated_accuracy": emu_acc,
        "difference_points": emu_acc - keras_acc,
        "tolerance_points": args.tolerance,
        "within_tolerance": abs(emu_acc - keras_acc) <= args.tolerance,
        "top1_agreement": agreement["top1_agreement"],
        "max_abs_logit_diff": agreement["max_abs_logit_diff"],
        "accumulators_exact": agreement["accumulators_exact"],
        "teacher_forced_accumulators_exact": agreement["teacher_forced"]["accumulators_exact"],
        "teacher_forced_agrees": agreement["teacher_forced"]["agrees"],
        "seconds": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        report = measure(args)
        text = json.dumps(report, indent=2) + "\n"
        if args.out:
            atomic_write(args.out, text)
    except (HwSimError, WriteError) as exc:
        print(f"emulate_accuracy: error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 1 if args.check and not report["within_tolerance"] else 0


if __name__ == "__main__":
    sys.exit(main())
