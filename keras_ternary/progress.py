"""Training output: a transient progress bar on a terminal, one line per epoch everywhere.

``train`` runs Keras ``fit`` silently and prints its own line per epoch (loss, accuracy,
validation accuracy, learning rate, Δ, sparsity, entropy). On a terminal,
:class:`TerminalProgress` also draws Keras' progress bar during each epoch and erases it
before that line, so each epoch's metrics appear once and a log file (output that is not a
terminal) holds no carriage returns or backspaces.
"""

from __future__ import annotations

import sys
from typing import TextIO

import tensorflow as tf

__all__ = ["TerminalProgress", "wants_progress_bar"]

#: Erase the current terminal line (carriage return, ANSI "erase to end of line").
_ERASE_LINE = "\r\x1b[K"


def wants_progress_bar(verbose: int, stream: TextIO | None = None) -> bool:
    """True for ``verbose == 1`` when ``stream`` (default stdout) is a terminal."""
    stream = sys.stdout if stream is None else stream
    return verbose == 1 and bool(getattr(stream, "isatty", lambda: False)())


class TerminalProgress(tf.keras.callbacks.Callback):
    """Keras' progress bar within each epoch, erased at the epoch's end (for terminals)."""

    def __init__(self, stream: TextIO | None = None):
        super().__init__()
        self.stream = sys.stdout if stream is None else stream
        self._bar: tf.keras.utils.Progbar | None = None

    def on_epoch_begin(self, epoch, logs=None):
        steps = (self.params or {}).get("steps")
        self._bar = tf.keras.utils.Progbar(
            steps, stateful_metrics=["loss", "accuracy"], unit_name="step"
        )

    def on_train_batch_end(self, batch, logs=None):
        if self._bar is None:
            return
        values = [(k, v) for k, v in (logs or {}).items() if k in ("loss", "accuracy")]
        self._bar.update(batch + 1, values, finalize=False)  # never the final newline

    def on_epoch_end(self, epoch, logs=None):
        self._bar = None
        self.stream.write(_ERASE_LINE)
        self.stream.flush()
