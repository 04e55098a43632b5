"""``python -m keras_ternary``: the command-line interface (see ``--help``)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from keras_ternary.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
