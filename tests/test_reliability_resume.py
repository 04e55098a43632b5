"""Crash and resume: SIGKILL ``python -m keras_ternary train`` mid-epoch, then ``--resume``.

The same tiny configuration (ResNet-20 k = 1 with one block per stage, 100 generated
CIFAR-format images, 4 epochs, log Δ regime, a stepped learning rate) is trained twice with
``python -m keras_ternary train``: an uninterrupted reference, and a run that is killed with
SIGKILL in the middle of epoch 2 and then resumed with ``train --resume``. While they run,
every file in both run directories is parsed again and again: none may ever be half-written,
and no stray file may appear under an output's name. Afterwards the resumed run's
``history.csv`` must continue the epoch count and match the reference's Δ and learning rate
per epoch exactly (and its losses closely: same data order, same weights and Adam state),
with at most the interrupted epoch lost.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest
import yaml

from keras_ternary import rundir
from tests.test_reliability_cli import write_cifar_dir

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """\
name: crash
epochs: 4
paper_epochs: 4
batch_size: 10
seed: 0
snapshot_epochs: [2]
tensorboard: false
data: {{source: cifar10_dir, dir: {data}, augment: true}}
model: {{quantizer: ternary, inflation: 1, blocks_per_stage: 1}}
ternary: {{regime: log, delta0: 0.1, multiplier: 1.9, delta_max: 0.9}}
optimizer: {{lr_values: [0.005, 0.001, 0.0005], lr_boundaries: [2, 3]}}
"""

#: Files a run directory may hold (relative paths; snapshots are matched by pattern).
OUTPUTS = {
    rundir.CONFIG_FILE,
    rundir.HISTORY_FILE,
    rundir.LAST_CKPT,
    rundir.BEST_CKPT,
    rundir.FINAL_MODEL,
    rundir.STATS_FILE,
    rundir.SUMMARY_FILE,
}
TIMEOUT_S = 300


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "TF_USE_LEGACY_KERAS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "CUDA_VISIBLE_DEVICES": "",
        "PYTHONPATH": str(ROOT),
        # several trainers share two cores: one thread each avoids oversubscription
        "TF_NUM_INTRAOP_THREADS": "1",
        "TF_NUM_INTEROP_THREADS": "1",
    }


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "keras_ternary", "train", "--verbose", "0", *args],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _parse_history(text: str) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(text))
    assert tuple(reader.fieldnames or ()) == rundir.HISTORY_FIELDS, reader.fieldnames
    rows = list(reader)
    for i, row in enumerate(rows, start=1):
        assert None not in row and None not in row.values(), f"ragged row {i}: {row}"
        assert int(row["epoch"]) == i, f"history epochs not consecutive: {rows}"
        for value in row.values():
            if value:
                float(value)
    return rows


def check_run_dir(run_dir: Path) -> dict:
    """Parse every file of ``run_dir``; return {"rows", "epochs_done", "temp"}.

    Fails on a half-written or unparsable output, or an unexpected non-hidden file.
    Hidden files (``.name.XXXX.tmp``/``.h5``) are temporary files in the making.
    """
    info = {"rows": None, "epochs_done": None, "temp": []}
    if not run_dir.exists():
        return info
    for path in sorted(run_dir.rglob("*")):
        rel = path.relative_to(run_dir).as_posix()
        if rel in (rundir.MARKER_FILE, rundir.LOCK_FILE):
            continue
        if path.name.startswith("."):
            info["temp"].append(rel)
            continue
        if path.is_dir():
            assert rel in ("checkpoints", "snapshots"), f"unexpected directory {rel}"
            continue
        is_snapshot = rel.startswith("snapshots/epoch_") and rel.endswith(".json")
        assert rel in OUTPUTS or is_snapshot, f"unexpected file {rel} in {run_dir}"
        try:
            if rel.endswith(".yaml"):
                assert isinstance(yaml.safe_load(path.read_text()), dict), rel
            elif rel.endswith(".json"):
                json.loads(path.read_text())
            elif rel.endswith(".csv"):
                info["rows"] = _parse_history(path.read_text())
            elif rel.endswith(".h5"):
                with h5py.File(path, "r") as handle:
                    assert "model_config" in handle.attrs, f"{rel} holds no model"
                    if rel == rundir.LAST_CKPT:
                        state = json.loads(handle.attrs[rundir.STATE_ATTR])
                        info["epochs_done"] = state["epochs_done"]
        except FileNotFoundError:  # removed between listing and reading (a fresh start)
            continue
        except Exception as exc:
            pytest.fail(f"{rel} in {run_dir} is half-written or corrupt: {exc!r}")
    if info["rows"] is not None and info["epochs_done"] is not None:
        # the history row of an epoch is written just before its checkpoint
        assert info["epochs_done"] <= len(info["rows"]) <= info["epochs_done"] + 1
    return info


def _wait(procs: list[subprocess.Popen], dirs: list[Path], until, deadline: float) -> None:
    """Check ``dirs`` every 150 ms until ``until()`` is true (or every process ended)."""
    while not until():
        for d in dirs:
            check_run_dir(d)
        if time.monotonic() > deadline:
            for p in procs:
                p.kill()
            pytest.fail("training did not progress in time")
        time.sleep(0.15)


def _signal_in_epoch2(
    victim: subprocess.Popen,
    run_dir: Path,
    sig: signal.Signals,
    procs: list[subprocess.Popen],
    dirs: list[Path],
    deadline: float,
) -> None:
    """Wait until ``victim`` has checkpointed epoch 1, then send ``sig`` in epoch 2."""

    def epoch1_saved() -> bool:
        return victim.poll() is not None or check_run_dir(run_dir)["epochs_done"] == 1

    _wait(procs, dirs, epoch1_saved, deadline)
    assert victim.poll() is None, f"the run ended before it could be sent {sig.name}"
    time.sleep(0.3)
    victim.send_signal(sig)


def _finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{out}\nstderr:\n{err}"
    return out


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path):
    write_cifar_dir(tmp_path / "data", n_per_file=20)
    config = tmp_path / "crash.yaml"
    config.write_text(CONFIG.format(data=tmp_path / "data"))
    ref_dir, run_dir = tmp_path / "reference", tmp_path / "crashed"
    deadline = time.monotonic() + TIMEOUT_S

    reference = _start(["--config", str(config), "--out", str(ref_dir)], tmp_path)
    victim = _start(["--config", str(config), "--out", str(run_dir)], tmp_path)
    procs, dirs = [reference, victim], [ref_dir, run_dir]

    _signal_in_epoch2(victim, run_dir, signal.SIGKILL, procs, dirs, deadline)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    killed = check_run_dir(run_dir)
    done = killed["epochs_done"]  # normally 1 (killed in epoch 2); later on a slow machine
    assert 1 <= done < 4 and len(killed["rows"]) <= done + 1, killed
    assert not (run_dir / rundir.SUMMARY_FILE).exists()

    resumed = _start(["--resume", str(run_dir)], tmp_path)
    procs = [reference, resumed]
    _wait(procs, dirs, lambda: all(p.poll() is not None for p in procs), deadline)
    ref_out, resumed_out = _finish(reference), _finish(resumed)
    assert f"resuming {run_dir} after epoch {done}" in resumed_out, resumed_out
    assert f"run directory: {ref_dir} (finished, 4 epochs)" in ref_out, ref_out

    ref, res = check_run_dir(ref_dir), check_run_dir(run_dir)
    # temporary files: none from a clean run; after the kill at most the stale hidden ones
    assert ref["temp"] == [] and set(res["temp"]) <= set(killed["temp"]), (ref, res, killed)
    assert [int(r["epoch"]) for r in res["rows"]] == [1, 2, 3, 4]
    for key in ("epoch", "paper_epoch", "lr", "delta"):
        assert [r[key] for r in res["rows"]] == [r[key] for r in ref["rows"]], key
    deltas = [float(r["delta"]) for r in ref["rows"]]
    assert deltas == sorted(deltas) and deltas[0] < deltas[-1], "Δ must grow"
    assert len({r["lr"] for r in ref["rows"]}) == 3, "the learning rate must step"
    for key in ("loss", "val_loss", "sparsity"):
        for a, b in zip(res["rows"], ref["rows"], strict=True):
            assert float(a[key]) == pytest.approx(float(b[key]), rel=2e-3, abs=1e-4), key
    summaries = [json.loads((d / rundir.SUMMARY_FILE).read_text()) for d in dirs]
    assert summaries[0]["final_delta"] == summaries[1]["final_delta"]


@pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="needs POSIX signals")
def test_sigterm_mid_epoch_stops_like_ctrl_c_and_leaves_no_temporary_file(tmp_path):
    """SIGTERM (``kill``, a batch scheduler's time limit): one line, exit 143, clean run dir."""
    write_cifar_dir(tmp_path / "data", n_per_file=20)
    config = tmp_path / "term.yaml"
    config.write_text(CONFIG.format(data=tmp_path / "data"))
    run_dir = tmp_path / "terminated"
    deadline = time.monotonic() + TIMEOUT_S
    victim = _start(["--config", str(config), "--out", str(run_dir)], tmp_path)
    _signal_in_epoch2(victim, run_dir, signal.SIGTERM, [victim], [run_dir], deadline)
    _, err = victim.communicate(timeout=60)
    assert victim.returncode == 143, err
    assert err.strip().splitlines()[-1] == (
        "interrupted (runs can be continued with --resume / the same sweep command) (SIGTERM)"
    ), err
    stopped = check_run_dir(run_dir)
    assert 1 <= stopped["epochs_done"] < 4 and stopped["temp"] == [], stopped
    assert not (run_dir / rundir.SUMMARY_FILE).exists()
