"""``python -m keras_ternary report``: the paper's figures and tables from run directories.

The command line of :func:`keras_ternary.report.write_report`; imports no TensorFlow.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from keras_ternary.cliutil import CliError

__all__ = ["NEEDS_TENSORFLOW", "add_arguments", "run"]

NEEDS_TENSORFLOW = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m keras_ternary report``."""
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


def run(args: argparse.Namespace) -> int:
    """Check the directories, write the report, print what was written and skipped."""
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
