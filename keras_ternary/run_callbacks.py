"""The Keras callbacks that write a run directory during ``model.fit``, one job each.

Split the way Keras splits its own (``CSVLogger``, ``ModelCheckpoint``, ``TerminateOnNaN``):

* :class:`StopOnNonFiniteLoss` stops at the first NaN or infinite loss and remembers where;
* :class:`EpochMetrics` adds ``lr`` (and, for runs without Δ growth, ``sparsity`` and
  ``entropy``) to the epoch's logs, so that TensorBoard and the history see them;
* :class:`HistoryWriter` appends the epoch's row to ``history.csv``;
* :class:`SnapshotWriter` writes ``snapshots/epoch_NNNN.json`` after the snapshot epochs;
* :class:`CheckpointWriter` writes ``checkpoints/best.h5`` when validation accuracy improved
  and ``checkpoints/last.h5`` with the run state (written last: the epoch is then done);
* :class:`EpochReport` logs one line per epoch;
* :class:`SessionLimit` stops after a number of epochs or seconds in this call.

They share a :class:`RunProgress` (history rows, the run state, the first non-finite loss):
an epoch whose loss is not finite leaves no trace in the run directory. Their order in the
callback list is the order above, after ``DeltaGrowth`` (whose ``delta`` they record) and
before ``TensorBoard`` (see :func:`keras_ternary.training.train`). The file format is
:mod:`keras_ternary.rundir`.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import tensorflow as tf

from keras_ternary.fileio import atomic_write_text, atomic_write_with
from keras_ternary.rundir import (
    BEST_CKPT,
    HISTORY_FIELDS,
    HISTORY_FILE,
    LAST_CKPT,
    SNAPSHOT_DIR,
    STATE_ATTR,
    atomic_write_json,
    format_history,
)
from keras_ternary.saving import TRAINING_DATA_ATTR
from keras_ternary.schedules import EpochPiecewiseSchedule
from keras_ternary.stats import ternary_stats

__all__ = [
    "CheckpointWriter",
    "EpochMetrics",
    "EpochReport",
    "HistoryWriter",
    "RunProgress",
    "SessionLimit",
    "SnapshotWriter",
    "StopOnNonFiniteLoss",
    "atomic_save_model",
]


@dataclass
class RunProgress:
    """What the run callbacks share (and :func:`~keras_ternary.training.train` reads after).

    ``rows``: the history so far (a resumed run's rows first); ``state``: the run state
    stored in ``checkpoints/last.h5`` (``epochs_done``, ``best_val_accuracy``, ...);
    ``non_finite``: (1-based epoch, 1-based step or None, loss) of the first non-finite loss.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    non_finite: tuple[int, int | None, float] | None = None

    def row(self, epoch: int) -> dict[str, Any] | None:
        """The history row of 0-based ``epoch`` if it was recorded (not after a bad loss)."""
        if self.non_finite is not None or not self.rows or self.rows[-1]["epoch"] != epoch + 1:
            return None
        return self.rows[-1]


def atomic_save_model(
    model: tf.keras.Model,
    path: str | os.PathLike,
    include_optimizer: bool,
    state: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    """Save ``model`` as HDF5 via a temporary file; ``state`` (:data:`~keras_ternary.rundir.
    STATE_ATTR`) and ``data`` (the training-data record,
    :data:`keras_ternary.saving.TRAINING_DATA_ATTR`) go into file attributes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: str) -> None:
        with warnings.catch_warnings():  # HDF5 is deliberate: one file, atomically replaced
            warnings.filterwarnings("ignore", message=".*HDF5 file via `model.save\\(\\)`")
            model.save(tmp, save_format="h5", include_optimizer=include_optimizer)
        if state is not None or data is not None:
            with h5py.File(tmp, "a") as handle:
                if state is not None:
                    handle.attrs[STATE_ATTR] = json.dumps(state)
                if data is not None:
                    handle.attrs[TRAINING_DATA_ATTR] = json.dumps(data)

    atomic_write_with(path, write, suffix=".h5")


class StopOnNonFiniteLoss(tf.keras.callbacks.Callback):
    """Stop training at the first NaN or infinite loss (of a step or an epoch).

    Records where in :attr:`RunProgress.non_finite`; the writers then skip that epoch, so
    the run directory keeps the last good one. Must come before them.
    """

    def __init__(self, progress: RunProgress):
        super().__init__()
        self.progress = progress
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch + 1

    def on_train_batch_end(self, batch, logs=None):
        self._watch(logs, batch + 1)

    def on_epoch_end(self, epoch, logs=None):
        self._watch(logs, None)

    def _watch(self, logs: dict[str, Any] | None, step: int | None) -> None:
        if self.progress.non_finite is not None:
            return
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        value = float(np.asarray(loss))
        if not math.isfinite(value):
            self.progress.non_finite = (self._epoch, step, value)
            self.model.stop_training = True


class EpochMetrics(tf.keras.callbacks.Callback):
    """Add the epoch's learning rate (at its first step) and, if no callback before it did,
    the sparsity and entropy of the quantized kernels (binary runs) to the epoch's logs."""

    def __init__(self, schedule: EpochPiecewiseSchedule):
        super().__init__()
        self.schedule = schedule
        self._lr = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._lr = self.schedule.value_at_step(int(self.model.optimizer.iterations.numpy()))

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        logs["lr"] = self._lr
        if "sparsity" not in logs:
            sparsity, entropy = _quantized_stats(self.model)
            if sparsity is not None:
                logs["sparsity"], logs["entropy"] = sparsity, entropy


class HistoryWriter(tf.keras.callbacks.Callback):
    """Append the epoch's row (:data:`~keras_ternary.rundir.HISTORY_FIELDS`) to
    ``history.csv``, rewriting the file atomically (rows of later epochs, left by a killed
    process, are dropped)."""

    def __init__(self, run_dir: Path, progress: RunProgress, time_scale: float):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.time_scale = time_scale
        self._epoch_start = 0.0

    def get_config(self) -> dict[str, Any]:
        return {"run_dir": str(self.run_dir), "time_scale": self.time_scale}

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        if self.progress.non_finite is not None:
            return
        logs = logs or {}
        done = epoch + 1
        row = {k: _plain(logs.get(k)) for k in HISTORY_FIELDS}
        row.update(
            epoch=done,
            paper_epoch=round(self.time_scale * done, 6),
            epoch_time_s=round(time.monotonic() - self._epoch_start, 3),
        )
        rows = self.progress.rows
        rows[:] = [r for r in rows if r["epoch"] < done] + [row]
        atomic_write_text(self.run_dir / HISTORY_FILE, format_history(rows))


class SnapshotWriter(tf.keras.callbacks.Callback):
    """After each epoch of ``epochs`` (1-based): latent-weight histograms and ternary
    statistics in ``snapshots/epoch_NNNN.json``."""

    def __init__(self, run_dir: Path, progress: RunProgress, epochs: Collection[int]):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.epochs = set(epochs)

    def get_config(self) -> dict[str, Any]:
        return {"run_dir": str(self.run_dir), "epochs": sorted(self.epochs)}

    def on_epoch_end(self, epoch, logs=None):
        row = self.progress.row(epoch)
        if row is None or epoch + 1 not in self.epochs:
            return
        stats = ternary_stats(self.model, kinds=None, histogram=True)
        atomic_write_json(
            self.run_dir / SNAPSHOT_DIR / f"epoch_{epoch + 1:04d}.json",
            {
                "epoch": epoch + 1,
                "paper_epoch": row["paper_epoch"],
                "delta": row.get("delta"),
                "stats": stats.to_dict(histogram=True),
            },
        )


class CheckpointWriter(tf.keras.callbacks.Callback):
    """``checkpoints/best.h5`` (the model) when validation accuracy improved, then
    ``checkpoints/last.h5`` (model, optimizer and the run state): the epoch is done.

    ``data_record`` (the training-data record) goes into both files.
    """

    def __init__(
        self, run_dir: Path, progress: RunProgress, data_record: dict[str, Any] | None = None
    ):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.data_record = data_record
        self._session_start = time.monotonic()
        self._wall_before = float(progress.state.get("wall_time_s", 0.0))

    def on_epoch_end(self, epoch, logs=None):
        row = self.progress.row(epoch)
        if row is None:
            return
        state, done = self.progress.state, epoch + 1
        val = row.get("val_accuracy")
        best = state.get("best_val_accuracy")
        if val is not None and (best is None or val > best):
            state.update(best_val_accuracy=val, best_epoch=done)
            atomic_save_model(self.model, self.run_dir / BEST_CKPT, False, data=self.data_record)
        state.update(
            epochs_done=done,
            wall_time_s=self._wall_before + time.monotonic() - self._session_start,
        )
        atomic_save_model(
            self.model, self.run_dir / LAST_CKPT, True, state=state, data=self.data_record
        )


class EpochReport(tf.keras.callbacks.Callback):
    """One line per recorded epoch through ``log``: loss, accuracies, lr, Δ, sparsity,
    entropy."""

    def __init__(self, progress: RunProgress, epochs: int, log: Callable[[str], None]):
        super().__init__()
        self.progress = progress
        self.epochs = epochs
        self.log = log

    def on_epoch_end(self, epoch, logs=None):
        row = self.progress.row(epoch)
        if row is not None:
            self.log(epoch_line(epoch + 1, self.epochs, row))


class SessionLimit(tf.keras.callbacks.Callback):
    """Stop at the end of the epoch that reaches ``epochs`` epochs or ``seconds`` seconds
    since this callback was made (the run stays resumable)."""

    def __init__(self, epochs: int | None = None, seconds: float | None = None):
        super().__init__()
        self.epochs = epochs
        self.seconds = seconds
        self._start = time.monotonic()
        self._done = 0

    def get_config(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "seconds": self.seconds}

    def on_epoch_end(self, epoch, logs=None):
        self._done += 1
        if self.epochs is not None and self._done >= self.epochs:
            self.model.stop_training = True
        if self.seconds is not None and time.monotonic() - self._start >= self.seconds:
            self.model.stop_training = True


def epoch_line(done: int, total: int, row: dict[str, Any]) -> str:
    """``epoch 3/9  loss=...  acc=...  val_acc=...  lr=...  delta=...  sparsity=...``."""
    parts = [f"epoch {done}/{total}"]
    for key, label, fmt in (
        ("loss", "loss", ".4f"),
        ("accuracy", "acc", ".4f"),
        ("val_accuracy", "val_acc", ".4f"),
        ("lr", "lr", ".1e"),
        ("delta", "delta", ".4f"),
        ("sparsity", "sparsity", ".4f"),
        ("entropy", "entropy", ".4f"),
    ):
        if row.get(key) is not None:
            parts.append(f"{label}={row[key]:{fmt}}")
    return "  ".join(parts)


def _plain(value: Any) -> float | None:
    if value is None:
        return None
    value = float(np.asarray(value))
    return None if math.isnan(value) else value


def _quantized_stats(model: tf.keras.Model) -> tuple[float | None, float | None]:
    """(sparsity, entropy) of all quantized kernels, (None, None) for a float model."""
    stats = ternary_stats(model, kinds=None, histogram=False)
    if stats.total.n_weights == 0:
        return None, None
    return stats.sparsity, stats.entropy
