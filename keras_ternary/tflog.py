"""Import TensorFlow without its C++ start-up chatter on stderr.

Importing TensorFlow 2.21 writes lines from native code to file descriptor 2 before its log
settings apply (``TF_CPP_MIN_LOG_LEVEL`` cannot hide them), and on a machine without a GPU
driver its first device query logs ``E0000 ... failed call to cuInit: ... (303)``::

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 ... port.cc:153] oneDNN custom operations are on. ...
    I0000 ... cudart_stub.cc:31] Could not find cuda drivers on your machine, ...
    I0000 ... cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use ...
    To enable the following instructions: AVX2 AVX512F ... rebuild TensorFlow with ...
    E0000 ... cuda_platform.cc:52] failed call to cuInit: ... UNKNOWN ERROR (303)

:func:`import_tensorflow` imports TensorFlow and queries its devices with fd 2 sent to a
temporary file, then writes every line of it back to stderr except exactly these kinds
(:data:`CHATTER`): info and warning lines of native code, and the "no GPU" cuInit error. Any
other output, errors included, is kept. Set ``KERAS_TERNARY_TF_LOG=1`` to see everything.
The command-line entry points also default ``TF_CPP_MIN_LOG_LEVEL`` to 2 (TensorFlow's info
and warning lines after start-up; errors stay) and quiet absl's Python warnings
(:func:`quiet_entry_point`).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator

__all__ = [
    "CHATTER",
    "VERBOSE_ENV",
    "filtered_stderr",
    "import_tensorflow",
    "is_chatter",
    "quiet_entry_point",
]

#: Set to 1 to see TensorFlow's start-up lines (nothing filtered, log levels untouched).
VERBOSE_ENV = "KERAS_TERNARY_TF_LOG"

_NATIVE = r"[\d:.]+ +\d+ [\w.]+:\d+\] "
#: Lines dropped from stderr while TensorFlow starts (see the module docstring).
CHATTER = re.compile(
    "|".join(
        (
            r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written "
            r"to STDERR$",
            rf"^[IW]\d{{4}} {_NATIVE}",
            r"^To enable the following instructions: .* rebuild TensorFlow with the appropriate "
            r"compiler flags\.$",
            rf"^E\d{{4}} {_NATIVE}failed call to cuInit: ",
            rf"^E\d{{4}} {_NATIVE}Unable to register cu(DNN|FFT|BLAS) factory: ",
            # the TFLite calibrator's summary line, printed by every int8/int16x8 conversion
            r"^fully_quantize: \d+, inference_type: \d+, input_inference_type: ",
        )
    )
)


def tf_log_requested() -> bool:
    """True if the user asked for TensorFlow's own log lines (``KERAS_TERNARY_TF_LOG=1``)."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def is_chatter(line: str) -> bool:
    """True for a start-up line of TensorFlow that :func:`import_tensorflow` drops."""
    return CHATTER.search(line.rstrip("\r\n")) is not None


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Capture fd 2 inside; afterwards write it back to stderr without :data:`CHATTER` lines."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", errors="replace")
            kept = [ln for ln in text.splitlines(keepends=True) if not is_chatter(ln)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def import_tensorflow():
    """``import tensorflow`` with its start-up chatter filtered.

    Which Keras ``tf.keras`` becomes is not this module's business: importing it imports
    :mod:`keras_ternary`, which selects tf-keras first (:mod:`keras_ternary._compat`).
    """
    if "tensorflow" in sys.modules or tf_log_requested():
        import tensorflow as tf

        return tf
    with filtered_stderr():
        import tensorflow as tf

        tf.config.list_physical_devices()  # the cuInit attempt happens here
    return tf


def quiet_entry_point() -> None:
    """For command-line entry points, before TensorFlow is imported: quiet log defaults.

    ``TF_CPP_MIN_LOG_LEVEL=2`` unless set (errors still shown) and absl's Python logging at
    ERROR; nothing changes with ``KERAS_TERNARY_TF_LOG=1``.
    """
    if tf_log_requested():
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        from absl import logging as absl_logging
    except ImportError:  # absl comes with TensorFlow; nothing to quiet without it
        return
    absl_logging.set_verbosity(absl_logging.ERROR)
