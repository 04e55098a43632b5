"""Train one configuration into a run directory, resumably.

A run directory holds::

    config.yaml            the complete, validated configuration (written first)
    history.csv            one row per epoch: epoch (1-based), paper_epoch (time_scale · epoch,
                           the learning-rate axis), loss, accuracy, val_loss, val_accuracy,
                           lr (at the epoch's first step), delta (Δ at its end), sparsity,
                           entropy, epoch_time_s
    tensorboard/           TensorBoard event files (same scalars)
    checkpoints/last.h5    model + optimizer state after the latest epoch, with the run state
                           (epochs done, best accuracy, wall time) as an HDF5 attribute
    checkpoints/best.h5    the model at the best validation accuracy
    snapshots/epoch_NNNN.json  latent-weight histograms and ternary statistics after the
                           epochs that correspond to ``snapshot_epochs`` of the paper (Fig. 1)
    model.h5               the final model (loads with ``tf.keras.models.load_model``)
    ternary_stats.json     final per-layer statistics of the quantized weights
    summary.json           best and final metrics (written last: its presence means finished)
    .keras_ternary_run     marker: this is a run directory (format version; written first)
    .keras_ternary_run.lock  advisory lock of the process writing the directory (its pid)

The format (names, marker, lock, integrity rules) is :mod:`keras_ternary.rundir`. Only these
files are ever written, replaced or moved; anything else in the directory is left alone, and
a non-empty directory without the marker (or a pre-marker run's files) is refused.

Every file is written to a temporary name, flushed and moved into place with ``os.replace``,
so an interrupted run never leaves a half-written file. ``resume=True`` first checks that
config.yaml, history.csv and the checkpoint agree (epochs, width, quantizer, Δ and learning
rate per epoch), then reloads the last checkpoint (weights, Adam state and step counter, hence
the same learning rate) and continues at the next epoch; Δ is a function of the epoch
(:class:`keras_ternary.DeltaGrowth`), so it continues too; under the run's lock it also
deletes temporary files a killed process left behind. A directory with results but no
``checkpoints/last.h5`` is never restarted silently: ``force_new=True`` starts over after
moving the old files into a dated subfolder.

A loss that becomes NaN or infinite stops training at once: nothing of that epoch is written
(``history.csv`` and ``checkpoints/last.h5`` stay at the last good epoch, no ``model.h5`` or
``summary.json``) and :class:`LossNotFiniteError` names the epoch, step and checkpoint.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from keras_ternary import _compat

_compat.ensure_legacy_keras()

import tensorflow as tf  # noqa: E402

from keras_ternary import data as data_lib  # noqa: E402
from keras_ternary import distribute, rundir  # noqa: E402
from keras_ternary.callbacks import DeltaGrowth  # noqa: E402
from keras_ternary.config import (  # noqa: E402
    ConfigError,
    TrainConfig,
    config_from_dict,
    dump_yaml,
)
from keras_ternary.fileio import (  # noqa: E402
    UnreadableFileError,
    WriteError,
    atomic_write_text,
    atomic_write_with,
    check_input_file,
    probe_hdf5,
)
from keras_ternary.modelfile import ModelFileError, check_model_file, h5_model_config  # noqa: E402
from keras_ternary.models import resnet20_star  # noqa: E402
from keras_ternary.progress import TerminalProgress, wants_progress_bar  # noqa: E402
from keras_ternary.rundir import (  # noqa: E402
    BEST_CKPT,
    CONFIG_FILE,
    FINAL_MODEL,
    HISTORY_FIELDS,
    HISTORY_FILE,
    LAST_CKPT,
    SNAPSHOT_DIR,
    STATS_FILE,
    SUMMARY_FILE,
    TENSORBOARD_DIR,
    RunError,
    format_history,
    read_history,
    run_status,
)
from keras_ternary.saving import TRAINING_DATA_ATTR, training_data_record  # noqa: E402
from keras_ternary.schedules import EpochPiecewiseSchedule  # noqa: E402
from keras_ternary.stats import ternary_stats  # noqa: E402

__all__ = [
    "HISTORY_FIELDS",
    "LossNotFiniteError",
    "RunError",
    "RunResult",
    "atomic_write_text",
    "build_model",
    "read_history",
    "run_status",
    "train",
]

STATE_ATTR = "keras_ternary_run_state"


class LossNotFiniteError(RunError):
    """The training loss became NaN or infinite; the run directory keeps the last good epoch."""


@dataclass
class RunResult:
    """Outcome of :func:`train`: ``status`` is "finished", "stopped" or "already_finished"."""

    run_dir: Path
    status: str
    epochs_done: int
    summary: dict[str, Any] | None


# --------------------------------------------------------------------------- atomic files
def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_save_model(
    model: tf.keras.Model,
    path: str | os.PathLike,
    include_optimizer: bool,
    state: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    """Save ``model`` as HDF5 via a temporary file; ``state`` and ``data`` (the training-data
    record, :data:`keras_ternary.saving.TRAINING_DATA_ATTR`) go into file attributes."""
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


def read_checkpoint_state(path: str | os.PathLike) -> dict[str, Any]:
    """The run state stored in a checkpoint written by :func:`atomic_save_model`.

    The whole file is first read in a child process (:func:`~keras_ternary.fileio.probe_hdf5`):
    a corrupt checkpoint can crash the HDF5 library, which must not take this process along.
    """
    try:
        probe_hdf5(path)
    except UnreadableFileError as exc:
        raise RunError(f"checkpoint {exc}") from None
    try:
        with h5py.File(path, "r") as handle:
            state = json.loads(handle.attrs[STATE_ATTR])
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise RunError(f"checkpoint {path} is unreadable or lacks the run state ({exc})") from None
    done = state.get("epochs_done") if isinstance(state, dict) else None
    if isinstance(done, bool) or not isinstance(done, int) or done < 0:
        raise RunError(
            f"checkpoint {path} holds an invalid run state (no epochs_done >= 0): "
            f"{json.dumps(state)[:200]}"
        )
    return state


# --------------------------------------------------------------------------- run directory
def load_run_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The configuration stored in a run directory."""
    from keras_ternary.config import read_config_file

    path = Path(run_dir) / CONFIG_FILE
    if not os.path.lexists(path) and not os.path.lexists(Path(run_dir) / rundir.MARKER_FILE):
        raise RunError(f"{run_dir} is not a run directory (no {CONFIG_FILE})")
    try:
        return config_from_dict(read_config_file(path))
    except ConfigError as exc:
        raise RunError(f"{path} is not a valid run configuration: {exc}") from None


