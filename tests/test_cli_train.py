"""``python -m keras_ternary train``: a stopped and resumed run on a tiny CIFAR-format directory."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf
import yaml

from keras_ternary import Ternary, cli
from keras_ternary.callbacks import find_ternary_quantizers
from keras_ternary.regimes import delta_at
from keras_ternary.rundir import read_checkpoint_state, read_history
from keras_ternary.schedules import paper_learning_rate
from tests.test_data import cifar_dir

# 2 epochs replaying 20 paper epochs (time_scale 10) with a schedule that changes inside the run,
# so that a resumed run that lost the optimizer's step counter would log the wrong rate.
TINY = [
    "--quantizer",
    "ternary",
    "--regime",
    "log",
    "--delta0",
    "0.05",
    "--multiplier",
    "0.5",
    "--delta-max",
    "0.5",
    "--inflation",
    "1",
    "--epochs",
    "2",
    "--paper-epochs",
    "20",
    "--batch-size",
    "8",
    "--seed",
    "1",
    "--train-size",
    "20",
    "--test-size",
    "12",
    "--set",
    "model.blocks_per_stage=1",
    "--set",
    "optimizer.lr_values=[0.01,0.002,0.0005]",
    "--set",
    "optimizer.lr_boundaries=[5,15]",
    "--set",
    "snapshot_epochs=[10,20]",
    "--verbose",
    "0",
]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_train_stop_resume_and_artefacts(tmp_path, capsys):
    root, _, _ = cifar_dir(tmp_path / "data")
    run = tmp_path / "run"
    argv = ["train", *TINY, "--data", "cifar10_dir", "--data-dir", str(root), "--out", str(run)]
    assert cli.main([*argv, "--stop-after", "1"]) == 0
    out = capsys.readouterr().out
    assert "epoch 1/2" in out and "delta=0.0500" in out and "stopped after epoch 1/2" in out
    assert read_checkpoint_state(run / "checkpoints" / "last.h5")["epochs_done"] == 1
    assert not (run / "summary.json").exists()
    assert len(read_history(run / "history.csv")) == 1

    # the same command without --resume refuses to touch the run; changed options too
    assert cli.main(argv) == 2
    assert "--resume" in one_line_error(capsys)
    assert cli.main([*argv, "--resume", "--seed", "2"]) == 2
    assert "different configuration" in one_line_error(capsys)

    assert cli.main(["train", "--resume", str(run), "--verbose", "0"]) == 0
    out = capsys.readouterr().out
    assert "resuming" in out and "after epoch 1" in out and "epoch 2/2" in out
    assert "epoch 1/2" not in out and "finished" in out

    rows = read_history(run / "history.csv")
    assert [r["epoch"] for r in rows] == [1, 2]
    assert [r["paper_epoch"] for r in rows] == [10, 20]
    for i, row in enumerate(rows):  # Δ and lr of epoch index i follow the compressed schedule
        assert row["delta"] == pytest.approx(delta_at(1 + 10 * i, "log", 0.05, 0.5, 0.5))
        assert row["lr"] == pytest.approx(
            paper_learning_rate(10 * i, [0.01, 0.002, 0.0005], [5, 15])
        )
        for key in ("loss", "accuracy", "val_loss", "val_accuracy", "sparsity", "entropy"):
            assert row[key] is not None and np.isfinite(row[key])
    assert [r["lr"] for r in rows] == pytest.approx([0.01, 0.002])

    summary = json.loads((run / "summary.json").read_text())
    best = max(range(2), key=lambda i: (rows[i]["val_accuracy"], -i))
    assert summary["best_val_accuracy"] == pytest.approx(rows[best]["val_accuracy"])
    assert summary["best_epoch"] == best + 1
    assert summary["final_sparsity"] == pytest.approx(rows[-1]["sparsity"])
    assert summary["final_entropy"] == pytest.approx(rows[-1]["entropy"])
    assert summary["wall_time_s"] > 0 and summary["time_scale"] == 10

    stats = json.loads((run / "ternary_stats.json").read_text())
    assert stats["total"]["sparsity"] == pytest.approx(summary["final_sparsity"])
    assert len(stats["total"]["histogram"][0]) == 101
    assert sorted(p.name for p in (run / "snapshots").iterdir()) == [
        "epoch_0001.json",
        "epoch_0002.json",
    ]
    assert any((run / "tensorboard" / "train").iterdir())
    assert (run / "checkpoints" / "best.h5").is_file()
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"]["inflation"] == 1 and config["ternary"]["regime"] == "log"

    model = tf.keras.models.load_model(run / "model.h5")  # loads without custom_objects
    quantizers = find_ternary_quantizers(model)
    assert quantizers and all(isinstance(q, Ternary) for q in quantizers)
    assert quantizers[0].delta == pytest.approx(rows[-1]["delta"])
    assert read_checkpoint_state(run / "checkpoints" / "last.h5")["epochs_done"] == 2
    assert not list(run.rglob("*.tmp")) and not list(run.rglob(".*.h5"))

    # resuming a finished run is a no-op
    assert cli.main(["train", "--resume", str(run), "--verbose", "0"]) == 0
    assert "already finished" in capsys.readouterr().out


def test_quickstart_writes_a_run(tmp_path, capsys):
    out = tmp_path / "qs"
    argv = [
        "quickstart",
        "--out",
        str(out),
        "--epochs",
        "1",
        "--verbose",
        "0",
        "--set",
        "data.train_size=20",
        "--set",
        "data.test_size=10",
        "--set",
        "model.blocks_per_stage=1",
        "--set",
        "batch_size=10",
    ]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "SHAPES-10" in text and "not CIFAR-10" in text and "sparsity=" in text
    assert "entropy=" in text and "delta=" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["regime"] == "log" and summary["inflation"] == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--epochs", "0", "--print-config"], "epochs"),
        (["train", "--epochs", "x"], "invalid int value"),
        (["train", "--quantizer", "quaternary", "--print-config"], "model.quantizer"),
        (["train", "--config", "no/such/file.yaml"], "not found"),
        (["train", "--set", "colour=red", "--print-config"], "unknown key colour"),
        (["train", "--data", "cifar10_dir", "--epochs", "1"], "two ways"),
        (["train", "--stop-after", "0"], "positive integer"),
        (["nonsense"], "invalid choice"),
        (["report", "/no/such/dir"], "not a directory"),
        (["sweep", "paper/table1", "--only", "zzz"], "no run of sweep"),
    ],
)
def test_bad_input_is_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written, and no default data found
    assert cli.main(argv) == 2
    assert message in one_line_error(capsys)
    assert not list(tmp_path.iterdir())


def test_print_config_and_help(capsys):
    assert (
        cli.main(["train", "--config", "reduced/base", "--regime", "linear", "--print-config"]) == 0
    )
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["ternary"]["regime"] == "linear" and config["paper_epochs"] == 250
    for command in ("train", "sweep", "report", "quickstart", "configs"):
        with pytest.raises(SystemExit) as info:
            cli.main([command, "--help"])
        assert info.value.code == 0
        text = capsys.readouterr().out
        assert "--help" in text
    train_help = cli.build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    for option in (
        "--quantizer",
        "--regime",
        "--delta0",
        "--multiplier",
        "--delta-max",
        "--inflation",
        "--epochs",
        "--batch-size",
        "--seed",
        "--data",
        "--data-dir",
        "--out",
        "--resume",
    ):
        assert option in train_help
