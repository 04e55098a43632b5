"""Option types and options shared by several subcommands of ``python -m keras_ternary``."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from typing import TypeVar

__all__ = [
    "add_run_control",
    "add_verbose",
    "non_negative_float",
    "positive_float",
    "positive_int",
    "yaml_value",
]

_N = TypeVar("_N", int, float)


def _checked(
    convert: Callable[[str], _N], accept: Callable[[_N], bool], expected: str
) -> Callable[[str], _N]:
    """An argparse type: ``convert(text)``, refused unless ``accept``-ed ("expected ...")."""

    def parse(text: str) -> _N:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


#: An argparse type: an integer >= 1.
positive_int = _checked(int, lambda v: v >= 1, "a positive integer")
#: An argparse type: a number > 0.
positive_float = _checked(float, lambda v: v > 0, "a positive number")
#: An argparse type: a finite number >= 0.
non_negative_float = _checked(float, lambda v: 0 <= v < math.inf, "a number >= 0")


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