def _check_run_dir(config: TrainConfig, resume: bool, force_new: bool = False) -> str:
    """Check the directory against the request (writing nothing); return its status.

    "new" also for a run directory whose files ``force_new`` will move aside.
    """
    run_dir = config.run_dir
    _check_directory_path(run_dir)
    if not run_dir.is_dir():
        return "new"
    entries = [e for e in run_dir.iterdir() if e.name != rundir.LOCK_FILE]
    if entries and not rundir.is_run_dir(run_dir):
        raise RunError(
            f"{run_dir} exists, is not empty and is not a run directory (no "
            f"{rundir.MARKER_FILE}); nothing in it is touched: choose --out"
        )
    if not entries:
        return "new"
    rundir.read_marker(run_dir)  # a newer format is refused
    rundir.check_unlocked(run_dir)
    _check_writable(run_dir)
    status = run_status(run_dir)
    if force_new:
        return "new"
    if status == "new":
        kept = [
            p.relative_to(run_dir).as_posix()
            for p in rundir.progress_files(run_dir)
            if not p.relative_to(run_dir).as_posix().startswith(TENSORBOARD_DIR)
        ]
        if kept:
            raise RunError(
                f"{run_dir} holds results ({', '.join(kept[:3])}{', ...' if len(kept) > 3 else ''}"
                f") but no {LAST_CKPT} to resume from; nothing was changed. To start over, add "
                "--force-new (the old files are moved into a dated subfolder)"
            )
        return status
    stored = load_run_config(run_dir)
    if _comparable(stored) != _comparable(config):
        raise RunError(
            f"{run_dir} holds a run with a different configuration; resume it without "
            "changing options (train --resume DIR) or choose another --out"
        )
    if not resume:
        raise RunError(
            f"{run_dir} already holds a {status} run; pass --resume to continue it, "
            "--force-new to start over (the old files are moved aside), or choose another --out"
        )
    return status


