"""``python -m keras_ternary``: train, sweep, report, export and the offline quick start.

Every subcommand is a pair ``add_arguments(parser)`` / ``run(args)`` listed in
:data:`SUBCOMMANDS` (``export``'s pair is :mod:`keras_ternary.export.cli`); the convention
and the error handling are :mod:`keras_ternary.cliutil`'s: every error a user can cause (bad
option, bad config, missing data, unusable run directory) ends in one ``error: ...`` line on
stderr and exit status 2, without a traceback; an unexpected error is one line and exit
status 1 (``KERAS_TERNARY_DEBUG=1`` shows its traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from keras_ternary.cliutil import EXIT_USAGE, CliError, Parser, run_guarded
from keras_ternary.export import cli as export_cli

__all__ = ["SUBCOMMANDS", "CliError", "build_parser", "main"]


@dataclass(frozen=True)
class Subcommand:
    """A subcommand: ``add_arguments(parser)`` declares options, ``run(args)`` returns a status."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str | None = None


# --------------------------------------------------------------------------- shared options
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _add_run_control(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--verbose",
        type=int,
        choices=(0, 1, 2),
        default=1,
        help="1 (default): a progress bar during each epoch when the output is a terminal; "
        "0 or 2: none. Every epoch ends with one line (loss, accuracy, Δ, sparsity, entropy).",
    )
    parser.add_argument(
        "--time-limit",
        type=_positive_float,
        metavar="MINUTES",
        help="stop at the end of the first epoch that ends after MINUTES minutes; the run stays "
        "resumable (use it to split long runs across sessions)",
    )


#: (option, config key, type, help) for the shortcuts of ``train`` (and ``--set`` for the rest).
_TRAIN_SHORTCUTS: tuple[tuple[str, str, Callable[[str], object], str], ...] = (
    ("--name", "name", str, "run name (default run directory: runs/NAME)"),
    ("--out", "out_dir", str, "run directory (default: runs/<name>)"),
    ("--quantizer", "model.quantizer", str, "kernel quantizer: ternary, binary or float"),
    ("--regime", "ternary.regime", str, "Δ regime f of Eq. 7: fixed, linear, square, exp, log"),
    ("--delta0", "ternary.delta0", float, "initial threshold Δ0 (> 0)"),
    ("--multiplier", "ternary.multiplier", float, "growth multiplier M of Eq. 7 (>= 0)"),
    ("--delta-max", "ternary.delta_max", float, "cap Δf of Eq. 7 (Δ0 < Δf < 1)"),
    (
        "--saturate-epoch",
        "ternary.saturate_epoch",
        int,
        "1-based epoch in which Δ reaches Δf: rescales the regime's time axis (pick one "
        "before the first learning-rate drop)",
    ),
    ("--inflation", "model.inflation", int, "ResNet-20* width multiplier k (paper: 5)"),
    ("--epochs", "epochs", int, "number of epochs of this run (paper: 500)"),
    (
        "--paper-epochs",
        "paper_epochs",
        float,
        "span of the paper's epoch axis the run replays: Δ and the learning rate follow the "
        "paper's epoch (paper_epochs/epochs)·t at our epoch t (default 500)",
    ),
    ("--batch-size", "batch_size", int, "batch size (paper: 256)"),
    ("--seed", "seed", int, "random seed of weights, shuffling and augmentation"),
    ("--data", "data.source", str, "data source: auto, cifar10_dir, tfds or shapes10"),
    (
        "--data-dir",
        "data.dir",
        str,
        "directory with the CIFAR-10 binary files "
        "(itself or its cifar-10-batches-bin/ subdirectory)",
    ),
    ("--tfds-dir", "data.tfds_dir", str, "tensorflow-datasets data directory"),
    ("--train-size", "data.train_size", int, "use only the first N training images"),
    ("--test-size", "data.test_size", int, "use only the first N test images"),
)


def _strategies() -> tuple[str, ...]:
    from keras_ternary.config import STRATEGIES  # light: no TensorFlow

    return STRATEGIES


