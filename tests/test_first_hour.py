"""The first hour on a new machine: quiet commands, clean logs, the quick start's model exports.

One tiny quick start runs once as a subprocess with stdout and stderr going to pipes (not a
terminal); the tests then read its log, its model file and export it.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_ternary import tflog
from keras_ternary.progress import TerminalProgress, wants_progress_bar

ROOT = Path(__file__).resolve().parents[1]
CHATTER_WORDS = ("cuInit", "oneDNN custom operations", "cudart_stub", "absl::InitializeLog")


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(ROOT)}
    environ.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a user's shell: our defaults apply
    environ.pop(tflog.VERBOSE_ENV, None)
    environ.update(env)
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=environ, capture_output=True, text=True, check=False
    )


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    """(completed process, run directory) of a 2-epoch quick start on 64 images."""
    work = tmp_path_factory.mktemp("qs")
    proc = _run(
        [
            "-m",
            "keras_ternary",
            "quickstart",
            "--epochs",
            "2",
            "--set",
            "data.train_size=64",
            "--set",
            "data.test_size=32",
            "--out",
            str(work / "run"),
        ],
        work,
    )
    assert proc.returncode == 0, proc.stderr
    return proc, work / "run"


# --------------------------------------------------------------------------- logs
def test_log_to_a_pipe_is_one_clean_line_per_epoch(quickstart):
    proc, _ = quickstart
    out = proc.stdout
    assert "\r" not in out and "\b" not in out
    lines = out.splitlines()
    for epoch in (1, 2):
        mine = [ln for ln in lines if ln.startswith(f"epoch {epoch}/2 ")]
        assert len(mine) == 1, out
        assert "delta=" in mine[0] and "sparsity=" in mine[0] and "val_acc=" in mine[0]
    assert not any(ln.startswith("Epoch ") for ln in lines)  # no Keras lines: metrics once
    assert " - loss: " not in out and " - val_accuracy: " not in out  # Keras progress text


def test_terminal_progress_erases_its_bar():
    assert not wants_progress_bar(1, io.StringIO())
    assert not wants_progress_bar(2, _Tty())
    assert wants_progress_bar(1, _Tty())
    stream = _Tty()
    progress = TerminalProgress(stream)
    progress.on_epoch_end(0)
    assert stream.getvalue() == "\r\x1b[K"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


# --------------------------------------------------------------------------- TF noise
def test_commands_hide_tensorflow_start_up_chatter(quickstart):
    proc, _ = quickstart
    assert not any(word in proc.stderr for word in CHATTER_WORDS), proc.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["-m", "keras_ternary", "--help"],
        ["-m", "keras_ternary", "train", "--help"],
        ["-m", "keras_ternary", "export", "--help"],
        ["-m", "keras_ternary", "configs"],
        ["-m", "keras_ternary", "report", "--help"],
        ["-m", "keras_ternary", "sweep", "--help"],
        ["-m", "hw_sim.profile", "--help"],
    ],
)
def test_help_does_not_import_tensorflow(tmp_path, args):
    proc = _run(["-X", "importtime", *args], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()
    imported = {ln.rsplit("|", 1)[-1].strip() for ln in proc.stderr.splitlines() if "|" in ln}
    assert "keras_ternary" in imported or "hw_sim" in imported
    assert "tensorflow" not in imported


def test_chatter_filter_keeps_everything_else(capfd):
    lines = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1796298503.689825    5451 port.cc:153] oneDNN custom operations are on.",
        "E0000 00:00:1796298524.081776    5730 cuda_platform.cc:52] failed call to cuInit: "
        "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
        "E0000 00:00:1796298524.081776    5730 some_kernel.cc:7] a real error",
        "Traceback (most recent call last):",
    ]
    with tflog.filtered_stderr():
        os.write(2, ("\n".join(lines) + "\n").encode())
        print("python-level warning", file=sys.stderr)
    err = capfd.readouterr().err
    assert sorted(err.splitlines()) == sorted([lines[3], lines[4], "python-level warning"])


def test_tf_log_env_shows_the_chatter(tmp_path):
    proc = _run(
        ["-c", "import keras_ternary; keras_ternary.Ternary"],  # the first use imports TF
        tmp_path,
        **{tflog.VERBOSE_ENV: "1"},
    )
    assert proc.returncode == 0
    assert "absl::InitializeLog" in proc.stderr or "I0000" in proc.stderr


# --------------------------------------------------------------------------- export
def test_quickstart_model_records_its_training_data(quickstart):
    from keras_ternary.saving import read_training_data

    _, run = quickstart
    record = read_training_data(run / "model.h5")
    assert record["source"] == "shapes10" and record["train_size"] == 64
    assert len(record["mean"]) == 3 and len(record["std"]) == 3
    for ckpt in ("checkpoints/last.h5", "checkpoints/best.h5"):
        assert read_training_data(run / ckpt) == record
    copy = run.parent / "elsewhere.h5"
    copy.write_bytes((run / "model.h5").read_bytes())
    assert read_training_data(copy) == record


def test_config_yaml_is_the_fallback_record(tmp_path):
    from keras_ternary.saving import read_training_data

    (tmp_path / "config.yaml").write_text("data:\n  source: shapes10\n  train_size: 300\n")
    (tmp_path / "checkpoints").mkdir()
    for path in (tmp_path / "model.h5", tmp_path / "checkpoints" / "last.h5"):
        assert read_training_data(path) == {"source": "shapes10", "seed": 0, "train_size": 300}
    assert read_training_data(tmp_path.parent / "nothing.h5") is None


def test_quickstart_model_exports_to_int8_by_default(quickstart, tmp_path):
    _, run = quickstart
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = _run(
        [
            "-m",
            "keras_ternary",
            "export",
            str(run / "model.h5"),
            "--to",
            "tflite",
            "--representative-count",
            "32",
            "--out",
            str(tmp_path / "m.tflite"),
        ],
        tmp_path,
        KERAS_TERNARY_CIFAR10_DIR=str(empty),
        TFDS_DATA_DIR=str(empty),
    )
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout and "(int8)" in proc.stdout
    assert "tensorflow_datasets" not in proc.stderr and "dataset_info" not in proc.stderr
    assert (tmp_path / "m.tflite").stat().st_size > 0


def test_representative_choices(quickstart, tmp_path):
    from keras_ternary import data as kd
    from keras_ternary.export.cli import load_representative
    from keras_ternary.export.fold import ExportError
    from keras_ternary.saving import read_training_data

    _, run = quickstart
    model = str(run / "model.h5")
    shape = (32, 32, 3)
    default = load_representative(None, shape, model, count=16)
    named = load_representative("shapes10", shape, model, count=16)
    np.testing.assert_array_equal(default, named)
    record = read_training_data(model)
    images = kd.generate_shapes10(64, 1, seed=0).x_train[:16]
    expected = kd.normalize(images, record["mean"], record["std"]).numpy()
    np.testing.assert_allclose(default, expected, rtol=1e-6)  # the training images, as trained
    assert load_representative("8", shape, model).shape == (8, *shape)  # older spelling
    npy = tmp_path / "calib.npy"
    np.save(npy, expected.astype(np.float32))
    assert load_representative(str(npy), shape, model, count=4).shape == (4, *shape)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ExportError, match="neither a number, a directory, a data set"):
        load_representative("imagenet", shape, model)
    os.environ[kd.DATA_DIR_ENV], before = str(empty), os.environ.get(kd.DATA_DIR_ENV)
    try:
        if not kd.tfds_cifar10_prepared() and not Path("data").exists():
            with pytest.raises(ExportError, match="CIFAR-10 was not found"):
                load_representative("cifar10", shape, model)
    finally:
        if before is None:
            del os.environ[kd.DATA_DIR_ENV]
        else:
            os.environ[kd.DATA_DIR_ENV] = before


def test_tfds_is_not_asked_about_a_missing_folder(tmp_path, monkeypatch):
    from keras_ternary import data as kd

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # importing it would fail
    assert kd.tfds_cifar10_prepared(str(tmp_path / "nothere")) is False
    (tmp_path / "cifar10" / "3.0.2").mkdir(parents=True)  # an empty version folder
    assert kd.tfds_cifar10_prepared(str(tmp_path)) is False


# --------------------------------------------------------------------------- hw_sim
def test_hw_sim_all_explains_fallback_compares_and_says_what_it_wrote(quickstart, tmp_path):
    _, run = quickstart
    proc = _run(["-m", "hw_sim.profile", str(run / "model.h5"), "--accelerator", "all"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "use a fallback rule: add/sub per nonzero weight (float32 activations)" in proc.stdout
    assert "what zeroskip's add/subtract rule costs" in proc.stdout
    compared = [ln for ln in proc.stdout.splitlines() if ln.startswith("accelerators compared")]
    assert len(compared) == 1 and "(best, " in compared[0] and "less than INT8" in compared[0]
    assert not any(word in proc.stderr for word in CHATTER_WORDS), proc.stderr
    out = tmp_path / "r.json"
    proc = _run(
        ["-m", "hw_sim.profile", str(run / "model.h5"), "--format", "json", "--out", str(out)],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"wrote {out}: json report of {run / 'model.h5'} on bitwise"
    assert out.stat().st_size > 0


def test_report_runs_without_tensorflow(tmp_path):
    """``report`` reads run directories and draws figures: no TensorFlow import for that."""
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    from keras_ternary.config import dump_yaml, load_config

    config = load_config(None, ["name=r", "epochs=2", "paper_epochs=2", "model.inflation=1"])
    (run / "config.yaml").write_text(dump_yaml(config))
    (run / "history.csv").write_text(
        "epoch,paper_epoch,loss,accuracy,val_loss,val_accuracy,lr,delta,sparsity,entropy\n"
        "1,1.0,2.0,0.3,1.9,0.35,0.005,0.1,0.8,0.9\n"
    )
    out = tmp_path / "rep"
    proc = _run(
        [
            "-X",
            "importtime",
            "-m",
            "keras_ternary",
            "report",
            str(tmp_path / "runs"),
            "--out",
            str(out),
            "--include-partial",
        ],
        tmp_path,
    )
    imported = {ln.rsplit("|", 1)[-1].strip() for ln in proc.stderr.splitlines() if "|" in ln}
    assert "keras_ternary.report" in imported
    assert "tensorflow" not in imported
    assert proc.returncode == 0 and (out / "epochs.md").is_file(), proc.stderr[-2000:]
