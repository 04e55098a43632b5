"""Run directories (issue #19): never destroy what we did not create, one writer, safe loading.

Tiny SHAPES-10 runs (20 images, one block per stage) through ``keras_ternary.cli.main``:
quickstart replaces only its own files, ``--force-new`` moves the old files aside, a run of
an older version (no marker) still resumes, a second writer is refused while the first
holds the lock and admitted once the first was killed, and a disk that fills up or a
directory that cannot be written give one error line with the previous files intact.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keras_ternary import cli, fileio, modelfile, rundir
from keras_ternary.config import ConfigError, check_name
from tests.test_reliability_cli import ROOT, lambda_model, snapshot

_TINY_KEYS = ("data.train_size=20", "data.test_size=10", "model.blocks_per_stage=1",
              "batch_size=10", "tensorboard=false")  # fmt: skip
TINY = [arg for key in _TINY_KEYS for arg in ("--set", key)] + ["--verbose", "0"]


def _train(out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--data",
        "shapes10",
        "--inflation",
        "1",
        "--epochs",
        "2",
        "--paper-epochs",
        "2",
        "--out",
        str(out),
        *TINY,
        *extra,
    ]


def _quickstart(out: Path) -> list[str]:
    return ["quickstart", "--out", str(out), "--epochs", "1", *TINY]


def _one_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _state(run: Path) -> dict:
    import h5py

    with h5py.File(run / rundir.LAST_CKPT, "r") as handle:
        return json.loads(handle.attrs[rundir.STATE_ATTR])


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory) -> Path:
    """A run stopped after epoch 1 of 2 (copied by the tests that change it)."""
    run = tmp_path_factory.mktemp("stopped") / "run"
    assert cli.main(_train(run, "--stop-after", "1")) == 0
    return run


def _copy(run: Path, tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / "run"
    shutil.copytree(run, target)
    text = (target / rundir.CONFIG_FILE).read_text().replace(str(run), str(target))
    (target / rundir.CONFIG_FILE).write_text(text)
    return target


def test_new_run_has_marker_and_lock(stopped_run: Path):
    marker = json.loads((stopped_run / rundir.MARKER_FILE).read_text())
    assert marker["format"] == rundir.FORMAT_NAME
    assert marker["version"] == rundir.FORMAT_VERSION and marker["created_by"] == "train"
    assert (stopped_run / rundir.LOCK_FILE).is_file()
    assert _state(stopped_run)["config"]["seed"] == 0  # what a resume compares config.yaml with


def test_quickstart_replaces_only_its_own_files(tmp_path, capsys):
    out = tmp_path / "qs"
    assert cli.main(_quickstart(out)) == 0
    (out / "notes.txt").write_text("mine\n")
    (out / "snapshots" / "mine.txt").write_text("mine too\n")
    first = (out / rundir.SUMMARY_FILE).stat().st_mtime_ns
    assert cli.main(_quickstart(out)) == 0
    assert (out / "notes.txt").read_text() == "mine\n"
    assert (out / "snapshots" / "mine.txt").read_text() == "mine too\n"
    assert (out / rundir.SUMMARY_FILE).stat().st_mtime_ns != first
    assert not list(out.glob("replaced-*"))
    capsys.readouterr()


def test_force_new_moves_the_old_files_aside(stopped_run: Path, tmp_path, capsys):
    run = _copy(stopped_run, tmp_path)
    (run / rundir.LAST_CKPT).unlink()
    (run / "notes.txt").write_text("mine\n")
    before = snapshot(run)
    assert cli.main(["train", "--resume", str(run)]) == 2
    assert "--force-new" in _one_error(capsys)
    assert snapshot(run) == before  # refused before touching anything
    history = (run / rundir.HISTORY_FILE).read_text()
    assert cli.main(["train", "--resume", str(run), "--force-new", "--verbose", "0"]) == 0
    assert (run / "notes.txt").read_text() == "mine\n"
    (aside,) = run.glob("replaced-*")
    assert (aside / rundir.HISTORY_FILE).read_text() == history
    assert (aside / rundir.CONFIG_FILE).is_file()
    assert (run / rundir.SUMMARY_FILE).is_file()


def test_run_of_an_older_version_resumes_and_gets_a_marker(stopped_run: Path, tmp_path, capsys):
    run = _copy(stopped_run, tmp_path)
    (run / rundir.MARKER_FILE).unlink()
    (run / rundir.LOCK_FILE).unlink()
    assert rundir.is_run_dir(run)
    assert cli.main(["train", "--resume", str(run), "--verbose", "0"]) == 0
    assert (run / rundir.MARKER_FILE).is_file()
    assert f"resuming {run} after epoch 1" in capsys.readouterr().out


# --------------------------------------------------------------------------- lock
_HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.ftruncate(fd, 0)
os.write(fd, str(os.getpid()).encode())
print("locked", flush=True)
time.sleep(600)
"""


def test_second_writer_is_refused_until_the_first_dies(stopped_run: Path, tmp_path, capsys):
    run = _copy(stopped_run, tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(run / rundir.LOCK_FILE)], stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout.readline().strip() == b"locked"
        before = snapshot(run)
        for argv in (["train", "--resume", str(run)], _train(run, "--force-new")):
            assert cli.main(argv) == 2
            message = _one_error(capsys)
            assert f"in use by process {holder.pid}" in message, message
        assert snapshot(run) == before
        with pytest.raises(rundir.RunError, match=f"process {holder.pid}"):
            rundir.acquire_lock(run)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    lock = rundir.acquire_lock(run)  # the kernel released the dead holder's lock
    lock.release()
    assert cli.main(["train", "--resume", str(run), "--verbose", "0"]) == 0