def _add_train_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="YAML or TOML run config: a path or a shipped name such as 'reduced/base' "
        "(see `configs`); default: the paper's recipe (ternary, log regime, k = 5, 500 epochs)",
    )
    group = parser.add_argument_group("overrides (applied after --config)")
    for option, key, kind, text in _TRAIN_SHORTCUTS:
        group.add_argument(
            option,
            dest=f"o_{key}",
            type=kind,
            metavar=key.split(".")[-1].upper(),
            help=f"{text} [{key}]",
        )
    group.add_argument(
        "--per-step",
        dest="o_per_step",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="advance Δ and the learning rate every step on the paper's axis instead of every "
        "epoch [per_step]",
    )
    group.add_argument(
        "--download",
        dest="o_data.download",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="let tensorflow-datasets download CIFAR-10 when --data tfds [data.download]",
    )
    group.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other config key, dotted, value parsed as YAML, e.g. --set "
        "snapshot_epochs=[50,100] --set model.quantize_first_last=false (repeatable)",
    )


def _overrides(args: argparse.Namespace) -> list[str]:
    out = []
    for name, value in vars(args).items():
        if name.startswith("o_") and value is not None:
            out.append(f"{name[2:]}={_yaml_value(value)}")
    return out + list(args.set)


def _yaml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        import json

        return json.dumps(value)  # a JSON string is a YAML string
    return repr(value)


# --------------------------------------------------------------------------- train
def _train_arguments(parser: argparse.ArgumentParser) -> None:
    _add_train_options(parser)
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        metavar="RUN_DIR",
        help="continue a stopped run from its last checkpoint (same Δ schedule, learning rate "
        "and data order). Give the run directory, or use it with the --config/--out of the run",
    )
    parser.add_argument(
        "--stop-after",
        type=_positive_int,
        metavar="N",
        help="stop after N epochs in this invocation (resumable)",
    )
    parser.add_argument(
        "--force-new",
        action="store_true",
        help="start over in a run directory that already holds a run; its files are moved "
        "into a dated subfolder replaced-YYYYMMDD-HHMMSS/ first (nothing is deleted)",
    )
    _add_unsafe_load(parser, "the checkpoint of a resumed run")
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved configuration as YAML and exit without training",
    )
    parser.add_argument(
        "--strategy",
        choices=_strategies(),
        help="tf.distribute strategy [strategy]: default (one device), mirrored (every GPU of "
        "this machine), multiworker (the machines in TF_CONFIG; only the chief writes the run "
        "directory). batch_size stays the global batch. Also allowed with --resume RUN_DIR",
    )
    _add_run_control(parser)


def _add_unsafe_load(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--unsafe-load",
        action="store_true",
        help=f"allow {what} to hold Python code (a Lambda layer), which loading runs; by "
        "default such a file is refused (Keras' safe_mode, applied to .h5 too)",
    )


def _run_train(args: argparse.Namespace) -> int:
    from keras_ternary.config import dump_yaml, load_config
    from keras_ternary.rundir import load_run_config
    from keras_ternary.training import train

    overrides = _overrides(args)
    if isinstance(args.resume, str):
        if args.config or overrides:
            raise CliError("--resume RUN_DIR takes the run's stored config; drop other options")
        config = load_run_config(args.resume)
        config.out_dir = args.resume
    else:
        config = load_config(args.config, overrides)
    if args.strategy:  # not part of the run's identity: a run may resume on other devices
        config.strategy = args.strategy
    if args.print_config:
        print(dump_yaml(config), end="")
        return 0
    result = train(
        config,
        resume=bool(args.resume),
        stop_after=args.stop_after,
        time_limit=None if args.time_limit is None else 60.0 * args.time_limit,
        verbose=args.verbose,
        force_new=args.force_new,
        safe_mode=not args.unsafe_load,
    )
    print(f"run directory: {result.run_dir} ({result.status}, {result.epochs_done} epochs)")
    return 0


# --------------------------------------------------------------------------- quickstart
def _quickstart_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        default="runs/quickstart",
        help="run directory (default: runs/quickstart); a run that quickstart wrote there "
        "before is replaced (only its own files); any other non-empty directory is refused",
    )
    parser.add_argument("--epochs", type=_positive_int, help="epochs (default 9)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a key of the quickstart config (see `configs quickstart`), e.g. "
        "--set data.train_size=500 (repeatable)",
    )
    parser.add_argument(
        "--verbose",
        type=int,
        choices=(0, 1, 2),
        default=1,
        help="1 (default): a progress bar during each epoch when the output is a terminal; "
        "0 or 2: none. Every epoch ends with one line (loss, accuracy, Δ, sparsity, entropy).",
    )


