"""Atomic file output: a file is either absent, the old version, or complete — never partial.

Everything keras-ternary writes (run directories, reports, exported models) goes through
these helpers: the data is written to a temporary file in the destination directory, given
the mode a plain ``open(path, "w")`` would have (umask respected; ``mkstemp`` uses 0600),
then renamed over ``path``. The temporary file is removed on any failure.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_with", "new_file_mode"]


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (no race with threads)."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """Permission bits of a newly created file under the current umask (``0o666 & ~umask``)."""
    return 0o666 & ~_umask()


def atomic_write_with(
    path: str | os.PathLike, write: Callable[[str], None], suffix: str = ".tmp"
) -> None:
    """Create ``path`` atomically: ``write(tmp)`` fills a temporary file that replaces ``path``.

    The parent directory must exist. Any exception (``OSError`` included) propagates after
    the temporary file is removed; ``path`` is then untouched.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` (bytes, or text as UTF-8) to ``path`` atomically (see the module doc)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            handle.write(raw)

    atomic_write_with(path, write)
