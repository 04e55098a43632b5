"""The run-directory format: its files, its marker, its lock, and the resume integrity check.

No TensorFlow here (the standard library, the configuration and, on use, h5py), so tools
that only read run directories (``report``, ``sweep --list``) stay light. The callbacks of
:mod:`keras_ternary.run_callbacks` write the files during training; this module decides what
a run directory is and what may be done to it:

* **Reading.** :func:`load_run_config` (the typed :class:`~keras_ternary.config.TrainConfig`),
  :func:`read_history`, :func:`read_checkpoint_state` (the :data:`STATE_ATTR` attribute of
  ``checkpoints/last.h5``), :func:`run_status`; :func:`run_identity` is what makes two
  configurations the same run.
* **Opening.** :func:`check_run_dir` checks a directory against a request without writing;
  :func:`open_run_dir` locks and prepares it (marker and config.yaml of a new run).

* **Marker.** A run directory holds :data:`MARKER_FILE` (``.keras_ternary_run``, JSON with
  the format name and :data:`FORMAT_VERSION`), written before anything else. Only a
  directory with the marker — or, for runs written before the marker existed, a
  ``config.yaml`` next to a checkpoint or ``summary.json`` — is a run directory. Only the
  files of :data:`OWN_FILES` are ever replaced or moved in it; any other file is the user's
  and is never touched.
* **Lock.** One process writes a run directory at a time: :func:`acquire_lock` takes an
  advisory ``fcntl.flock`` on :data:`LOCK_FILE` (holding the holder's pid), held for the
  life of the process and released by the kernel when it ends, even by a crash.
  :func:`check_unlocked` probes it without creating anything.
* **Integrity.** :func:`check_resumable` compares config, history and checkpoint before a
  resume touches anything (:class:`RunError` saying what differs and how to continue).
* **Moving aside.** :func:`move_aside` (``train --force-new``) moves the run's own files into
  a dated subfolder; nothing is deleted.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from keras_ternary.config import (
    ConfigError,
    TrainConfig,
    config_from_dict,
    dump_yaml,
    read_config_file,
)
from keras_ternary.fileio import (
    UnreadableFileError,
    atomic_write,
    atomic_write_text,
    check_input_file,
    fsync_directory,
    probe_hdf5,
    quote,
)

__all__ = [
    "FORMAT_VERSION",
    "STATE_ATTR",
    "HISTORY_FIELDS",
    "LOCK_FILE",
    "MARKER_FILE",
    "OWN_FILES",
    "RunError",
    "RunLock",
    "acquire_lock",
    "atomic_write_json",
    "check_run_dir",
    "check_history",
    "check_resumable",
    "check_unlocked",
    "format_history",
    "is_run_dir",
    "load_run_config",
    "model_fingerprint",
    "move_aside",
    "open_run_dir",
    "read_checkpoint_state",
    "read_history",
    "read_marker",
    "remove_own_files",
    "run_identity",
    "run_status",
    "write_marker",
]

CONFIG_FILE = "config.yaml"
HISTORY_FILE = "history.csv"
LAST_CKPT = "checkpoints/last.h5"
BEST_CKPT = "checkpoints/best.h5"
FINAL_MODEL = "model.h5"
STATS_FILE = "ternary_stats.json"
SUMMARY_FILE = "summary.json"
SNAPSHOT_DIR = "snapshots"
TENSORBOARD_DIR = "tensorboard"
MARKER_FILE = ".keras_ternary_run"
LOCK_FILE = ".keras_ternary_run.lock"
FORMAT_NAME = "keras-ternary run directory"
FORMAT_VERSION = 1
#: HDF5 attribute of ``checkpoints/last.h5`` holding the run state (JSON: epochs_done,
#: best_val_accuracy, best_epoch, wall_time_s and the configuration trained with)
STATE_ATTR = "keras_ternary_run_state"

#: Files and folders the project writes in a run directory (globs relative to it). Nothing
#: else in a run directory is ever replaced, moved or removed.
OWN_FILES: tuple[str, ...] = (
    CONFIG_FILE,
    HISTORY_FILE,
    LAST_CKPT,
    BEST_CKPT,
    FINAL_MODEL,
    STATS_FILE,
    SUMMARY_FILE,
    f"{SNAPSHOT_DIR}/epoch_*.json",
    f"{TENSORBOARD_DIR}/*/events.out.tfevents.*",
)
#: Folders the project creates, removed only when empty (deepest first).
_OWN_DIRS = (
    "checkpoints",
    SNAPSHOT_DIR,
    f"{TENSORBOARD_DIR}/train",
    f"{TENSORBOARD_DIR}/validation",
    TENSORBOARD_DIR,
)
#: Names of the temporary files of :func:`keras_ternary.fileio.atomic_write_with`.
TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.(tmp|h5)$")

HISTORY_FIELDS = (
    "epoch",
    "paper_epoch",
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "lr",
    "delta",
    "sparsity",
    "entropy",
    "epoch_time_s",
)
#: History columns that are always filled in a row the project wrote.
_REQUIRED_CELLS = ("epoch", "paper_epoch", "loss", "accuracy", "lr", "epoch_time_s")


class RunError(RuntimeError):
    """A run directory cannot be used as asked; the message says why and what to do."""


# --------------------------------------------------------------------------- marker
def write_marker(run_dir: str | os.PathLike, created_by: str) -> None:
    """Mark ``run_dir`` (which must exist) as a run directory written by ``created_by``."""
    info = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "created_by": created_by,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write(Path(run_dir) / MARKER_FILE, json.dumps(info, indent=1) + "\n")


def read_marker(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The marker of ``run_dir`` (None if it has none); RunError if unreadable or too new."""
    path = Path(run_dir) / MARKER_FILE
    if not os.path.lexists(path):
        return None
    try:
        check_input_file(path, "config", "run marker")
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunError(f"{path} is not a valid run-directory marker ({exc})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT_NAME:
        raise RunError(f"{path} is not a valid run-directory marker")
    version = info.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise RunError(
            f"{run_dir} was written by a newer keras-ternary (run-directory format "
            f"{quote(version)}, this one reads {FORMAT_VERSION}); upgrade keras-ternary"
        )
    return info


def is_run_dir(run_dir: str | os.PathLike) -> bool:
    """Whether ``run_dir`` is a run directory (marker, or a pre-marker run; see module doc)."""
    run_dir = Path(run_dir)
    if os.path.lexists(run_dir / MARKER_FILE):
        return True
    return (run_dir / CONFIG_FILE).is_file() and any(
        (run_dir / name).is_file() for name in (LAST_CKPT, SUMMARY_FILE, HISTORY_FILE)
    )


def own_files(run_dir: str | os.PathLike) -> list[Path]:
    """The files of :data:`OWN_FILES` present in ``run_dir``."""
    run_dir = Path(run_dir)
    found: list[Path] = []
    for pattern in OWN_FILES:
        found += sorted(p for p in run_dir.glob(pattern) if p.is_file() or p.is_symlink())
    return found


def progress_files(run_dir: str | os.PathLike) -> list[Path]:
    """Own files that hold results (everything of :data:`OWN_FILES` but config.yaml)."""
    run_dir = Path(run_dir)
    return [p for p in own_files(run_dir) if p.relative_to(run_dir).as_posix() != CONFIG_FILE]


def run_status(run_dir: str | os.PathLike) -> str:
    """ "finished" (summary.json), "partial" (a last checkpoint), "new" (nothing to resume)."""
    run_dir = Path(run_dir)
    if (run_dir / SUMMARY_FILE).is_file():
        return "finished"
    if (run_dir / LAST_CKPT).is_file():
        return "partial"
    return "new"


def move_aside(run_dir: str | os.PathLike) -> Path:
    """Move the run's own files into ``run_dir/replaced-<date>-<time>/``; return that folder.

    Only files of :data:`OWN_FILES` move (keeping their relative paths); nothing is deleted.
    """
    run_dir = Path(run_dir)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = run_dir / f"replaced-{stamp}"
    n = 1
    while os.path.lexists(target):
        n += 1
        target = run_dir / f"replaced-{stamp}-{n}"
    files = own_files(run_dir)
    target.mkdir()
    for path in files:
        dest = target / path.relative_to(run_dir)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
    _remove_empty_dirs(run_dir)
    fsync_directory(run_dir)
    return target


def remove_own_files(run_dir: str | os.PathLike) -> list[Path]:
    """Delete the run's own files (:data:`OWN_FILES`) and then-empty own folders; nothing else."""
    run_dir = Path(run_dir)
    files = own_files(run_dir)
    for path in files:
        path.unlink(missing_ok=True)
    _remove_empty_dirs(run_dir)
    return files


def _remove_empty_dirs(run_dir: Path) -> None:
    for name in _OWN_DIRS:
        folder = run_dir / name
        if folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
            folder.rmdir()


def stale_temp_files(run_dir: str | os.PathLike) -> list[Path]:
    """Temporary files of interrupted writes (call only while holding the run's lock)."""
    run_dir = Path(run_dir)
    found = []
    for folder in (run_dir, run_dir / "checkpoints", run_dir / SNAPSHOT_DIR):
        if folder.is_dir():
            found += [p for p in folder.iterdir() if TEMP_NAME.match(p.name) and p.is_file()]
    return found


# --------------------------------------------------------------------------- lock
class RunLock:
    """An advisory lock on a run directory, held until :meth:`release` or the process ends."""

    def __init__(self, run_dir: Path, fd: int) -> None:
        self.run_dir = run_dir
        self._fd: int | None = fd

    def release(self) -> None:
        """Release the lock (the lock file stays: removing it would race other processes)."""
        if self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


#: Locks this process holds, by resolved run directory (flock is per open file, so a second
#: acquire in the same process would otherwise deadlock against itself or succeed twice).
_HELD: dict[Path, RunLock] = {}


def _holder(path: Path) -> str:
    try:
        pid = path.read_text(encoding="utf-8", errors="replace").strip()[:20]
    except OSError:
        pid = ""
    return f"process {pid}" if pid.isdigit() else "another process"


def _busy_error(run_dir: Path) -> RunError:
    return RunError(
        f"{run_dir} is in use by {_holder(run_dir / LOCK_FILE)} (a training or sweep running "
        "there); wait for it to end or stop it, or choose another --out"
    )


def check_unlocked(run_dir: str | os.PathLike) -> None:
    """RunError if another process holds the lock of ``run_dir``; creates nothing."""
    import fcntl

    run_dir = Path(run_dir)
    path = run_dir / LOCK_FILE
    if run_dir.resolve() in _HELD or not path.is_file():
        return
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise _busy_error(run_dir) from None
        raise
    finally:
        os.close(fd)


def acquire_lock(run_dir: str | os.PathLike) -> RunLock:
    """Lock ``run_dir`` (which must exist) for this process; RunError naming a live holder.

    The lock file records this process's pid. The lock is held until :meth:`RunLock.release`
    or the end of the process (a crash included: the kernel drops it).
    """
    import fcntl

    run_dir = Path(run_dir)
    key = run_dir.resolve()
    if key in _HELD:
        return _HELD[key]
    path = run_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as exc:
        raise RunError(
            f"cannot write to run directory {run_dir}: {exc.strerror or exc}; "
            "check its permissions and free space"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise _busy_error(run_dir) from None
        raise
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError as exc:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        raise RunError(f"cannot write to run directory {run_dir}: {exc.strerror}") from None
    lock = _HeldLock(run_dir, fd, key)
    _HELD[key] = lock
    return lock


class _HeldLock(RunLock):
    def __init__(self, run_dir: Path, fd: int, key: Path) -> None:
        super().__init__(run_dir, fd)
        self._key = key

    def release(self) -> None:
        _HELD.pop(self._key, None)
        super().release()


# --------------------------------------------------------------------------- history CSV
def format_history(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in HISTORY_FIELDS})
    return buffer.getvalue()


def read_history(path: str | os.PathLike) -> list[dict[str, float | None]]:
    """Rows of a ``history.csv`` as dicts of floats (None for empty cells); [] if absent.

    RunError naming the file and line for anything that is not such a table (a header with
    ``epoch``, one positive integer epoch and numbers or empty cells in every row), and for a
    path that exists but is not a regular file.
    """
    path = Path(path)
    if not os.path.lexists(path):
        return []
    try:
        text = _read_text(path, "csv")
    except OSError as exc:
        raise RunError(str(exc)) from None
    rows = []
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if reader.fieldnames is not None and "epoch" not in reader.fieldnames:
            raise RunError(f"{path} line 1: the header has no 'epoch' column")
        for raw in reader:
            rows.append(_history_row(raw, path, reader.line_num))
    except csv.Error as exc:
        raise RunError(f"{path}: {exc}") from None
    return rows


def _read_text(path: Path, kind: str) -> str:
    check_input_file(path, kind, "file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RunError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise RunError(f"cannot read {path}: {exc.strerror or exc}") from None


def _history_row(raw: dict[Any, Any], path: Path, line: int) -> dict[str, float | None]:
    """One parsed ``history.csv`` row (see :func:`read_history`)."""
    if None in raw:
        raise RunError(f"{path} line {line}: more cells than columns")
    row: dict[str, Any] = {}
    for key, value in raw.items():
        if value in ("", None):
            row[key] = None
            continue
        try:
            row[key] = float(value)
        except ValueError:
            raise RunError(f"{path} line {line}: {key} is not a number: {quote(value)}") from None
    epoch = row.get("epoch")
    if epoch is None or not math.isfinite(epoch) or not epoch.is_integer() or epoch < 1:
        raise RunError(
            f"{path} line {line}: epoch must be an integer >= 1, got {quote(raw['epoch'])}"
        )
    row["epoch"] = int(epoch)
    return row


def check_history(path: str | os.PathLike, epochs_done: int) -> list[dict[str, Any]]:
    """The rows of epochs 1..``epochs_done`` of a run's history, checked for a resume.

    The header must be the project's, the epochs 1, 2, ... without gap or repeat, every row
    complete (a row cut short has empty cells where the project always writes a number), and
    there must be a row for every epoch the checkpoint has done (a row beyond it is the
    epoch that was running when the process was killed; it is dropped).
    """
    path = Path(path)
    if epochs_done == 0 and not os.path.lexists(path):
        return []
    if not os.path.lexists(path):
        raise RunError(f"{path} is missing but the checkpoint is after epoch {epochs_done}")
    rows = read_history(path)
    header = _read_text(path, "csv").splitlines()[:1]
    if header != [",".join(HISTORY_FIELDS)]:
        raise RunError(f"{path} line 1: not the header keras-ternary writes")
    for i, row in enumerate(rows, start=1):
        if row["epoch"] != i:
            raise RunError(
                f"{path}: epochs are not 1, 2, 3, ... (row {i} is epoch {row['epoch']}); "
                "rows are missing or repeated"
            )
        empty = [k for k in _REQUIRED_CELLS if row.get(k) is None]
        if empty:
            raise RunError(f"{path}: the row of epoch {i} is incomplete (no {', '.join(empty)})")
    if len(rows) < epochs_done:
        raise RunError(
            f"{path} has {len(rows)} epoch(s) but the checkpoint is after epoch {epochs_done}"
        )
    return rows[:epochs_done]


# --------------------------------------------------------------------------- integrity
def model_fingerprint(model_config: Mapping[str, Any]) -> dict[str, Any]:
    """What a saved ResNet-20* model is: quantizer, inflation, blocks_per_stage (where known).

    ``model_config`` is the ``model_config`` JSON of an ``.h5`` file, parsed. Keys that
    cannot be told (another architecture) are left out.
    """
    layers = (model_config.get("config") or {}).get("layers") or []
    by_name = {}
    for layer in layers:
        if isinstance(layer, Mapping):
            cfg = layer.get("config") or {}
            by_name[cfg.get("name")] = (layer.get("class_name"), cfg)
    out: dict[str, Any] = {}
    conv1 = by_name.get("conv1")
    filters = conv1[1].get("filters") if conv1 else None
    if isinstance(filters, int) and filters % 16 == 0:
        out["model.inflation"] = filters // 16
    blocks = sum(1 for name in by_name if re.fullmatch(r"stage1_block\d+_conv1", str(name)))
    if blocks:
        out["model.blocks_per_stage"] = blocks
    inner = by_name.get("stage1_block1_conv1")
    if inner:
        q = inner[1].get("kernel_quantizer")
        kind = q.get("class_name") if isinstance(q, Mapping) else None
        out["model.quantizer"] = (
            "float" if kind is None else "ternary" if kind == "Ternary" else "binary"
        )
    return out


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _differences(stored: Mapping[str, Any], actual: Mapping[str, Any]) -> list[str]:
    return [
        f"{key} {quote(stored[key], 40)} vs {quote(actual[key], 40)}"
        for key in sorted(set(stored) & set(actual))
        if stored[key] != actual[key]
    ]


def check_resumable(
    run_dir: str | os.PathLike,
    config: Mapping[str, Any],
    state: Mapping[str, Any],
    fingerprint: Mapping[str, Any],
    rows: Iterable[Mapping[str, Any]],
    expected_rows: Iterable[Mapping[str, Any]],
) -> None:
    """RunError unless config, checkpoint and history of a partial run agree.

    ``config`` is the run's configuration (``TrainConfig.to_dict()`` without ``out_dir``);
    ``state`` the checkpoint's run state (with the configuration it was trained with, for
    runs written by this version); ``fingerprint`` :func:`model_fingerprint` of the
    checkpoint; ``rows`` the checked history; ``expected_rows`` what the configuration says
    the schedule columns of those rows must be (``paper_epoch``, ``lr``, ``delta``).
    """
    how = (
        f"restore the original config.yaml, or start over with train --force-new --resume "
        f"{run_dir} (the old files are moved into a dated subfolder)"
    )
    flat = _flatten(config)
    trained = state.get("config")
    if isinstance(trained, Mapping):
        diff = _differences(_flatten(trained), flat)
        if diff:
            raise RunError(
                f"{run_dir}: config.yaml differs from the configuration the checkpoint was "
                f"trained with ({'; '.join(diff[:3])}); {how}"
            )
    diff = _differences(fingerprint, flat)
    if diff:
        raise RunError(
            f"{run_dir}: the checkpoint's model does not match config.yaml "
            f"({'; '.join(diff[:3])}); {how}"
        )
    done = state.get("epochs_done")
    if isinstance(done, int) and done > int(flat.get("epochs", done)):
        raise RunError(
            f"{run_dir}: the checkpoint is after epoch {done} but config.yaml has epochs: "
            f"{flat.get('epochs')}; {how}"
        )
    for row, expected in zip(rows, expected_rows, strict=False):
        for key, value in expected.items():
            got = row.get(key)
            if value is None or got is None:
                continue
            if not math.isclose(float(got), float(value), rel_tol=1e-4, abs_tol=1e-7):
                raise RunError(
                    f"{run_dir}: history.csv epoch {row['epoch']} has {key} {got:g} but "
                    f"config.yaml gives {value:g} (config edited?); {how}"
                )


# --------------------------------------------------------------------------- JSON files
def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON via a temporary file (summary, statistics, snapshots)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


# --------------------------------------------------------------------------- configuration
def load_run_config(run_dir: str | os.PathLike, required: Iterable[str] = ()) -> TrainConfig:
    """The configuration stored in a run directory (RunError if absent or invalid).

    Keys absent from the file take their defaults, except the dotted keys of ``required``:
    a file without one of them is refused (RunError naming them).
    """
    path = Path(run_dir) / CONFIG_FILE
    if not os.path.lexists(path) and not os.path.lexists(Path(run_dir) / MARKER_FILE):
        raise RunError(f"{run_dir} is not a run directory (no {CONFIG_FILE})")
    try:
        values = read_config_file(path)
        missing = [key for key in required if not _has_key(values, key)]
        if missing:
            raise RunError(
                f"{path} is not a complete run configuration: no {', '.join(missing)} (a "
                "run's config.yaml holds every key); restore it, or move the run away"
            )
        return config_from_dict(values)
    except ConfigError as exc:
        raise RunError(f"{path} is not a valid run configuration: {exc}") from None


def _has_key(values: Mapping[str, Any], dotted: str) -> bool:
    node: Any = values
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def run_identity(config: TrainConfig) -> dict[str, Any]:
    """What makes two configurations the same run: all but where it is written and on
    which devices it runs (a run may be resumed on others, with the same global batch)."""
    values = config.to_dict()
    values.pop("out_dir")
    values.pop("strategy")
    return values


# --------------------------------------------------------------------------- checkpoint state
def read_checkpoint_state(path: str | os.PathLike) -> dict[str, Any]:
    """The run state stored in a checkpoint (the :data:`STATE_ATTR` attribute).

    The whole file is first read in a child process (:func:`~keras_ternary.fileio.probe_hdf5`):
    a corrupt checkpoint can crash the HDF5 library, which must not take this process along.
    """
    import h5py  # not at module level: reading histories and configs needs no HDF5

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


# --------------------------------------------------------------------------- opening
def check_run_dir(config: TrainConfig, resume: bool, force_new: bool = False) -> str:
    """Check the directory against the request (writing nothing); return its status.

    "new" also for a run directory whose files ``force_new`` will move aside.
    """
    run_dir = config.run_dir
    _check_directory_path(run_dir)
    if not run_dir.is_dir():
        return "new"
    entries = [e for e in run_dir.iterdir() if e.name != LOCK_FILE]
    if entries and not is_run_dir(run_dir):
        raise RunError(
            f"{run_dir} exists, is not empty and is not a run directory (no "
            f"{MARKER_FILE}); nothing in it is touched: choose --out"
        )
    if not entries:
        return "new"
    read_marker(run_dir)  # a newer format is refused
    check_unlocked(run_dir)
    _check_writable(run_dir)
    status = run_status(run_dir)
    if force_new:
        return "new"
    if status == "new":
        kept = [
            p.relative_to(run_dir).as_posix()
            for p in progress_files(run_dir)
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
    if run_identity(stored) != run_identity(config):
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


def open_run_dir(
    config: TrainConfig,
    status: str,
    resume: bool,
    force_new: bool,
    created_by: str,
    log: Callable[[str], None],
    replace: bool = False,
) -> RunLock:
    """Create and lock the run directory, check nothing changed since :func:`check_run_dir`
    returned ``status``, then prepare it: move aside (or, with ``replace``, delete) the old
    run's files for ``force_new``; write marker and config.yaml of a new run; delete the
    temporary files a killed process left in a partial one."""
    run_dir = config.run_dir
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"cannot create run directory {run_dir}: {exc.strerror or exc}") from None
    lock = acquire_lock(run_dir)
    try:
        if check_run_dir(config, resume, force_new) != status:
            raise RunError(f"{run_dir} changed while the data was loading (another process?)")
        if force_new and replace:
            remove_own_files(run_dir)
        elif force_new and own_files(run_dir):
            aside = move_aside(run_dir)
            log(f"moved the previous files of {run_dir} to {aside}")
        if not os.path.lexists(run_dir / MARKER_FILE):  # new, or a run of an older version
            write_marker(run_dir, created_by)
        if status == "new":
            atomic_write_text(run_dir / CONFIG_FILE, dump_yaml(config))
        else:
            for path in stale_temp_files(run_dir):
                path.unlink(missing_ok=True)
                log(f"removed {path} (temporary file of an interrupted write)")
    except OSError as exc:
        lock.release()
        raise RunError(f"cannot prepare run directory {run_dir}: {exc}") from None
    except BaseException:
        lock.release()
        raise
    return lock