def _run_quickstart(args: argparse.Namespace) -> int:
    from keras_ternary.config import load_config
    from keras_ternary.training import train

    overrides = [f"out_dir={_yaml_value(args.out)}"]
    if args.epochs:  # keep our epoch = the paper's epoch
        overrides += [f"epochs={args.epochs}", f"paper_epochs={args.epochs}"]
    config = load_config("quickstart", [*overrides, *args.set])
    replace = _quickstart_replaces(config.run_dir)
    t = config.ternary
    saturates = f", reached in epoch {t.saturate_epoch}" if t.saturate_epoch else ""
    print(
        f"keras-ternary quick start: ResNet-20 (k = {config.model.inflation}) with ternary "
        f"weights and the {t.regime} Δ regime\n(Δ0 = {t.delta0:g}, M = {t.multiplier:g}, "
        f"Δf = {t.delta_max:g}{saturates}) on SHAPES-10, a small generated data set "
        "(not CIFAR-10), offline on the CPU.\n"
    )
    result = train(
        config, verbose=args.verbose, created_by="quickstart", force_new=replace, replace=replace
    )
    summary = result.summary or {}
    print(
        f"\nfinal test accuracy {100 * (summary.get('final_val_accuracy') or 0):.1f}% (best "
        f"{100 * (summary.get('best_val_accuracy') or 0):.1f}% at epoch "
        f"{summary.get('best_epoch')}), final sparsity "
        f"{100 * (summary.get('final_sparsity') or 0):.1f}%, entropy "
        f"{summary.get('final_entropy') or 0:.3f} bits/weight\n"
        f"run directory: {result.run_dir} (history.csv, model.h5, ternary_stats.json, ...)"
    )
    return 0


def _quickstart_replaces(run_dir) -> bool:
    """Whether ``run_dir`` holds an earlier quick start to replace (CliError: a foreign one).

    Quickstart always starts afresh, but only over a run it wrote itself (its marker says
    so; a run of an older version: its config is named quickstart on SHAPES-10). Its own
    files are then deleted by ``train(replace=True)`` once the data is loaded; nothing else
    is touched.
    """
    from keras_ternary import rundir

    if not run_dir.is_dir() or not rundir.own_files(run_dir):
        return False
    if not rundir.is_run_dir(run_dir):
        return False  # train refuses it: not a run directory
    marker = rundir.read_marker(run_dir)
    if marker is not None:
        ours = marker.get("created_by") == "quickstart"
    else:
        stored = rundir.load_run_config(run_dir)
        ours = stored.name == "quickstart" and stored.data.source == "shapes10"
    if not ours:
        raise CliError(
            f"{run_dir} holds a run that quickstart did not create; it is left alone: "
            "choose another --out"
        )
    return True


# --------------------------------------------------------------------------- sweep
def _sweep_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "sweep",
        help="sweep file (YAML/TOML with base/set/runs/grid) or shipped name, e.g. paper/table1 "
        "or reduced/reproduce (see `configs`)",
    )
    parser.add_argument(
        "--out-root", default="runs", help="runs go to OUT_ROOT/<sweep>/<run> (default: runs)"
    )
    parser.add_argument(
        "--data-dir",
        help="directory with the CIFAR-10 binary files, for every run [data.dir]",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override applied to every run (repeatable), e.g. --set epochs=2",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="TEXT",
        help="run only the runs whose name contains TEXT (repeatable)",
    )
    parser.add_argument(
        "--list", action="store_true", help="list the runs and their status, then exit"
    )
    parser.add_argument(
        "--stop-on-error",
        action="store_true",
        help="stop the sweep at the first failing run (default: report it and go on)",
    )
    cluster = parser.add_argument_group(
        "on a Ray cluster (needs the 'cluster' extra; see docs/distributed.md)"
    )
    cluster.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run every run as a Ray task: 'local' (start Ray on this machine), 'auto' (the "
        "cluster of this node, or RAY_ADDRESS), 'ray://HOST:PORT' (Ray client) or a head "
        "node's HOST:PORT. --out-root must be shared storage at the same path on every node",
    )
    cluster.add_argument(
        "--gpus-per-run",
        type=_non_negative_float,
        metavar="N",
        help="GPUs of each run's task (default: 1 when the cluster has GPUs, else 0)",
    )
    cluster.add_argument(
        "--cpus-per-run",
        type=_positive_float,
        metavar="N",
        help="CPUs of each run's task (default: with GPUs, a GPU node's CPUs per GPU; without, "
        "a node's CPUs split into runs of at most 8)",
    )
    _add_run_control(parser)


