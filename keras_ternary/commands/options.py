"""Option types and options shared by several subcommands of ``python -m keras_ternary``."""

from __future__ import annotations

import argparse
import json

__all__ = [
    "add_run_control",
    "add_verbose",
    "non_negative_float",
    "positive_float",
    "positive_int",
    "yaml_value",
]


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """An argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def add_verbose(parser: argparse.ArgumentParser) -> None:
    """``--verbose 0|1|2``: the progress output of training."""
    parser.add_argument(
        "--verbose",
        type=int,
        choices=(0, 1, 2),
        default=1,
        help="1 (default): a progress bar during each epoch when the output is a terminal; "
        "0 or 2: none. Every epoch ends with one line (loss, accuracy, Δ, sparsity, entropy).",
    )


def add_run_control(parser: argparse.ArgumentParser) -> None:
    """``--verbose`` and ``--time-limit`` of the commands that train (``train``, ``sweep``)."""
    add_verbose(parser)
    parser.add_argument(
        "--time-limit",
        type=positive_float,
        metavar="MINUTES",
        help="stop at the end of the first epoch that ends after MINUTES minutes; the run stays "
        "resumable (use it to split long runs across sessions)",
    )


def yaml_value(value: object) -> str:
    """``value`` written as a YAML scalar, for a ``KEY=VALUE`` config override."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a YAML string
    return repr(value)
