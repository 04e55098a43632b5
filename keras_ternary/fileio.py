"""Safe file input and output.

Output is atomic: a file is either absent, the old version, or complete — never partial.
Everything keras-ternary writes (run directories, reports, exported models) goes through
these helpers: the data is written to a temporary file in the destination directory, given
the mode a plain ``open(path, "w")`` would have (umask respected; ``mkstemp`` uses 0600),
flushed to the disk (``fsync``), renamed over ``path``, and the directory is flushed too, so
that a power loss cannot leave an empty file under ``path``. The temporary file is removed on
any failure, and a failure is a :class:`WriteError` naming ``path`` (not the temporary file).

Input: :func:`check_input_file` accepts regular files only (a FIFO or a device would block or
never end) up to a size limit per kind of file (:data:`SIZE_LIMITS`), without opening them;
:func:`read_input_file` reads one that way. :func:`check_not_input` refuses an output path
that names one of the inputs. :func:`probe_hdf5` reads an HDF5 file once in a child process
before this process opens it, because the HDF5 C library can crash or hang on some corrupt
files, which no Python code can catch.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "SIZE_LIMITS",
    "atomic_write_text",
    "InputFileError",
    "UnreadableFileError",
    "WriteError",
    "atomic_write",
    "atomic_write_with",
    "check_input_file",
    "check_not_input",
    "fsync_directory",
    "nested_size_exceeds",
    "new_file_mode",
    "probe_hdf5",
    "quote",
    "read_input_file",
]

_MB = 1 << 20

#: Largest file accepted per kind of input (bytes): far above what the project writes (a
#: ResNet-20* k = 5 checkpoint with Adam state is ~60 MB), far below what would exhaust memory.
SIZE_LIMITS: dict[str, int] = {
    "config": 1 * _MB,  # YAML/TOML run, sweep and technology files
    "json": 64 * _MB,  # summary.json, ternary_stats.json, snapshots
    "csv": 64 * _MB,  # history.csv
    "model": 4096 * _MB,  # .h5 / .keras models and checkpoints
    "tflite": 2048 * _MB,  # FlatBuffers cannot address more than 2 GiB
    "packed": 1024 * _MB,  # .tkp packed ternary models
    "array": 4096 * _MB,  # .npy / .npz inputs
}


def quote(value: object, limit: int = 200) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages about user input."""
    text = _bounded_repr(value, limit)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _bounded_repr(value: object, limit: int) -> str:
    """``repr`` without building a huge string for huge (or alias-bomb) containers."""
    if isinstance(value, list | tuple | dict | set) and nested_size_exceeds(value, limit):
        return f"<{type(value).__name__} of {len(value)} items>"
    return repr(value)


def nested_size_exceeds(value: object, limit: int) -> bool:
    """True if the nested container ``value`` has more than ``limit`` leaves (stops early)."""
    stack, count = [value], 0
    while stack:
        item = stack.pop()
        count += 1
        if count > limit:
            return True
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set):
            stack.extend(item)
    return False


class InputFileError(OSError):
    """An input path is missing, not a regular file, a symlink loop, or too large."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "bad input file"


class WriteError(OSError):
    """Writing an output failed (disk full, permission denied...); ``path`` is untouched."""

    def __init__(self, path: str | os.PathLike, exc: OSError) -> None:
        super().__init__(exc.errno, exc.strerror)
        self.path = os.fspath(path)
        self.reason = exc.strerror or str(exc)

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.reason}"


def _stat_error(path: str, exc: OSError, what: str) -> InputFileError:
    if exc.errno == errno.ELOOP:
        reason = "it is a symbolic link loop (too many levels of symbolic links)"
    elif exc.errno == errno.ENOENT:
        return InputFileError(f"{what} not found: {path}")
    else:
        reason = exc.strerror or str(exc)
    return InputFileError(f"cannot read {what} {path}: {reason}")


def check_input_file(path: str | os.PathLike, kind: str, what: str = "file") -> int:
    """Check that ``path`` is a regular file of at most ``SIZE_LIMITS[kind]`` bytes; its size.

    Only ``os.stat`` is used, so a FIFO, socket or device is rejected without blocking on it.

    Raises:
        InputFileError: a one-line message naming ``what`` and ``path``.
    """
    path = os.fspath(path)
    if "\0" in path:
        raise InputFileError(f"{what} path contains a NUL byte: {quote(path)}")
    try:
        st = os.stat(path)
    except OSError as exc:
        raise _stat_error(path, exc, what) from None
    if stat.S_ISDIR(st.st_mode):
        raise InputFileError(f"{what} {path} is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise InputFileError(
            f"{what} {path} is not a regular file (a FIFO, socket or device); "
            "copy the data into a file"
        )
    limit = SIZE_LIMITS[kind]
    if st.st_size > limit:
        raise InputFileError(
            f"{what} {path} is too large ({st.st_size / _MB:.0f} MB; at most {limit // _MB} MB "
            f"for a {kind} file)"
        )
    return st.st_size


def read_input_file(path: str | os.PathLike, kind: str, what: str = "file") -> bytes:
    """The bytes of ``path`` after :func:`check_input_file`, opened without blocking.

    The file is opened with ``O_NONBLOCK`` and checked again on the open descriptor, so a path
    swapped for a FIFO between the check and the open still cannot block.
    """
    check_input_file(path, kind, what)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise _stat_error(os.fspath(path), exc, what) from None
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > SIZE_LIMITS[kind]:
            raise InputFileError(f"{what} {os.fspath(path)} changed while being opened")
        return handle.read(SIZE_LIMITS[kind] + 1)


def check_not_input(
    output: str | os.PathLike | None, inputs: dict[str, str | os.PathLike | None]
) -> None:
    """Refuse an ``output`` path that is (or resolves to the same file as) one of ``inputs``.

    ``inputs`` maps a description ("the model", "--tech") to a path (None: not given).

    Raises:
        InputFileError: naming the output and the input it would overwrite.
    """
    if not output:
        return
    out = os.fspath(output)
    for what, path in inputs.items():
        if not path:
            continue
        if _same_file(out, os.fspath(path)):
            raise InputFileError(
                f"--out {out} is {what} ({os.fspath(path)}); writing it would destroy the input: "
                "choose another output path"
            )


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        try:
            return os.path.realpath(a) == os.path.realpath(b)
        except (OSError, ValueError):
            return False


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

    The parent directory must exist. The file and then its directory are flushed to the disk
    (``fsync``) around the rename. Any exception propagates after the temporary file is
    removed, an ``OSError`` as :class:`WriteError` naming ``path``; ``path`` is then untouched.
    """
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
        os.close(fd)
        write(tmp)
        os.chmod(tmp, new_file_mode())
        _fsync_path(tmp)
        os.replace(tmp, path)
        tmp = None
        fsync_directory(path.parent)
    except WriteError:
        raise
    except OSError as exc:
        raise WriteError(path, exc) from exc
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def _fsync_path(path: str | os.PathLike) -> None:
    """Flush the data of the file ``path`` to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_directory(path: str | os.PathLike) -> None:
    """Flush a directory's entries (a rename or a new file in it) to the disk, where possible."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # e.g. Windows: directories cannot be opened; nothing to flush
        return
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems do not support it on directories
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` (bytes, or text as UTF-8) to ``path`` atomically (see the module doc)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            handle.write(raw)

    atomic_write_with(path, write)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """:func:`atomic_write` of ``text``, creating the parent directories first."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text)


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