def _run_sweep(args: argparse.Namespace) -> int:
    from keras_ternary.rundir import run_status
    from keras_ternary.sweep import SweepStopped, load_sweep, run_sweep

    if args.ray is None and (args.gpus_per_run is not None or args.cpus_per_run is not None):
        raise CliError("--gpus-per-run and --cpus-per-run need --ray ADDRESS")
    overrides = list(args.set)
    if args.data_dir:
        overrides.append(f"data.dir={_yaml_value(args.data_dir)}")
    out_root = os.path.abspath(args.out_root) if args.ray else args.out_root  # same on workers
    name, runs = load_sweep(args.sweep, out_root, overrides)
    if args.only:
        runs = [r for r in runs if any(text in r.name for text in args.only)]
        if not runs:
            raise CliError(f"no run of sweep {name} matches --only {' '.join(args.only)}")
    if args.list:
        for run in runs:
            print(f"{run_status(run.config.run_dir):9s} {run.config.run_dir}")
        return 0
    time_limit = None if args.time_limit is None else 60.0 * args.time_limit
    try:
        if args.ray:
            from keras_ternary.ray_sweep import run_sweep_on_ray

            result = run_sweep_on_ray(
                runs,
                address=args.ray,
                out_root=os.path.join(out_root, name),
                cpus_per_run=args.cpus_per_run,
                gpus_per_run=args.gpus_per_run,
                time_limit=time_limit,
                keep_going=not args.stop_on_error,
                sweep_name=name,
            )
        else:
            result = run_sweep(
                runs,
                time_limit=time_limit,
                verbose=args.verbose,
                keep_going=not args.stop_on_error,
                sweep_name=name,
            )
    except SweepStopped:  # run_sweep reported the failing run on stderr
        return 1
    return 1 if result.failed else 0


# --------------------------------------------------------------------------- report
def _report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "roots",
        nargs="+",
        metavar="RUNS_DIR",
        help="directories searched (recursively) for run directories",
    )
    parser.add_argument(
        "--out", default="report", help="output directory for PNGs and Markdown (default: report)"
    )
    parser.add_argument(
        "--include-partial",
        action="store_true",
        help="also use unfinished runs (metrics from their history so far)",
    )


def _run_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from keras_ternary.fileio import check_not_input
    from keras_ternary.report import write_report

    for root in args.roots:
        if not Path(root).is_dir():
            problem = "does not exist" if not os.path.lexists(root) else "is not a directory"
            if os.path.islink(root) and not os.path.exists(root):
                problem = "is a broken symbolic link or a symbolic link loop"
            raise CliError(f"{root} is not a directory ({problem})")
    try:
        check_not_input(args.out, {f"the runs directory {r}": r for r in args.roots})
    except OSError as exc:
        raise CliError(str(exc)) from None
    result = write_report(args.roots, args.out, args.include_partial)
    print(f"{result.n_runs} run(s); wrote {len(result.written)} file(s) to {args.out}")
    for name, reason in result.skipped.items():
        print(f"skipped {name}: {reason}")
    return 0


# --------------------------------------------------------------------------- configs
def _configs_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help="print this shipped config instead of listing")


def _run_configs(args: argparse.Namespace) -> int:
    from keras_ternary.config import resolve_config_path, shipped_config_dir

    root = shipped_config_dir()
    if args.name:
        print(resolve_config_path(args.name).read_text(), end="")
        return 0
    for path in sorted(root.rglob("*.yaml")):
        first = next((ln for ln in path.read_text().splitlines() if ln.startswith("#")), "")
        print(f"{path.relative_to(root).with_suffix('')!s:28s} {first.lstrip('# ')}")
    return 0


