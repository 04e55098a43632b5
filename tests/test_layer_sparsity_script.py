"""scripts/layer_sparsity.py: per-layer and per-stage zeros from a run's statistics files."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "layer_sparsity.py"
spec = importlib.util.spec_from_file_location("layer_sparsity", SCRIPT)
layer_sparsity = importlib.util.module_from_spec(spec)
spec.loader.exec_module(layer_sparsity)


def _layer(name: str, n: int, zeros: int) -> dict:
    return {"name": name, "n_weights": n, "n_zero": zeros, "n_pos": n - zeros, "n_neg": 0}


def test_pools_zeros_per_stage_from_a_snapshot(tmp_path, capsys):
    snapshot = {
        "epoch": 3,
        "stats": {
            "layers": [
                _layer("stage1_block1_conv1", 100, 50),
                _layer("stage1_block1_conv2", 300, 250),
                _layer("fc", 10, 1),
            ]
        },
    }
    path = tmp_path / "epoch_0003.json"
    path.write_text(json.dumps(snapshot))
    assert layer_sparsity.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "stage1 (pooled)                   400      100   75.0%" in out
    assert "all                               410      109   73.4%" in out


def test_bad_file_is_one_error_line(tmp_path, capsys):
    path = tmp_path / "summary.json"
    path.write_text(json.dumps({"accuracy": 0.5}))
    assert layer_sparsity.main([str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no per-layer statistics" in err[0]
