"""Safe file input and output.

Output is atomic: a file is either absent, the old version, or complete — never partial.
Everything keras-ternary writes (run directories, reports, exported models) goes through
these helpers: the data is written to a temporary file in the destination directory, given
the mode a plain ``open(path, "w")`` would have (umask respected; ``mkstemp`` uses 0600),
then renamed over ``path``. The temporary file is removed on any failure.

Input: :func:`probe_hdf5` reads an HDF5 file once in a child process before this process
opens it, because the HDF5 C library can crash or hang on some corrupt files, which no
Python code can catch.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "UnreadableFileError",
    "atomic_write",
    "atomic_write_with",
    "new_file_mode",
    "probe_hdf5",
]


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


class UnreadableFileError(OSError):
    """Reading a file crashed or hung a child process: the file is corrupt."""


# Reads every attribute and every dataset once. A Python-level error exits with status 1:
# the caller's own (in-process) reader reports those, with its usual message.
_READ_HDF5 = """
import sys
import h5py

def read(name, obj):
    for key in obj.attrs:
        obj.attrs[key]
    if isinstance(obj, h5py.Dataset):
        obj[()]

try:
    with h5py.File(sys.argv[1], "r") as f:
        read("/", f)
        f.visititems(read)
except Exception:
    sys.exit(1)
"""


def run_isolated(code: str, path: str | os.PathLike, timeout: float) -> None:
    """Run the Python reader ``code`` on ``path`` (``sys.argv[1]``) in a child process.

    The runner of :func:`probe_hdf5` (its messages speak of HDF5); the tests give it
    children that crash or hang on purpose.

    Raises:
        UnreadableFileError: the child was killed by a signal (a crash in native code) or did
            not finish within ``timeout`` seconds (it is then killed). An exit with a
            non-zero status is not an error here.
    """
    path = os.fspath(path)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code, path],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise UnreadableFileError(
            f"{path}: reading the file did not finish within {timeout:g} s "
            "(a corrupt file, or very slow storage)"
        ) from None
    if proc.returncode < 0:
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = f"signal {-proc.returncode}"
        raise UnreadableFileError(
            f"{path}: the HDF5 library crashed reading the file ({name}); it is corrupt"
        )


def probe_hdf5(path: str | os.PathLike, timeout: float | None = None) -> None:
    """Read the whole HDF5 file ``path`` in a child process before this process opens it.

    Some corrupt files make HDF5 (through h5py or Keras) dereference garbage and kill the
    process, or loop forever (HDFGroup/hdf5#1707, h5py/h5py#2569). The probe turns both into
    an exception; it costs one Python start-up (about 0.3 s) plus one read of the file.
    ``timeout`` defaults to 120 s plus 1 s per 10 MB of file.

    Does nothing for a path that is not an HDF5 file (missing, a directory, other bytes).

    Raises:
        UnreadableFileError: reading crashed or hung (see :func:`run_isolated`). Files that
            HDF5 merely rejects pass: the caller's own reader reports them.
    """
    import h5py

    if not h5py.is_hdf5(path):
        return
    if timeout is None:
        timeout = 120.0 + os.path.getsize(path) / 10e6
    run_isolated(_READ_HDF5, path, timeout)