def _check_directory_path(run_dir: Path) -> None:
    """RunError unless ``run_dir`` is, or can be created as, a directory."""
    if "\0" in str(run_dir):
        raise RunError(f"the run directory path contains a NUL byte: {str(run_dir)[:200]!r}")
    for path in (run_dir, *run_dir.parents):
        if os.path.lexists(path):
            if not path.is_dir():
                raise RunError(
                    f"cannot use {run_dir} as run directory: {path} exists and is not a "
                    "directory; choose another --out"
                )
            return


def _check_writable(run_dir: Path) -> None:
    """RunError if the run directory's folders cannot be written (before any epoch)."""
    for folder in (run_dir, run_dir / "checkpoints", run_dir / SNAPSHOT_DIR):
        if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
            raise RunError(
                f"cannot write to {folder}: permission denied; fix its permissions, then resume"
            )


def _check_resume(config: TrainConfig, safe_mode: bool) -> tuple[dict[str, Any], list]:
    """State and history of a partial run, after checking that they agree with ``config``."""
    run_dir = config.run_dir
    last = run_dir / LAST_CKPT
    try:
        check_model_file(last, safe_mode=safe_mode)
    except ModelFileError as exc:
        raise RunError(f"checkpoint {exc}") from None
    state = read_checkpoint_state(last)
    try:
        model_config = h5_model_config(last) or {}
    except ModelFileError as exc:
        raise RunError(f"checkpoint {exc}") from None
    done = int(state["epochs_done"])
    rows = rundir.check_history(run_dir / HISTORY_FILE, done)
    growth = None if config.per_step else make_delta_growth(config)  # per step: Δ varies
    expected = [
        {
            "paper_epoch": round(config.time_scale * r["epoch"], 6),
            "delta": None if growth is None else growth.delta_for(r["epoch"] - 1),
        }
        for r in rows
    ]
    rundir.check_resumable(
        run_dir, _comparable(config), state, rundir.model_fingerprint(model_config), rows, expected
    )
    return state, rows


def _check_lr_history(config: TrainConfig, schedule: EpochPiecewiseSchedule, rows: list) -> None:
    """The learning rate recorded per epoch must be what ``schedule`` gives (same data size)."""
    expected = [
        {"lr": schedule.value_at_step((r["epoch"] - 1) * schedule.steps_per_epoch)} for r in rows
    ]
    rundir.check_resumable(config.run_dir, _comparable(config), {}, {}, rows, expected)


def _open_run_dir(
    config: TrainConfig,
    status: str,
    resume: bool,
    force_new: bool,
    created_by: str,
    log: Callable[[str], None],
    replace: bool = False,
) -> rundir.RunLock:
    """Create/lock the run directory, check nothing changed meanwhile, then prepare it."""
    run_dir = config.run_dir
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"cannot create run directory {run_dir}: {exc.strerror or exc}") from None
    lock = rundir.acquire_lock(run_dir)
    try:
        if _check_run_dir(config, resume, force_new) != status:
            raise RunError(f"{run_dir} changed while the data was loading (another process?)")
        if force_new and replace:
            rundir.remove_own_files(run_dir)
        elif force_new and rundir.own_files(run_dir):
            aside = rundir.move_aside(run_dir)
            log(f"moved the previous files of {run_dir} to {aside}")
        if status == "new":
            if not os.path.lexists(run_dir / rundir.MARKER_FILE):
                rundir.write_marker(run_dir, created_by)
            atomic_write_text(run_dir / CONFIG_FILE, dump_yaml(config))
        else:
            if not os.path.lexists(run_dir / rundir.MARKER_FILE):  # a run of an older version
                rundir.write_marker(run_dir, created_by)
            for path in rundir.stale_temp_files(run_dir):
                path.unlink(missing_ok=True)
                log(f"removed {path} (temporary file of an interrupted write)")
    except OSError as exc:
        lock.release()
        raise RunError(f"cannot prepare run directory {run_dir}: {exc}") from None
    except BaseException:
        lock.release()
        raise
    return lock


def _comparable(config: TrainConfig) -> dict[str, Any]:
    values = config.to_dict()
    values.pop("out_dir")
    values.pop("strategy")  # a run may be resumed on other devices (same global batch)
    return values


