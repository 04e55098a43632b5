"""A loss that becomes NaN: training stops with one clear message, last good state kept.

The tiny configuration trains epoch 1 at a sane learning rate and then switches to 1e30,
which drives the batch-norm parameters to infinity and the loss to NaN in epoch 2. The run
must stop (non-zero exit, one ``error:`` line naming NaN), keep the epoch-1 checkpoint and
history intact and finite, and must not write the final model or the summary that marks a
finished run. ``docs/errors.md`` lists this case from :data:`NAN_CASE`.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from keras_ternary import cli as kcli
from keras_ternary import rundir
from tests.test_reliability_cli import TINY_CONFIG, run_main, write_cifar_dir

#: (command, bad input, message fragments, pending fix) for docs/errors.md
NAN_CASE = {
    "id": "train-nan-loss",
    "cli": "train",
    "what": "the loss becomes NaN during training (learning rate 1e30 from epoch 2)",
    "fragments": ("NaN", "epoch 2"),
    "xfail": None,
}


def _weights_finite(path: Path) -> bool:
    with h5py.File(path, "r") as handle:
        group = handle.get("model_weights", handle)
        arrays: list[np.ndarray] = []
        group.visititems(
            lambda _, obj: arrays.append(obj[()]) if isinstance(obj, h5py.Dataset) else None
        )
    return bool(arrays) and all(np.all(np.isfinite(a)) for a in arrays)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_cifar_dir(tmp_path / "data")
    config = tmp_path / "nan.yaml"
    config.write_text(
        TINY_CONFIG.format(data=tmp_path / "data").replace(
            "lr_values: [0.005, 0.001]", "lr_values: [0.001, 1.0e+30]"
        )
    )
    run_dir = tmp_path / "run"
    argv = [
        "train",
        "--config",
        str(config),
        "--out",
        str(run_dir),
        "--epochs",
        "3",
        "--paper-epochs",
        "3",
        "--verbose",
        "0",
    ]
    status = run_main(kcli.main, argv)
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert status != 0, out
    assert len(lines) == 1 and "error:" in lines[0], err
    for fragment in NAN_CASE["fragments"]:
        assert fragment in lines[0]
    state = rundir.read_checkpoint_state(run_dir / rundir.LAST_CKPT)
    assert state["epochs_done"] == 1
    assert _weights_finite(run_dir / rundir.LAST_CKPT)
    rows = rundir.read_history(run_dir / rundir.HISTORY_FILE)
    assert [r["epoch"] for r in rows] == [1] and rows[0]["loss"] is not None
    assert not (run_dir / rundir.SUMMARY_FILE).exists()
    assert not (run_dir / rundir.FINAL_MODEL).exists()
    assert json.loads(json.dumps(state))  # the state stays plain JSON