def test_lock_is_released_when_the_process_is_killed(tmp_path):
    code = (
        "import sys, time\n"
        "from keras_ternary import rundir\n"
        "rundir.acquire_lock(sys.argv[1])\n"
        "print('locked', flush=True)\n"
        "time.sleep(600)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, env=env
    )
    try:
        assert proc.stdout.readline().strip() == b"locked"
        with pytest.raises(rundir.RunError, match=f"in use by process {proc.pid}"):
            rundir.check_unlocked(tmp_path)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    rundir.check_unlocked(tmp_path)
    rundir.acquire_lock(tmp_path).release()


# --------------------------------------------------------------------------- full disk, permissions
def _fail_fsync(monkeypatch, code: int = errno.ENOSPC) -> None:
    def fsync(fd: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(fileio.os, "fsync", fsync)


def test_disk_full_during_training_is_one_line(stopped_run: Path, tmp_path, capsys, monkeypatch):
    run = _copy(stopped_run, tmp_path)
    before = snapshot(run)
    _fail_fsync(monkeypatch)  # every atomic write now fails as on a full disk
    assert cli.main(["train", "--resume", str(run), "--verbose", "0"]) == 2
    message = _one_error(capsys)
    assert "No space left on device" in message and f"train --resume {run}" in message, message
    assert "keeps its last completed epoch (1)" in message
    monkeypatch.undo()
    after = snapshot(run)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert changed == [rundir.LOCK_FILE], changed  # the epoch-1 files, no temporary file
    assert cli.main(["train", "--resume", str(run), "--verbose", "0"]) == 0


def test_disk_full_during_report_is_one_line(stopped_run: Path, tmp_path, capsys, monkeypatch):
    run = _copy(stopped_run, tmp_path)
    assert cli.main(["train", "--resume", str(run), "--verbose", "0"]) == 0
    report = tmp_path / "report"
    assert cli.main(["report", str(run), "--out", str(report)]) == 0
    capsys.readouterr()
    before = snapshot(report)
    _fail_fsync(monkeypatch)
    assert cli.main(["report", str(run), "--out", str(report)]) == 2
    message = _one_error(capsys)
    assert "cannot write" in message and "No space left on device" in message, message
    monkeypatch.undo()
    assert snapshot(report) == before


def test_unwritable_run_directory_fails_before_an_epoch(
    stopped_run: Path, tmp_path, capsys, monkeypatch
):
    run = _copy(stopped_run, tmp_path)
    before = snapshot(run)
    real_access = os.access
    monkeypatch.setattr(
        rundir.os, "access", lambda p, mode: False if Path(p) == run else real_access(p, mode)
    )
    start = time.monotonic()
    assert cli.main(["train", "--resume", str(run), "--verbose", "0"]) == 2
    assert "permission denied" in _one_error(capsys)
    assert snapshot(run) == before
    assert time.monotonic() - start < 600  # sanity only: no epoch was trained (history kept)


def test_atomic_write_flushes_file_and_directory(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(fileio.os, "fsync", fsync)
    fileio.atomic_write(tmp_path / "a.txt", "x")
    assert len(synced) == 2
    assert Path(synced[0]).name.startswith(".a.txt.")  # the temporary file, before the rename
    assert synced[1] == str(tmp_path)  # then the directory holding the new entry
    assert (tmp_path / "a.txt").read_text() == "x"


def test_write_error_names_the_target_not_the_temporary(tmp_path, monkeypatch):
    _fail_fsync(monkeypatch)
    with pytest.raises(fileio.WriteError) as info:
        fileio.atomic_write(tmp_path / "a.txt", "x")
    assert str(info.value) == f"cannot write {tmp_path / 'a.txt'}: No space left on device"
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- safe loading
def test_safe_mode_api(tmp_path):
    path = tmp_path / "lambda.h5"
    lambda_model(path)
    with pytest.raises(modelfile.UnsafeModelError, match="Lambda layer 'evil'"):
        modelfile.load_model(path)
    model = modelfile.load_model(path, safe_mode=False)
    assert model.get_layer("evil") is not None


def test_unsafe_load_opt_in_on_the_command_line(tmp_path, capsys):
    path = tmp_path / "lambda.h5"
    lambda_model(path)
    capsys.readouterr()  # the test's own model.save warns about HDF5; not the CLI's output
    out = tmp_path / "x.tkp"
    argv = ["export", str(path), "--to", "packed", "--out", str(out)]
    assert cli.main(argv) == 2
    assert "--unsafe-load" in _one_error(capsys)
    cli.main([*argv, "--unsafe-load"])  # now loaded; packing a float model may still fail
    assert "--unsafe-load" not in capsys.readouterr().err


def test_check_name_rejects_escapes():
    for bad in ("", ".", "..", "../x", "/abs", "a/b", "a\\b", "a\0b", "x" * 300):
        with pytest.raises(ConfigError):
            check_name(bad, "run name")
    assert check_name("log_seed=1", "run name") == "log_seed=1"