# --------------------------------------------------------------------------- model
def build_model(config: TrainConfig, data: data_lib.ArrayData) -> tf.keras.Model:
    """ResNet-20* for ``config`` compiled with Adam, the (compressed) paper LR and CE loss."""
    m = config.model
    model = resnet20_star(
        inflation=m.inflation,
        quantizer=None if m.quantizer == "float" else m.quantizer,
        input_quantizer=m.input_quantizer,
        quantize_first_last=m.quantize_first_last,
        delta=config.ternary.delta0,
        num_classes=data.num_classes,
        input_shape=tuple(data.x_train.shape[1:]),
        blocks_per_stage=m.blocks_per_stage,
        seed=config.seed,
    )
    schedule = make_lr_schedule(config, len(data.y_train))
    model.compile(
        optimizer=tf.keras.optimizers.Adam(learning_rate=schedule),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def make_lr_schedule(config: TrainConfig, n_train: int) -> EpochPiecewiseSchedule:
    return EpochPiecewiseSchedule(
        steps_per_epoch=data_lib.steps_per_epoch(n_train, config.batch_size),
        values=config.optimizer.lr_values,
        boundaries=config.optimizer.lr_boundaries,
        time_scale=config.time_scale,
        per_step=config.per_step,
    )


def make_delta_growth(config: TrainConfig) -> DeltaGrowth | None:
    """The Δ regime callback for ternary runs (``time_scale`` and ``per_step`` from the config)."""
    if not config.is_ternary:
        return None
    t = config.ternary
    return DeltaGrowth(
        t.regime,
        t.delta0,
        t.multiplier,
        t.delta_max,
        time_scale=config.delta_time_scale,
        per_step=config.per_step,
    )


def _load_checkpoint(path: Path, safe_mode: bool = True) -> tf.keras.Model:
    from keras_ternary.modelfile import load_model

    try:
        return load_model(
            path,
            safe_mode=safe_mode,
            compile=True,
        )
    except (OSError, ValueError) as exc:
        raise RunError(f"cannot load checkpoint {path}: {str(exc)[:300]}") from None


def _optimizer_schedule_config(model: tf.keras.Model) -> dict[str, Any] | None:
    """The config of the optimizer's learning-rate schedule (None if it has none)."""
    if model.optimizer is None:
        return None
    lr = model.optimizer.get_config().get("learning_rate")
    return lr.get("config") if isinstance(lr, dict) else None


def _quantized_stats(model: tf.keras.Model) -> tuple[float | None, float | None]:
    """(sparsity, entropy) of all quantized kernels, (None, None) for a float model."""
    stats = ternary_stats(model, kinds=None, histogram=False)
    if stats.total.n_weights == 0:
        return None, None
    return stats.sparsity, stats.entropy


# --------------------------------------------------------------------------- the recorder
class RunRecorder(tf.keras.callbacks.Callback):
    """Per epoch: history row, checkpoints, snapshots, a one-line report and stop checks.

    Must come after :class:`DeltaGrowth` (whose logs it records) and before ``TensorBoard``
    (which then sees ``lr`` and, for binary runs, ``sparsity``/``entropy``).
    """

    def __init__(
        self,
        config: TrainConfig,
        schedule: EpochPiecewiseSchedule,
        rows: list[dict[str, Any]],
        state: dict[str, Any],
        stop_after: int | None,
        time_limit: float | None,
        log: Callable[[str], None],
    ):
        super().__init__()
        self.config = config
        self.run_dir = config.run_dir
        self.schedule = schedule
        self.rows = rows
        self.state = state
        self.stop_after = stop_after
        self.time_limit = time_limit
        self.log = log
        self.snapshots = set(config.snapshot_our_epochs())
        self._session_start = time.monotonic()
        self._session_epochs = 0
        self._wall_before = float(state.get("wall_time_s", 0.0))
        self._epoch_start = 0.0
        self._lr = 0.0
        self._epoch = 0
        #: the training-data record written into every saved model (set by :func:`train`)
        self.data_record: dict[str, Any] | None = None
        #: (1-based epoch, 1-based step or None, loss) of the first non-finite loss
        self.non_finite: tuple[int, int | None, float] | None = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch + 1
        self._epoch_start = time.monotonic()
        self._lr = self.schedule.value_at_step(int(self.model.optimizer.iterations.numpy()))

    def on_train_batch_end(self, batch, logs=None):
        self._watch_loss(logs, batch + 1)

    def _watch_loss(self, logs: dict[str, Any] | None, step: int | None) -> bool:
        """Stop training at the first non-finite loss; True if the loss is not finite."""
        if self.non_finite is not None:
            return True
        loss = (logs or {}).get("loss")
        if loss is None:
            return False
        value = float(np.asarray(loss))
        if math.isfinite(value):
            return False
        self.non_finite = (self._epoch, step, value)
        self.model.stop_training = True
        return True

    def on_epoch_end(self, epoch, logs=None):
        if self._watch_loss(logs, None):
            return  # nothing of this epoch is written: the run directory keeps the last good one
        logs = logs if logs is not None else {}
        logs["lr"] = self._lr
        if "sparsity" not in logs:
            sparsity, entropy = _quantized_stats(self.model)
            if sparsity is not None:
                logs["sparsity"], logs["entropy"] = sparsity, entropy
        done = epoch + 1
        row = {k: _plain(logs.get(k)) for k in HISTORY_FIELDS}
        row.update(
            epoch=done,
            paper_epoch=round(self.config.time_scale * done, 6),
            epoch_time_s=round(time.monotonic() - self._epoch_start, 3),
        )
        self.rows[:] = [r for r in self.rows if r["epoch"] < done] + [row]
        atomic_write_text(self.run_dir / HISTORY_FILE, format_history(self.rows))

        val = row.get("val_accuracy")
        improved = val is not None and (
            self.state.get("best_val_accuracy") is None or val > self.state["best_val_accuracy"]
        )
        if improved:
            self.state.update(best_val_accuracy=val, best_epoch=done)
            atomic_save_model(self.model, self.run_dir / BEST_CKPT, False, data=self.data_record)
        if done in self.snapshots:
            self._snapshot(done, row)
        self.state.update(
            epochs_done=done,
            wall_time_s=self._wall_before + time.monotonic() - self._session_start,
        )
        atomic_save_model(
            self.model, self.run_dir / LAST_CKPT, True, state=self.state, data=self.data_record
        )
        self.log(_epoch_line(done, self.config.epochs, row))

        self._session_epochs += 1
        if self.stop_after is not None and self._session_epochs >= self.stop_after:
            self.model.stop_training = True
        elapsed = time.monotonic() - self._session_start
        if self.time_limit is not None and elapsed >= self.time_limit:
            self.model.stop_training = True

    def _snapshot(self, done: int, row: dict[str, Any]) -> None:
        stats = ternary_stats(self.model, kinds=None, histogram=True)
        atomic_write_json(
            self.run_dir / SNAPSHOT_DIR / f"epoch_{done:04d}.json",
            {
                "epoch": done,
                "paper_epoch": row["paper_epoch"],
                "delta": row.get("delta"),
                "stats": stats.to_dict(histogram=True),
            },
        )


def _print(message: str) -> None:
    print(message, flush=True)


def _plain(value: Any) -> float | None:
    if value is None:
        return None
    value = float(np.asarray(value))
    return None if math.isnan(value) else value


def _epoch_line(done: int, total: int, row: dict[str, Any]) -> str:
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


# --------------------------------------------------------------------------- train
def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    stop_after: int | None = None,
    time_limit: float | None = None,
    verbose: int = 2,
    log: Callable[[str], None] | None = None,
    data: data_lib.ArrayData | None = None,
    force_new: bool = False,
    safe_mode: bool = True,
    created_by: str = "train",
    replace: bool = False,
) -> RunResult:
    """Train ``config`` into ``config.run_dir`` (see the module docstring).

    Args:
        config: a validated configuration.
        resume: continue a partial run in that directory (its stored config must be equal).
        stop_after: stop after this many epochs in this call (the run stays resumable).
        time_limit: stop at the end of the first epoch finishing after this many seconds.
        verbose: 1 draws a progress bar during each epoch when stdout is a terminal; 0 and 2
            draw none. Every epoch ends with one line through ``log`` in all cases.
        log: receives the one-line-per-epoch report and status messages.
        data: already loaded data (default: load what ``config.data`` names).
        force_new: start over in a run directory that holds a run: its files are moved into
            a dated subfolder first (never deleted).
        safe_mode: refuse a checkpoint holding Python code (a ``Lambda`` layer) instead of
            running that code when loading it (see :mod:`keras_ternary.modelfile`).
        created_by: recorded in the run-directory marker of a new run.
        replace: with ``force_new``, delete the run's own files instead of moving them aside
            (the quick start replacing its earlier run); other files are never touched.

    Raises:
        RunError: the directory cannot be used as asked (another process holds it, its
            files disagree, a write failed); nothing was changed, or the run keeps its last
            completed epoch.
    """
    config.validate()
    log = log or _print
    strategy = distribute.make_strategy(config.strategy)  # multiworker: before any TF op
    run_dir = config.run_dir
    status = _check_run_dir(config, resume, force_new)
    if status == "finished":
        log(f"{run_dir}: already finished")
        return RunResult(
            run_dir, "already_finished", config.epochs, _read_json(run_dir / SUMMARY_FILE)
        )

    state: dict[str, Any] = {"epochs_done": 0, "best_val_accuracy": None, "best_epoch": None}
    rows: list[dict[str, Any]] = []
    if status == "partial":  # check what is resumed before the (slow) data loading
        state, rows = _check_resume(config, safe_mode)

    tf.keras.utils.set_random_seed(config.seed)
    if data is None:
        d = config.data
        data = data_lib.load_data(
            d.source, d.dir, d.tfds_dir, d.download, d.train_size, d.test_size, seed=0
        )
    log(f"data: {data.describe()}")
    with strategy.scope():
        if status == "partial":
            model = _load_checkpoint(run_dir / LAST_CKPT, safe_mode)
            if model.optimizer is None:
                raise RunError(
                    f"checkpoint {run_dir / LAST_CKPT} holds no optimizer state (saved without "
                    "the optimizer), so the run cannot be resumed exactly; start a new run"
                )
        else:
            model = build_model(config, data)
    distribute.prepare_model(model, strategy)
    if config.strategy != "default":
        log(distribute.describe(strategy, config.strategy))
    chief = distribute.is_chief(strategy)
    if not chief:  # read the shared run directory, write into a private temporary one
        config = dataclasses.replace(
            config, out_dir=str(distribute.output_dir(run_dir, strategy))
        )
        run_dir = config.run_dir
    schedule = make_lr_schedule(config, len(data.y_train))
    if _optimizer_schedule_config(model) != schedule.get_config():
        raise RunError(
            f"the checkpoint's learning-rate schedule does not match the configuration and "
            f"data of {run_dir} (different data size or batch size?)"
        )
    if status == "partial":
        _check_lr_history(config, schedule, rows)
    if chief:
        lock = _open_run_dir(config, status, resume, force_new, created_by, log, replace)
    else:  # its private directory is new (and deleted when the process ends)
        lock = _open_run_dir(config, "new", False, False, created_by, log)
    try:
        return _train_locked(
            config, status, model, data, schedule, state, rows, stop_after, time_limit, verbose, log
        )
    finally:
        lock.release()


