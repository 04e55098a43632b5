"""``python -m keras_ternary quickstart``: the offline demo on SHAPES-10.

Trains the shipped ``quickstart`` config (ternary ResNet-20, logarithmic Δ regime) on
generated data, replacing a quick start that it wrote before in the same directory, and
prints a summary of the run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from keras_ternary.cliutil import CliError
from keras_ternary.commands.options import add_verbose, positive_int, yaml_value

__all__ = ["NEEDS_TENSORFLOW", "add_arguments", "run"]

NEEDS_TENSORFLOW = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m keras_ternary quickstart``."""
    parser.add_argument(
        "--out",
        default="runs/quickstart",
        help="run directory (default: runs/quickstart); a run that quickstart wrote there "
        "before is replaced (only its own files); any other non-empty directory is refused",
    )
    parser.add_argument("--epochs", type=positive_int, help="epochs (default 9)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a key of the quickstart config (see `configs quickstart`), e.g. "
        "--set data.train_size=500 (repeatable)",
    )
    add_verbose(parser)


def run(args: argparse.Namespace) -> int:
    """Train the quick start; print what it is, then its final metrics and run directory."""
    from keras_ternary.config import load_config
    from keras_ternary.training import train

    overrides = [f"out_dir={yaml_value(args.out)}"]
    if args.epochs:  # keep our epoch = the paper's epoch
        overrides += [f"epochs={args.epochs}", f"paper_epochs={args.epochs}"]
    config = load_config("quickstart", [*overrides, *args.set])
    replace = _replaces(config.run_dir)
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


def _replaces(run_dir: Path) -> bool:
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
