"""``python -m keras_ternary export MODEL --to tflite|packed ...``: the export subcommand.

The subcommand's :func:`add_arguments` / :func:`run`, listed in
:data:`keras_ternary.cli.SUBCOMMANDS`. Bad input raises (:class:`~keras_ternary.cliutil.CliError`,
``ExportError``, ...) and becomes one ``error:`` line and exit status 2 there; output files are
written atomically.

``--representative`` (int8 and int16x8 modes) chooses the calibration images:

* default — the data the model was trained on: the training-data record a model written by
  ``train``/``quickstart`` carries (:func:`keras_ternary.saving.read_training_data`; older
  files: the ``config.yaml`` of their run directory), else CIFAR-10;
* ``shapes10`` / ``cifar10`` — that data set (CIFAR-10 found by :mod:`keras_ternary.data`:
  ``$KERAS_TERNARY_CIFAR10_DIR`` or the default locations, never downloaded);
* ``DIR`` — the CIFAR-10 binary directory ``DIR``;
* ``FILE.npy`` — a float32 array ``(N, H, W, C)`` of model inputs, preprocessed as in
  training (``(x / 255 - mean) / std`` per channel), used as is.

The first ``--representative-count`` images are used (default 500); ``--representative N``
(a number) is the same as ``--representative-count N``.
"""

from __future__ import annotations

import argparse
import json
import os

from keras_ternary.cliutil import CliError, add_import_argument, import_modules

__all__ = ["add_arguments", "load_representative", "run"]