def _train_locked(
    config: TrainConfig,
    status: str,
    model: tf.keras.Model,
    data: data_lib.ArrayData,
    schedule: EpochPiecewiseSchedule,
    state: dict[str, Any],
    rows: list[dict[str, Any]],
    stop_after: int | None,
    time_limit: float | None,
    verbose: int,
    log: Callable[[str], None],
) -> RunResult:
    """The training of :func:`train` once the run directory is locked and prepared."""
    run_dir = config.run_dir
    if status == "partial":
        log(f"resuming {run_dir} after epoch {state['epochs_done']}")
    state["config"] = _comparable(config)  # a resume compares config.yaml with it
    start = int(state["epochs_done"])

    callbacks: list[tf.keras.callbacks.Callback] = []
    if wants_progress_bar(verbose):  # first: erases its bar before the recorder's line
        callbacks.append(TerminalProgress())
    growth = make_delta_growth(config)
    if growth is not None:
        callbacks.append(growth)
    recorder = RunRecorder(config, schedule, rows, state, stop_after, time_limit, log)
    recorder.data_record = training_data_record(data, data_dir=config.data.dir)
    callbacks.append(recorder)
    if config.tensorboard and importlib.util.find_spec("tensorboard") is None:
        log("warning: the tensorboard package is not installed; no TensorBoard logs written")
    elif config.tensorboard:
        callbacks.append(
            tf.keras.callbacks.TensorBoard(
                log_dir=str(run_dir / TENSORBOARD_DIR), write_graph=False, profile_batch=0
            )
        )
    try:
        if start < config.epochs:
            _fit(model, config, data, start, callbacks)
        done = int(state.get("epochs_done", start))
        if recorder.non_finite is not None:
            raise LossNotFiniteError(_non_finite_message(recorder.non_finite, done, run_dir))
        if done < config.epochs:
            log(
                f"stopped after epoch {done}/{config.epochs}; continue with: "
                f"train --resume {run_dir}"
            )
            return RunResult(run_dir, "stopped", done, None)
        summary = _finish(model, config, rows, state, recorder.data_record)
    except WriteError as exc:
        done = int(state.get("epochs_done", start))
        raise RunError(
            f"{exc}; {run_dir} keeps its last completed epoch ({done}): fix the cause "
            f"(free space?), then continue with train --resume {run_dir}"
        ) from None
    log(f"finished {run_dir}: " + json.dumps({k: summary[k] for k in _SUMMARY_HEADLINE}))
    return RunResult(run_dir, "finished", done, summary)


