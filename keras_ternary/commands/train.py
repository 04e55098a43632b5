"""``python -m keras_ternary train``: train one configuration into a run directory.

The configuration is ``--config`` (a file or a shipped name; default: the paper's recipe)
with the overrides of :data:`SHORTCUTS` and ``--set`` applied after it, or, with
``--resume RUN_DIR``, the config stored in the run directory.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from keras_ternary.cliutil import CliError
from keras_ternary.commands.options import add_run_control, positive_int, yaml_value

__all__ = ["NEEDS_TENSORFLOW", "SHORTCUTS", "add_arguments", "run"]

NEEDS_TENSORFLOW = True

#: (option, config key, type, help) of the config shortcuts (``--set`` for the other keys).
SHORTCUTS: tuple[tuple[str, str, Callable[[str], object], str], ...] = (
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m keras_ternary train``."""
    _add_config_options(parser)
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
        type=positive_int,
        metavar="N",
        help="stop after N epochs in this invocation (resumable)",
    )
    parser.add_argument(
        "--force-new",
        action="store_true",
        help="start over in a run directory that already holds a run; its files are moved "
        "into a dated subfolder replaced-YYYYMMDD-HHMMSS/ first (nothing is deleted)",
    )
    parser.add_argument(
        "--unsafe-load",
        action="store_true",
        help="allow the checkpoint of a resumed run to hold Python code (a Lambda layer), "
        "which loading runs; by default such a file is refused (Keras' safe_mode, applied to "
        ".h5 too)",
    )
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
    add_run_control(parser)


def run(args: argparse.Namespace) -> int:
    """Train (or, with ``--print-config``, print the resolved config); print the run directory."""
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


def _strategies() -> tuple[str, ...]:
    from keras_ternary.config import STRATEGIES  # light: no TensorFlow

    return STRATEGIES


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="YAML or TOML run config: a path or a shipped name such as 'reduced/base' "
        "(see `configs`); default: the paper's recipe (ternary, log regime, k = 5, 500 epochs)",
    )
    group = parser.add_argument_group("overrides (applied after --config)")
    for option, key, kind, text in SHORTCUTS:
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
    """The ``KEY=VALUE`` overrides of the shortcut options given, then those of ``--set``."""
    out = []
    for name, value in vars(args).items():
        if name.startswith("o_") and value is not None:
            out.append(f"{name[2:]}={yaml_value(value)}")
    return out + list(args.set)
