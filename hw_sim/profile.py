"""``python -m hw_sim.profile ...``: the command ``python -m hw_sim`` (:mod:`hw_sim.__main__`)."""

from __future__ import annotations

import sys

from hw_sim.__main__ import main as _main

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """``python -m hw_sim`` under the name ``python -m hw_sim.profile``."""
    return _main(argv, prog="python -m hw_sim.profile")


if __name__ == "__main__":
    sys.exit(main())