def _fit(
    model: tf.keras.Model,
    config: TrainConfig,
    data: data_lib.ArrayData,
    start: int,
    callbacks: list[tf.keras.callbacks.Callback],
) -> None:
    """``model.fit`` from epoch ``start`` to ``config.epochs`` (silent: callbacks report).

    Under ``multiworker`` (the model's strategy) the batches are sharded across workers.
    """
    strategy = model.distribute_strategy
    model.fit(
        distribute.shard_dataset(
            data_lib.make_train_dataset(
                data, config.batch_size, config.seed, start, config.epochs, config.data.augment
            ),
            strategy,
        ),
        epochs=config.epochs,
        initial_epoch=start,
        steps_per_epoch=data_lib.steps_per_epoch(len(data.y_train), config.batch_size),
        validation_data=distribute.shard_dataset(
            data_lib.make_eval_dataset(data, config.batch_size), strategy
        ),
        callbacks=callbacks,
        verbose=0,  # our own line per epoch (and a bar on a terminal), see progress.py
    )


def _non_finite_message(where: tuple[int, int | None, float], done: int, run_dir: Path) -> str:
    epoch, step, value = where
    kind = "NaN" if math.isnan(value) else "infinite"
    at = f"epoch {epoch}" + ("" if step is None else f" (step {step})")
    kept = (
        f"last good checkpoint: epoch {done} in {run_dir / LAST_CKPT}"
        if done > 0
        else "no epoch finished, nothing to resume"
    )
    return f"loss became {kind} in {at}; {kept}"


