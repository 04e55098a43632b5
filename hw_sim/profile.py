"""CLI: ``python -m hw_sim.profile MODEL [--accelerator ...] [--tech FILE] [--format ...]``.

Bad input (missing or corrupt model file, unsupported layer, bad technology file or
option) gives one ``hw_sim: error: ...`` line on stderr and exit status 2; nothing is
written half-way (outputs go to a temporary file first, then ``os.replace``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from hw_sim.errors import HwSimError

__all__ = ["main"]

FORMATS = ("table", "json", "csv")
ACCELERATOR_CHOICES = ("bitwise", "zeroskip", "cim", "all")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        raise HwSimError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m hw_sim.profile",
        description="Count actions and estimate energy of a ternary/binary network on "
        "accelerator models, against FP32, INT8 and binary baselines.",
    )
    p.add_argument(
        "model",
        help="model file: .h5 / .keras (keras_ternary or larq model) or .tflite (exported by "
        "`python -m keras_ternary export`)",
    )
    p.add_argument(
        "--accelerator",
        default="bitwise",
        choices=ACCELERATOR_CHOICES,
        help="accelerator model: bitwise (TAB-style bit-plane popcount), zeroskip (one add/sub "
        "per nonzero ternary weight), cim (compute-in-memory crossbars), or all three "
        "(default: %(default)s); FP32/INT8/binary baselines are always reported",
    )
    p.add_argument(
        "--tech",
        metavar="FILE",
        help="YAML or JSON file overriding entries of the technology table "
        "(default table: hw_sim/tech/horowitz45.yaml, Horowitz ISSCC 2014, 45 nm)",
    )
    p.add_argument(
        "--format",
        default="table",
        choices=FORMATS,
        help="report format: a per-layer table, JSON, or CSV (default: %(default)s)",
    )
    p.add_argument("--out", metavar="FILE", help="write the report here instead of stdout")
    p.add_argument("--plot", metavar="FILE.png", help="energy breakdown per layer and component")
    p.add_argument(
        "--unsafe-load",
        action="store_true",
        help="allow the model to hold Python code (a Lambda layer), which loading runs; by "
        "default such a model is refused (Keras' safe_mode, applied to .h5 too)",
    )
    from hw_sim.emulate import add_cli_arguments

    add_cli_arguments(p)
    return p


def _check_output(path: str) -> None:
    """Refuse an output path whose directory is missing or that names a directory."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise HwSimError(f"cannot write {path}: directory does not exist")
    if os.path.isdir(path):
        raise HwSimError(f"cannot write {path}: it is a directory")


def _check_not_input(path: str, args: argparse.Namespace) -> None:
    """Refuse an output path that is one of the inputs (the model, --tech, --inputs)."""
    from keras_ternary.fileio import check_not_input

    inputs = {
        "the model": args.model,
        "the --tech file": args.tech,
        "the --inputs file": getattr(args, "inputs", None),
    }
    try:
        check_not_input(path, inputs)
    except OSError as exc:
        raise HwSimError(str(exc).replace("--out", "the output", 1)) from None


def write_atomic(path: str, data: str | bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`keras_ternary.fileio.atomic_write`).

    Raises:
        HwSimError: naming ``path`` (never the temporary file) if it cannot be written.
    """
    from keras_ternary.fileio import atomic_write

    _check_output(path)
    try:
        atomic_write(path, data)
    except OSError as exc:
        raise HwSimError(f"cannot write {path}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def _quiet_native_stderr():
    """Drop TensorFlow's native start-up lines while a model loads; keep any other output.

    See :mod:`keras_ternary.tflog` (``KERAS_TERNARY_TF_LOG=1`` or ``HW_SIM_DEBUG=1`` show
    everything). Python-level errors still propagate and are printed by :func:`main`.
    """
    if os.environ.get("HW_SIM_DEBUG"):
        yield
        return
    from keras_ternary.tflog import filtered_stderr, quiet_entry_point

    quiet_entry_point()
    with filtered_stderr():
        yield


def run(argv: list[str] | None = None) -> int:
    """Parse ``argv``, profile, write outputs; raises :class:`HwSimError` on bad input."""
    args = _parser().parse_args(argv)
    if args.plot and not args.plot.lower().endswith(".png"):
        raise HwSimError(f"--plot needs a .png file name, got {args.plot!r}")
    for path in (args.plot, args.out):  # before the (slow) model load; nothing half-written
        if path:
            _check_output(path)
            _check_not_input(path, args)
    from hw_sim.analysis import profile, to_graph
    from hw_sim.report import to_csv, to_json, to_table

    tflite = args.model.lower().endswith(".tflite")  # read without TensorFlow
    with contextlib.nullcontext() if tflite else _quiet_native_stderr():
        graph = to_graph(args.model, safe_mode=not args.unsafe_load)
        result = profile(graph, accelerator=args.accelerator, tech=args.tech)
    if args.emulate is not None:
        from hw_sim.emulate import report_from_args

        result["emulation"] = report_from_args(args, graph, args.model, tech=args.tech)
    text = {"table": to_table, "json": to_json, "csv": to_csv}[args.format](result)
    if args.plot:
        from hw_sim.plot import plot_energy

        plot_energy(result, args.plot)
    if args.out:
        write_atomic(args.out, text)
        print(_written(args, result))
    else:
        sys.stdout.write(text)
    return 0


def _written(args: argparse.Namespace, result: dict) -> str:
    """What ``--out`` (and ``--plot``) received, like ``keras_ternary export`` says it."""
    from hw_sim.report import reports_of

    names = ", ".join(reports_of(result))
    return (
        f"wrote {args.out}: {args.format} report of {args.model} on "
        f"{names}"
        + (" with emulation" if result.get("emulation") else "")
        + (f"; plot {args.plot}" if args.plot else "")
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point: exit status 0, or 2 with one error line on stderr."""
    try:
        return run(argv)
    except HwSimError as exc:
        print(f"hw_sim: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hw_sim: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # unexpected: still one line unless debugging
        if os.environ.get("HW_SIM_DEBUG"):
            raise
        detail = str(exc).strip().splitlines()
        print(
            f"hw_sim: error: {type(exc).__name__}: {detail[0] if detail else ''} "
            "(set HW_SIM_DEBUG=1 for a traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
