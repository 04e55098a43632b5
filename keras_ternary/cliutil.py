"""The command-line convention of ``python -m keras_ternary`` and ``python -m hw_sim``.

A subcommand module exposes ``add_arguments(parser)`` and ``run(args) -> int``. A program's
``main`` parses with a :class:`Parser` and runs inside :func:`run_guarded`, which turns a user
error into one ``error: ...`` line on stderr and exit status 2, without a traceback, and
SIGTERM (``kill``, a batch scheduler's time limit) into the same orderly stop as Ctrl-C.
Imports no TensorFlow.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_TERMINATED",
    "EXIT_UNEXPECTED",
    "EXIT_USAGE",
    "CliError",
    "Parser",
    "add_import_argument",
    "import_modules",
    "run_guarded",
]

EXIT_USAGE = 2
EXIT_UNEXPECTED = 1
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143, the shell's status for a SIGTERM'd process


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM, so that a command stops as on Ctrl-C."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While active (main thread only), SIGTERM raises :class:`Terminated`.

    Everything that cleans up after Ctrl-C (atomic writes, checkpoints, the resumable run
    directory) then runs for SIGTERM too. The handler restores the previous one before
    raising, so that a second SIGTERM ends the process at once.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)

    def _raise(signum, frame):
        signal.signal(signal.SIGTERM, previous)
        raise Terminated()

    signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are a :class:`CliError` (one line, a pointer to --help)."""

    def error(self, message: str):  # type: ignore[override]
        raise CliError(f"{message} (see {self.prog} --help)")


def add_import_argument(parser: argparse.ArgumentParser) -> None:
    """``--import MODULE`` (repeatable): modules to import before a model is loaded."""
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import this Python module before loading the model, so that the custom layers, "
        "quantizers and initializers it registers with Keras can be deserialized (e.g. "
        "larq_zoo); may be repeated",
    )


def import_modules(names: Sequence[str]) -> None:
    """Import every module of ``--import``; one that fails raises a one-line :class:`CliError`."""
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - a module may raise anything while importing
            lines = [ln for ln in str(exc).splitlines() if ln.strip()]
            reason = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
            raise CliError(f"--import {name}: cannot import it ({reason})") from None


def run_guarded(
    body: Callable[[], int | None],
    user_errors: Callable[[], tuple[type[BaseException], ...]] = tuple,
    *,
    prefix: str = "",
    interrupted: str = "interrupted",
    debug_env: str | None = None,
) -> int:
    """Run ``body()`` (parse and run a command); return its exit status.

    Args:
        body: parses the command line and runs the command.
        user_errors: the exception classes that are the user's fault, besides
            :class:`CliError`; asked only after a failure (so that it can name classes of
            modules imported by then).
        prefix: put before ``error:`` (e.g. ``"hw_sim: "``).
        interrupted: the line printed on Ctrl-C (exit status 130) and, followed by
            ``(SIGTERM)``, on SIGTERM (exit status 143).
        debug_env: an unexpected exception propagates (a traceback) when this is None or
            the environment variable is set; otherwise it becomes one line and exit status 1.
    """
    try:
        with sigterm_as_interrupt():
            return int(body() or 0)
    except Terminated:
        print(f"{prefix}{interrupted} (SIGTERM)", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print(f"{prefix}{interrupted}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if isinstance(exc, (CliError, *user_errors())):
            print(f"{prefix}error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if debug_env is None or os.environ.get(debug_env):
            raise
        detail = str(exc).strip().splitlines()
        print(
            f"{prefix}error: {type(exc).__name__}: {detail[0] if detail else ''} "
            f"(set {debug_env}=1 for a traceback)",
            file=sys.stderr,
        )
        return EXIT_UNEXPECTED
