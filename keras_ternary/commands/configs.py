"""``python -m keras_ternary configs``: list the shipped configurations, or print one.

Each listed line is a config's name and the first comment line of its file. Imports no
TensorFlow.
"""

from __future__ import annotations

import argparse

__all__ = ["NEEDS_TENSORFLOW", "add_arguments", "run"]

NEEDS_TENSORFLOW = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m keras_ternary configs``."""
    parser.add_argument("name", nargs="?", help="print this shipped config instead of listing")


def run(args: argparse.Namespace) -> int:
    """Print the config ``args.name``, or list every shipped config with its first comment."""
    from keras_ternary.config import resolve_config_path, shipped_config_dir

    root = shipped_config_dir()
    if args.name:
        print(resolve_config_path(args.name).read_text(), end="")
        return 0
    for path in sorted(root.rglob("*.yaml")):
        first = next((ln for ln in path.read_text().splitlines() if ln.startswith("#")), "")
        print(f"{path.relative_to(root).with_suffix('')!s:28s} {first.lstrip('# ')}")
    return 0
