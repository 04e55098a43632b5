"""``sweep --ray``: runs as Ray tasks on a local Ray instance (2 CPUs, started once per module).

The runs are tiny (ResNet-8, k = 1, SHAPES-10); every run trains in a child process of a Ray
worker, so most of each test's time is TensorFlow starting in those children.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from keras_ternary import cli
from keras_ternary.rundir import read_history, run_status

ray = pytest.importorskip("ray", reason="the cluster extra (Ray) is not installed")

ROOT = Path(__file__).resolve().parents[1]

TINY_BASE = {
    "epochs": 2,
    "paper_epochs": 20,
    "batch_size": 16,
    "snapshot_epochs": [],
    "tensorboard": False,
    "data": {"source": "shapes10", "train_size": 64, "test_size": 32},
    "model": {"inflation": 1, "blocks_per_stage": 1},
    "ternary": {"regime": "linear", "delta0": 0.05, "multiplier": 0.1, "delta_max": 0.5},
}


def write_sweep(path: Path, name: str, seeds: list[int], **base: object) -> Path:
    spec = {"sweep": name, "base": {**TINY_BASE, **base}, "grid": {"seed": seeds}}
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture(scope="module")
def ray_address():
    """A local Ray instance for this module: 2 CPUs, small object store, no dashboard.

    Workers (and so the runs' child processes) import this checkout's ``keras_ternary``.
    """
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "RAY_DEDUP_LOGS")}
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), saved["PYTHONPATH"]]))
    os.environ["RAY_DEDUP_LOGS"] = "0"
    context = ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=80 * 1024**2,
        log_to_driver=False,
    )
    try:
        yield context.address_info["gcs_address"]
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_two_runs_in_parallel_then_skipped(ray_address, tmp_path, capsys):
    sweep = write_sweep(tmp_path / "two.yaml", "two", [0, 1])
    argv = ["sweep", str(sweep), "--out-root", str(tmp_path / "runs"), "--ray", "local"]
    assert cli.main([*argv, "--cpus-per-run", "1"]) == 0
    out = capsys.readouterr().out
    assert "sweep: 2 finished, 0 skipped" in out
    dirs = [tmp_path / "runs" / "two" / f"seed={s}" for s in (0, 1)]
    assert [run_status(d) for d in dirs] == ["finished", "finished"]
    assert all(len(read_history(d / "history.csv")) == 2 for d in dirs)
    # in parallel: each run wrote its config (start) before the other wrote its summary (end)
    starts = [(d / "config.yaml").stat().st_mtime for d in dirs]
    ends = [(d / "summary.json").stat().st_mtime for d in dirs]
    assert max(starts) < min(ends)

    assert cli.main(argv) == 0  # the second invocation has nothing to do
    out = capsys.readouterr().out
    assert out.count("finished, skipped") == 2 and "sweep: 0 finished, 2 skipped" in out
    assert [(d / "summary.json").stat().st_mtime for d in dirs] == ends


def test_failed_runs_reported_with_name_and_error(ray_address, tmp_path, capsys):
    data = {"source": "cifar10_dir", "dir": str(tmp_path / "no-data")}
    sweep = write_sweep(tmp_path / "bad.yaml", "bad", [0, 1], data=data)
    argv = ["sweep", str(sweep), "--out-root", str(tmp_path / "runs"), "--ray", "local"]
    assert cli.main([*argv, "--cpus-per-run", "1"]) == 1
    captured = capsys.readouterr()
    errors = sorted(ln for ln in captured.err.splitlines() if ln.startswith("error:"))
    assert len(errors) == 2, captured.err
    for seed, line in enumerate(errors):
        assert line.startswith(f"error: sweep bad: run seed={seed}: ") and "no-data" in line
    assert "Traceback" not in captured.err
    assert "2 failed" in captured.out


def test_out_root_not_writable(ray_address, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    sweep = write_sweep(tmp_path / "s.yaml", "s", [0])
    argv = ["sweep", str(sweep), "--out-root", str(tmp_path / "file" / "runs"), "--ray", "local"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --out-root ") and "not writable" in err
    assert len(err.splitlines()) == 1


def _children(cwd: Path) -> list[int]:
    """Processes running keras_ternary in ``cwd`` (the runs' child processes)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            same = os.readlink(entry / "cwd") == str(cwd)
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if same and b"keras_ternary" in cmd:
            pids.append(int(entry.name))
    return pids


@pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="needs /proc")
def test_interrupted_sweep_resumes(ray_address, tmp_path, capsys):
    epochs = 6  # ~1 s per epoch after the first, so Ctrl-C lands mid-run
    sweep = write_sweep(
        tmp_path / "long.yaml",
        "long",
        [0],
        epochs=epochs,
        data={**TINY_BASE["data"], "train_size": 480},
    )
    run = tmp_path / "runs" / "long" / "seed=0"
    argv = ["sweep", str(sweep), "--out-root", str(tmp_path / "runs"), "--cpus-per-run", "1"]
    env = {**os.environ, "RAY_ADDRESS": ray_address, "PYTHONPATH": str(ROOT)}
    driver = subprocess.Popen(
        [sys.executable, "-m", "keras_ternary", *argv, "--ray", "auto"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300  # a guard against a hung test, not a measurement
        # an epoch is resumable once its checkpoint is written (after its history row)
        while run_status(run) != "partial" and driver.poll() is None:
            assert time.monotonic() < deadline, "the run never finished an epoch"
            time.sleep(0.2)
        driver.send_signal(signal.SIGINT)  # Ctrl-C
        out, _ = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 130, out
    assert "interrupted" in out
    assert _children(tmp_path) == []  # the run's process stopped before the driver returned
    assert run_status(run) == "partial"
    done = len(read_history(run / "history.csv"))
    assert 1 <= done < epochs

    assert cli.main([*argv, "--ray", "local"]) == 0  # the same command continues
    out = capsys.readouterr().out
    assert "resuming in" in out and "sweep: 1 finished" in out
    assert [r["epoch"] for r in read_history(run / "history.csv")] == list(range(1, epochs + 1))


def test_missing_ray_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    sweep = write_sweep(tmp_path / "s.yaml", "s", [0])
    assert cli.main(["sweep", str(sweep), "--out-root", str(tmp_path), "--ray", "local"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --ray needs Ray") and 'pip install -e ".[cluster]"' in err
    assert len(err.splitlines()) == 1


def test_resources_need_ray(tmp_path, capsys):
    sweep = write_sweep(tmp_path / "s.yaml", "s", [0])
    assert cli.main(["sweep", str(sweep), "--cpus-per-run", "1"]) == 2
    assert "need --ray" in capsys.readouterr().err
