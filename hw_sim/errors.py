"""The one exception type of hw_sim: a problem with the user's input, reported in one line."""

from __future__ import annotations

__all__ = ["HwSimError"]


class HwSimError(Exception):
    """A bad model file, an unsupported layer, a bad technology table or option.

    The CLI prints ``str(error)`` as a single line on stderr and exits with status 2.
    """