_SUMMARY_HEADLINE = ("best_val_accuracy", "best_epoch", "final_sparsity", "final_entropy")


def _finish(
    model: tf.keras.Model,
    config: TrainConfig,
    rows: list[dict[str, Any]],
    state: dict[str, Any],
    data_record: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write model.h5, ternary_stats.json and (last) summary.json."""
    run_dir = config.run_dir
    atomic_save_model(model, run_dir / FINAL_MODEL, include_optimizer=False, data=data_record)
    stats = ternary_stats(model, kinds=None, histogram=True)
    atomic_write_json(run_dir / STATS_FILE, stats.to_dict(histogram=True))
    last = rows[-1] if rows else {}
    quantized = stats.total.n_weights > 0
    summary = {
        "name": config.name,
        "status": "finished",
        "epochs": config.epochs,
        "paper_epochs": config.paper_epochs,
        "time_scale": config.time_scale,
        "delta_time_scale": config.delta_time_scale if config.is_ternary else None,
        "quantizer": config.model.quantizer,
        "regime": config.ternary.regime if config.is_ternary else None,
        "delta0": config.ternary.delta0 if config.is_ternary else None,
        "multiplier": config.ternary.multiplier if config.is_ternary else None,
        "delta_max": config.ternary.delta_max if config.is_ternary else None,
        "inflation": config.model.inflation,
        "seed": config.seed,
        "trainable_params": int(sum(np.prod(v.shape) for v in model.trainable_variables)),
        "quantized_weights": stats.total.n_weights,
        "best_val_accuracy": state.get("best_val_accuracy"),
        "best_epoch": state.get("best_epoch"),
        "final_val_accuracy": last.get("val_accuracy"),
        "final_delta": last.get("delta"),
        "final_sparsity": stats.sparsity if quantized else 0.0,
        "final_entropy": stats.entropy if quantized else None,
        "wall_time_s": state.get("wall_time_s"),
    }
    atomic_write_json(run_dir / SUMMARY_FILE, summary)
    return summary


def _read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object file of the run (None if unreadable or not an object)."""
    try:
        check_input_file(path, "json")
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