DEFAULT_REPRESENTATIVE = 500
DATASETS = ("shapes10", "cifar10")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``python -m keras_ternary export``."""
    p.add_argument("model", metavar="MODEL", help="trained Keras model file")
    p.add_argument("--to", required=True, choices=("tflite", "packed"), help="output format")
    p.add_argument("--out", required=True, metavar="PATH", help="output file")
    p.add_argument(
        "--mode",
        default="int8",
        choices=("int8", "int16x8", "float"),
        help="tflite: int8 (default), int16x8 (int8 weights, int16 activations) or float",
    )
    p.add_argument(
        "--representative",
        metavar="shapes10|cifar10|DIR|FILE.npy",
        help="int8/int16x8 calibration images (default: the data the model was trained on, "
        "recorded in models written by train/quickstart, else CIFAR-10): a data set, a "
        "CIFAR-10 binary directory, or a float32 .npy array (N, H, W, C) of inputs already "
        "preprocessed as in training, (x/255 - mean)/std per channel",
    )
    p.add_argument(
        "--representative-count",
        type=_positive_count,
        default=DEFAULT_REPRESENTATIVE,
        metavar="N",
        help=f"calibrate on the first N images (default {DEFAULT_REPRESENTATIVE})",
    )
    p.add_argument(
        "--io", default=None, choices=("int8", "float32"), help="int8 mode: input/output type"
    )
    p.add_argument(
        "--keep-residual-bn",
        action="store_true",
        help="int8: keep batch-norms after residual sums as a multiply-add instead of pushing "
        "them back into the branches (the default; more accurate in int8)",
    )
    p.add_argument(
        "--coding", default="ans", choices=("ans", "2bit"), help="packed: entropy (ans) or 2-bit"
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--unsafe-load",
        action="store_true",
        help="allow MODEL to hold Python code (a Lambda layer), which loading runs; by default "
        "such a model is refused (Keras' safe_mode, applied to .h5 too)",
    )
    add_import_argument(p)


def _positive_count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def load_representative(
    spec: str | None,
    input_shape: tuple[int, ...],
    model_path: str | None = None,
    count: int = DEFAULT_REPRESENTATIVE,
):
    """Calibration inputs for ``--representative`` (see the module docstring)."""
    from keras_ternary.export.fold import ExportError

    if spec is not None and spec.isdigit():  # the older spelling of --representative-count
        if int(spec) < 1:
            raise ExportError("--representative N needs N >= 1")
        spec, count = None, int(spec)
    if spec is not None and spec.endswith(".npy"):
        x = _load_npy(spec)[:count]
    elif spec is None or spec in DATASETS or os.path.isdir(spec):
        x = _dataset_images(spec, model_path, count)
    else:
        raise ExportError(
            f"--representative {spec!r} is neither a number, a directory, a data set "
            f"({', '.join(DATASETS)}) nor a .npy file"
        )
    if x.ndim != len(input_shape) + 1 or tuple(x.shape[1:]) != tuple(input_shape):
        raise ExportError(
            f"representative data has shape {x.shape}, the model expects (N, "
            f"{', '.join(str(d) for d in input_shape)})"
        )
    return x


def _load_npy(spec: str):
    import numpy as np

    from keras_ternary.export.fold import ExportError
    from keras_ternary.fileio import check_input_file

    try:
        check_input_file(spec, "array", "representative file")
    except OSError as exc:
        raise ExportError(str(exc)) from None
    try:
        return np.asarray(np.load(spec, allow_pickle=False), np.float32)
    except Exception as exc:  # noqa: BLE001 - numpy's parser raises many types (tokenize, ast)
        detail = next((ln for ln in str(exc).splitlines() if ln.strip()), "")
        raise ExportError(
            f"cannot read representative file {spec}: not a valid .npy array"
            + (f" ({detail})" if detail else "")
        ) from exc


def _dataset_images(spec: str | None, model_path: str | None, count: int):
    """The first ``count`` training images of a data set, preprocessed as in training."""
    from keras_ternary import data as kd
    from keras_ternary.export.fold import ExportError
    from keras_ternary.saving import read_training_data

    record = (read_training_data(model_path) if model_path else None) or {}
    if spec is None:
        recorded_dir = record.get("dir")
        spec = recorded_dir if recorded_dir and os.path.isdir(recorded_dir) else None
        spec = spec or record.get("source", "cifar10")
    if spec != record.get("source"):  # another data set than the model's: its own statistics
        record = {}
    if spec == "shapes10":  # the same generated images (and statistics) as in training
        arrays = kd.generate_shapes10(
            max(record.get("train_size", count), count), 1, seed=record.get("seed", 0)
        )
    elif spec == "cifar10":
        try:
            arrays = kd.load_data("auto", train_size=count, test_size=1, download=False)
        except kd.DataError as exc:
            raise ExportError(
                "calibration needs CIFAR-10 training images, but CIFAR-10 was not found: set "
                f"${kd.DATA_DIR_ENV}, or pass --representative DIR|shapes10|FILE.npy"
            ) from exc
    else:
        arrays = kd.load_cifar10_binary(spec)
    mean = record.get("mean", arrays.mean)
    std = record.get("std", arrays.std)
    return kd.normalize(arrays.x_train[:count], mean, std).numpy()


def _load_model(path: str, safe_mode: bool = True):
    from keras_ternary.export.fold import ExportError
    from keras_ternary.modelfile import (
        ModelFileError,
        UnsafeModelError,
        load_model,
    )

    try:  # regular file, bounded size, no code unless allowed, HDF5 probed in a child first
        return load_model(path, safe_mode=safe_mode, compile=False)
    except UnsafeModelError as exc:
        raise ExportError(str(exc)) from None
    except ModelFileError as exc:  # "model file X is not a regular file", "X: HDF5 crashed"
        text = str(exc)
        raise ExportError(
            text if text.startswith("model file") else f"cannot load model {text}"
        ) from None
    except Exception as exc:  # Keras raises many types for unreadable files
        if _weights_only(path):
            raise ExportError(
                f"cannot load model {path}: the file holds only weights (saved with "
                "save_weights); save the whole model with model.save(...)"
            ) from exc
        first = next((ln for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
        raise ExportError(f"cannot load model {path}: {first}") from exc


def _weights_only(path: str) -> bool:
    """True if ``path`` is an HDF5 file without a model config (``save_weights`` output)."""
    import h5py

    try:
        if not h5py.is_hdf5(path):
            return False
        with h5py.File(path, "r") as f:
            return "model_config" not in f.attrs and (
                "layer_names" in f.attrs or "model_weights" in f
            )
    except Exception:  # noqa: BLE001 - unreadable: not recognisably a weights file
        return False


def _export(args) -> dict:
    from keras_ternary.export.packed import pack
    from keras_ternary.export.tflite import QUANTIZED_MODES, to_tflite

    model = _load_model(args.model, safe_mode=not getattr(args, "unsafe_load", False))
    if args.to == "packed":
        report = pack(model, args.out, coding=args.coding)
        if not args.json:
            print(report.to_markdown())
            print(
                f"wrote {args.out}: {report.size_bytes} bytes, {report.bits_per_weight:.4f} "
                f"bits/ternary weight (entropy {report.entropy:.4f} pooled, "
                f"{report.layer_entropy:.4f} per tensor)"
            )
        return report.to_dict()
    data = None
    if args.mode in QUANTIZED_MODES:
        data = load_representative(
            args.representative,
            tuple(model.input_shape[1:]),
            args.model,
            args.representative_count,
        )
    residual = False if args.keep_residual_bn else None
    result = to_tflite(
        model, args.out, args.mode, data, io_dtype=args.io, fold_residual_bn=residual
    )
    if not args.json:
        exact = sum(k.exact for k in result.kernels)
        pushed = len(result.residual_folded)
        print(
            f"wrote {args.out}: {result.size_bytes} bytes ({args.mode}); "
            f"{exact}/{len(result.kernels)} ternary kernels stored exactly; "
            f"{len(result.folded)} batch-norms folded"
            + (f", {pushed} pushed back into residual branches" if pushed else "")
        )
    return result.to_dict()


def run(args: argparse.Namespace) -> int:
    """Execute ``export`` with parsed ``args``; bad input raises (one line, exit status 2)."""
    if args.io is not None and args.mode != "int8":
        raise CliError("--io applies to --mode int8 only")
    if not os.path.lexists(args.model):  # before TensorFlow is imported
        raise CliError(f"model file not found: {args.model}")
    from keras_ternary.fileio import check_not_input

    inputs = {"the model": args.model}
    if args.representative and args.representative.endswith(".npy"):
        inputs["the --representative file"] = args.representative
    check_not_input(args.out, inputs)
    import_modules(getattr(args, "imports", ()))  # custom objects of other packages (larq_zoo)
    try:
        report = _export(args)
    except ValueError as exc:  # a converter refusing the model
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps(report, default=str, indent=1))
    return 0
