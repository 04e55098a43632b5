"""``python -m keras_ternary``: train, sweep, report, export and the offline quick start.

Every subcommand is a module with ``add_arguments(parser)`` / ``run(args)`` (those of
:mod:`keras_ternary.commands`, and :mod:`keras_ternary.export.cli` for ``export``), listed in
:data:`SUBCOMMANDS`. A module with ``NEEDS_TENSORFLOW = False`` runs without TensorFlow.
The convention and the error handling are :mod:`keras_ternary.cliutil`'s: every error a user
can cause (bad option, bad config, missing data, unusable run directory) ends in one
``error: ...`` line on stderr and exit status 2, without a traceback; an unexpected error is
one line and exit status 1 (``KERAS_TERNARY_DEBUG=1`` shows its traceback).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

from keras_ternary.cliutil import EXIT_USAGE, CliError, Parser, run_guarded
from keras_ternary.commands import configs, quickstart, report, sweep, train
from keras_ternary.export import cli as export_cli

__all__ = ["SUBCOMMANDS", "CliError", "build_parser", "main"]


@dataclass(frozen=True)
class Subcommand:
    """A subcommand: its module (``add_arguments``, ``run``) and its ``--help`` texts."""

    module: ModuleType
    help: str
    description: str | None = None

    @property
    def needs_tensorflow(self) -> bool:
        """Whether ``run`` needs TensorFlow imported and our classes registered first."""
        return getattr(self.module, "NEEDS_TENSORFLOW", True)


#: The subcommands of ``python -m keras_ternary``, in the order of ``--help``.
SUBCOMMANDS: dict[str, Subcommand] = {
    "train": Subcommand(
        train,
        "train one configuration into a run directory",
        "Train ResNet-20* with the paper's recipe (Adam, LR 5e-3 → 1e-5, batch 256, Δ regime "
        "of Eq. 7) into a run directory holding history.csv, TensorBoard logs, last/best "
        "checkpoints, model.h5, ternary_stats.json and summary.json.",
    ),
    "quickstart": Subcommand(
        quickstart,
        "offline demo: ternary ResNet-20 on generated data in 1-2 minutes",
        "Train ResNet-20 (inflation 1) with ternary weights and the logarithmic Δ regime on "
        "SHAPES-10 (generated shapes, not CIFAR-10), printing Δ, sparsity and entropy after "
        "every epoch: Δ reaches its cap in epoch 4, then the learning rate drops. Needs no "
        "download; about 70 s on 2 quiet CPU cores.",
    ),
    "sweep": Subcommand(
        sweep,
        "run a grid of configurations; finished runs are skipped",
        "Run every configuration of a sweep file one after the other (or, with --ray, as "
        "tasks on a Ray cluster). Finished runs (summary.json) are skipped and partial runs "
        "resumed, so the same command continues an interrupted sweep.",
    ),
    "report": Subcommand(
        report,
        "figures 1-5 and tables 1-2 from run directories",
        "Rebuild the paper's figures (PNG) and tables (Markdown) from run directories.",
    ),
    "configs": Subcommand(configs, "list (or print) the shipped configurations"),
    "export": Subcommand(
        export_cli,
        "export a trained model to .tflite or to the packed ternary format",
        "Export a trained Keras model (.h5 / .keras / SavedModel) for deployment.",
    ),
}


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
        sub.module.add_arguments(sub_parser)
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
    sub = SUBCOMMANDS[args.command]
    if sub.needs_tensorflow:
        from keras_ternary.tflog import import_tensorflow, quiet_entry_point

        quiet_entry_point()
        import_tensorflow()
        from keras_ternary import _register_with_keras

        _register_with_keras()  # checks Keras 2, registers our classes (keras_ternary/__init__.py)
    return sub.module.run(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the subcommand, return the exit status."""
    return run_guarded(
        lambda: _parse_and_run(argv),
        _user_errors,
        interrupted="interrupted (runs can be continued with --resume / the same sweep command)",
        debug_env="KERAS_TERNARY_DEBUG",
    )
