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

The format (names, marker, lock, integrity rules) is :mod:`keras_ternary.rundir`; the
callbacks that write it during ``model.fit`` are :mod:`keras_ternary.run_callbacks`. Only these
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from keras_ternary import _compat

_compat.ensure_legacy_keras()

import tensorflow as tf  # noqa: E402

from keras_ternary import data as data_lib  # noqa: E402
from keras_ternary import distribute, rundir  # noqa: E402
from keras_ternary.callbacks import DeltaGrowth  # noqa: E402
from keras_ternary.config import TrainConfig  # noqa: E402
from keras_ternary.fileio import WriteError, check_input_file  # noqa: E402
from keras_ternary.modelfile import ModelFileError, check_model_file, h5_model_config  # noqa: E402
from keras_ternary.models import resnet20_star  # noqa: E402
from keras_ternary.progress import TerminalProgress, wants_progress_bar  # noqa: E402
from keras_ternary.run_callbacks import (  # noqa: E402
    CheckpointWriter,
    EpochMetrics,
    EpochReport,
    HistoryWriter,
    RunProgress,
    SessionLimit,
    SnapshotWriter,
    StopOnNonFiniteLoss,
    atomic_save_model,
)
from keras_ternary.rundir import (  # noqa: E402
    FINAL_MODEL,
    HISTORY_FILE,
    LAST_CKPT,
    STATS_FILE,
    SUMMARY_FILE,
    TENSORBOARD_DIR,
    RunError,
    atomic_write_json,
)
from keras_ternary.saving import training_data_record  # noqa: E402
from keras_ternary.schedules import EpochPiecewiseSchedule  # noqa: E402
from keras_ternary.stats import ternary_stats  # noqa: E402

__all__ = ["LossNotFiniteError", "RunError", "RunResult", "build_model", "train"]


class LossNotFiniteError(RunError):
    """The training loss became NaN or infinite; the run directory keeps the last good epoch."""


@dataclass
class RunResult:
    """Outcome of :func:`train`: ``status`` is "finished", "stopped" or "already_finished"."""

    run_dir: Path
    status: str
    epochs_done: int
    summary: dict[str, Any] | None


# --------------------------------------------------------------------------- resume checks
def _check_resume(config: TrainConfig, safe_mode: bool) -> tuple[dict[str, Any], list]:
    """State and history of a partial run, after checking that they agree with ``config``."""
    run_dir = config.run_dir
    last = run_dir / LAST_CKPT
    try:
        check_model_file(last, safe_mode=safe_mode)
    except ModelFileError as exc:
        raise RunError(f"checkpoint {exc}") from None
    state = rundir.read_checkpoint_state(last)
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
        run_dir,
        rundir.run_identity(config),
        state,
        rundir.model_fingerprint(model_config),
        rows,
        expected,
    )
    return state, rows


def _check_lr_history(config: TrainConfig, schedule: EpochPiecewiseSchedule, rows: list) -> None:
    """The learning rate recorded per epoch must be what ``schedule`` gives (same data size)."""
    expected = [
        {"lr": schedule.value_at_step((r["epoch"] - 1) * schedule.steps_per_epoch)} for r in rows
    ]
    rundir.check_resumable(config.run_dir, rundir.run_identity(config), {}, {}, rows, expected)


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


def _print(message: str) -> None:
    print(message, flush=True)


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
    status = rundir.check_run_dir(config, resume, force_new)
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
        config = dataclasses.replace(config, out_dir=str(distribute.output_dir(run_dir, strategy)))
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
        lock = rundir.open_run_dir(config, status, resume, force_new, created_by, log, replace)
    else:  # its private directory is new (and deleted when the process ends)
        lock = rundir.open_run_dir(config, "new", False, False, created_by, log)
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
    state["config"] = rundir.run_identity(config)  # a resume compares config.yaml with it
    start = int(state["epochs_done"])

    progress = RunProgress(rows, state)
    data_record = training_data_record(data, data_dir=config.data.dir)
    callbacks: list[tf.keras.callbacks.Callback] = []
    if wants_progress_bar(verbose):  # first: erases its bar before the epoch's line
        callbacks.append(TerminalProgress())
    growth = make_delta_growth(config)
    if growth is not None:
        callbacks.append(growth)
    callbacks += [  # the order of run_callbacks' docstring; TensorBoard then sees lr too
        StopOnNonFiniteLoss(progress),
        EpochMetrics(schedule),
        HistoryWriter(run_dir, progress, config.time_scale),
        SnapshotWriter(run_dir, progress, config.snapshot_our_epochs()),
        CheckpointWriter(run_dir, progress, data_record),
        EpochReport(progress, config.epochs, log),
        SessionLimit(stop_after, time_limit),
    ]
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
        if progress.non_finite is not None:
            raise LossNotFiniteError(_non_finite_message(progress.non_finite, done, run_dir))
        if done < config.epochs:
            log(
                f"stopped after epoch {done}/{config.epochs}; continue with: "
                f"train --resume {run_dir}"
            )
            return RunResult(run_dir, "stopped", done, None)
        summary = _finish(model, config, rows, state, data_record)
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
