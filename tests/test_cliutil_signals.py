"""run_guarded: SIGTERM stops a command as Ctrl-C does (cleanup runs), with exit status 143."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from keras_ternary.cliutil import EXIT_TERMINATED, Terminated, run_guarded, sigterm_as_interrupt

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import sys, time
from keras_ternary.cliutil import run_guarded

def body():
    try:
        print("ready", flush=True)
        time.sleep(60)
    finally:
        print("cleanup ran", flush=True)

sys.exit(run_guarded(body, interrupted="stopped"))
"""


@pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="needs POSIX signals")
def test_sigterm_runs_cleanup_prints_one_line_and_exits_143():
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == EXIT_TERMINATED == 143
    assert out == "cleanup ran\n"
    assert err == "stopped (SIGTERM)\n"


def test_handler_is_restored_afterwards_and_not_installed_off_the_main_thread():
    before = signal.getsignal(signal.SIGTERM)
    with sigterm_as_interrupt():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before

    seen = []

    def in_thread():
        with sigterm_as_interrupt():  # signal.signal would raise ValueError here
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()
    assert seen == [before]


def test_terminated_is_a_keyboard_interrupt_so_existing_handlers_see_it():
    assert issubclass(Terminated, KeyboardInterrupt)

    def ctrl_c():
        raise KeyboardInterrupt

    assert run_guarded(ctrl_c, interrupted="x") == 130
