"""Corrupt HDF5 files that crash the HDF5 library become one clear error, not a dead process.

``tests/fixtures/hdf5_crash.h5`` is ``tests.helpers.tiny_ternary_model().save(...)`` with 27
bytes overwritten: HDF5 1.14.6 (h5py 3.14) dies with SIGSEGV reading its ``model_config``
attribute. The tests that need that crash skip when the installed HDF5 reads the file
without crashing; the probe's own logic is tested with children that crash or hang on purpose.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_ternary.fileio import UnreadableFileError, probe_hdf5, run_isolated

CRASH_H5 = Path(__file__).resolve().parent / "fixtures" / "hdf5_crash.h5"


@pytest.fixture(scope="module")
def crashing_file() -> Path:
    """The corrupt file, if reading it in-process would really crash this HDF5 build."""
    assert CRASH_H5.is_file(), f"{CRASH_H5} is missing (a test fixture, tracked in git)"
    code = "import sys, h5py\nwith h5py.File(sys.argv[1], 'r') as f: f.attrs['model_config']"
    proc = subprocess.run([sys.executable, "-c", code, str(CRASH_H5)], capture_output=True)
    if proc.returncode >= 0:
        pytest.skip("this HDF5 build reads the corrupt file without crashing")
    return CRASH_H5


def test_child_killed_by_a_signal_is_an_error(tmp_path):
    code = "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)"
    with pytest.raises(UnreadableFileError, match=r"x\.h5: the HDF5 library crashed .*SIGSEGV"):
        run_isolated(code, tmp_path / "x.h5", timeout=60)


def test_child_that_hangs_is_killed_and_an_error(tmp_path):
    with pytest.raises(UnreadableFileError, match=r"did not finish within 1 s"):
        run_isolated("import time\ntime.sleep(60)", tmp_path / "x.h5", timeout=1)


def test_python_errors_and_good_files_pass(tmp_path):
    run_isolated("raise SystemExit(1)", tmp_path / "x.h5", timeout=60)
    run_isolated("raise ValueError('reported by the caller')", tmp_path / "x.h5", timeout=60)
    (tmp_path / "random.h5").write_bytes(np.random.default_rng(0).bytes(2048))
    probe_hdf5(tmp_path / "random.h5")  # HDF5 rejects it cleanly: the caller reports it
    from tests.helpers import tiny_ternary_model

    tiny_ternary_model().save(tmp_path / "good.h5")
    probe_hdf5(tmp_path / "good.h5")


def test_probe_catches_the_real_crash(crashing_file):
    with pytest.raises(UnreadableFileError, match="crashed reading the file"):
        probe_hdf5(crashing_file)


def test_checkpoint_reader_reports_the_crash(crashing_file):
    from keras_ternary.rundir import RunError, read_checkpoint_state

    with pytest.raises(RunError, match=r"checkpoint .*hdf5_crash\.h5: the HDF5 library crashed"):
        read_checkpoint_state(crashing_file)


def test_hw_sim_loader_reports_the_crash(crashing_file):
    from hw_sim.errors import HwSimError
    from hw_sim.loaders import load_graph

    with pytest.raises(HwSimError, match="crashed reading the file"):
        load_graph(str(crashing_file))


@pytest.mark.parametrize("cli", ["hw_sim.profile", "export"])
def test_command_lines_exit_with_one_error_line(crashing_file, tmp_path, capsys, cli):
    """In-process: without the probe, the HDF5 crash would kill the test run itself."""
    out = tmp_path / "x.ktp"
    if cli == "export":
        from keras_ternary.cli import main

        status = main(["export", str(crashing_file), "--to", "packed", "--out", str(out)])
    else:
        from hw_sim.profile import main

        status = main([str(crashing_file)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1, err
    assert "error:" in err[0] and "crashed reading the file" in err[0]
    assert list(tmp_path.iterdir()) == []


def test_export_report_script_reports_the_crash(crashing_file, tmp_path, capsys):
    from tests.test_export_report import _script

    npz = tmp_path / "d.npz"
    x = np.zeros((2, 32, 32, 3), np.float32)
    np.savez(npz, x_test=x, y_test=np.zeros(2, np.int64), x_calib=x)
    assert _script().main([f"m={crashing_file}", "--npz", str(npz)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "crashed reading the file" in err[0], err