#: The subcommands of ``python -m keras_ternary``, in the order of ``--help``.
SUBCOMMANDS: dict[str, Subcommand] = {
    "train": Subcommand(
        "train one configuration into a run directory",
        _train_arguments,
        _run_train,
        "Train ResNet-20* with the paper's recipe (Adam, LR 5e-3 → 1e-5, batch 256, Δ regime "
        "of Eq. 7) into a run directory holding history.csv, TensorBoard logs, last/best "
        "checkpoints, model.h5, ternary_stats.json and summary.json.",
    ),
    "quickstart": Subcommand(
        "offline demo: ternary ResNet-20 on generated data in 1-2 minutes",
        _quickstart_arguments,
        _run_quickstart,
        "Train ResNet-20 (inflation 1) with ternary weights and the logarithmic Δ regime on "
        "SHAPES-10 (generated shapes, not CIFAR-10), printing Δ, sparsity and entropy after "
        "every epoch: Δ reaches its cap in epoch 4, then the learning rate drops. Needs no "
        "download; about 70 s on 2 quiet CPU cores.",
    ),
    "sweep": Subcommand(
        "run a grid of configurations; finished runs are skipped",
        _sweep_arguments,
        _run_sweep,
        "Run every configuration of a sweep file one after the other (or, with --ray, as "
        "tasks on a Ray cluster). Finished runs (summary.json) are skipped and partial runs "
        "resumed, so the same command continues an interrupted sweep.",
    ),
    "report": Subcommand(
        "figures 1-5 and tables 1-2 from run directories",
        _report_arguments,
        _run_report,
        "Rebuild the paper's figures (PNG) and tables (Markdown) from run directories.",
    ),
    "configs": Subcommand(
        "list (or print) the shipped configurations", _configs_arguments, _run_configs
    ),
    "export": Subcommand(
        "export a trained model to .tflite or to the packed ternary format",
        export_cli.add_arguments,
        export_cli.run,
        "Export a trained Keras model (.h5 / .keras / SavedModel) for deployment.",
    ),
}


# --------------------------------------------------------------------------- main
#: Subcommands that never import TensorFlow.
_WITHOUT_TENSORFLOW = frozenset({"configs", "report"})


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand of :data:`SUBCOMMANDS`."""
    parser = Parser(
        prog="python -m keras_ternary",
        description="Sparse ternary neural networks (Dordoni et al., MLSP 2024): training, "
        "sweeps over the paper's experiments, and reports.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name, sub in SUBCOMMANDS.items():
        sub_parser = subparsers.add_parser(
            name, help=sub.help, description=sub.description or sub.help
        )
        sub.add_arguments(sub_parser)
        sub_parser.set_defaults(_run=sub.run)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    """The user-error classes of the modules imported so far (none other can have raised).

    ``OSError`` comes last: a write that failed (disk full, permission denied) is one line too.
    """
    found: list[type[BaseException]] = []
    for module, name in (
        ("keras_ternary.config", "ConfigError"),
        ("keras_ternary.data", "DataError"),
        ("keras_ternary.rundir", "RunError"),
        ("keras_ternary.modelfile", "ModelFileError"),
        ("keras_ternary.ray_sweep", "ClusterError"),
        ("keras_ternary.export.fold", "ExportError"),
        ("keras_ternary.export.packed", "PackedFormatError"),
    ):
        if module in sys.modules:
            found.append(getattr(sys.modules[module], name))
    return (*found, OSError)


def _parse_and_run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    if args.command not in _WITHOUT_TENSORFLOW:
        from keras_ternary.tflog import import_tensorflow, quiet_entry_point

        quiet_entry_point()
        import_tensorflow()
        from keras_ternary import _register_with_keras

        _register_with_keras()  # checks Keras 2, registers our classes (keras_ternary/__init__.py)
    return args._run(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the subcommand, return the exit status."""
    return run_guarded(
        lambda: _parse_and_run(argv),
        _user_errors,
        interrupted="interrupted (runs can be continued with --resume / the same sweep command)",
        debug_env="KERAS_TERNARY_DEBUG",
    )
