"""The quick start shows the method working: sparse *and* accurate, on any x86 CPU.

Runs the real ``python -m keras_ternary quickstart`` (about 2 minutes on 2 cores) and pins the
properties the README promises, not exact numbers: those depend on the CPU's rounding.
"""

from __future__ import annotations

import csv
import subprocess
import sys


def test_quickstart_ends_sparse_and_accurate(tmp_path):
    out = tmp_path / "quickstart"
    # the README's command, in a process of its own (as a user runs it)
    command = [sys.executable, "-m", "keras_ternary", "quickstart", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "final test accuracy" in result.stdout
    with open(out / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == list(range(1, 10))
    accuracy = [100 * float(r["val_accuracy"]) for r in rows]
    last, best, first = accuracy[-1], max(accuracy), accuracy[0]
    assert last >= best - 3.0, f"last epoch {last:.1f}% is more than 3 points below {best:.1f}%"
    assert last > first, f"last epoch {last:.1f}% is not above the first {first:.1f}%"
    assert last >= 50.0, f"the sparse network learned too little: {accuracy}"
    assert float(rows[-1]["sparsity"]) >= 0.85 and float(rows[-1]["entropy"]) < 0.5
    deltas = [float(r["delta"]) for r in rows]
    assert deltas[3:] == [0.3] * 6  # saturated in epoch 4, rising before
    assert all(a < b for a, b in zip(deltas[:3], deltas[1:4], strict=True))
