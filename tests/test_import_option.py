"""``--import MODULE`` on ``python -m hw_sim.profile`` and ``python -m keras_ternary export``.

The model uses a custom initializer registered by ``tests.custom_objects``: a fresh process
cannot load it without ``--import tests.custom_objects`` and loads it with it. (The error
cases of ``--import`` are in ``tests/test_reliability_cli.py``.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import larq as lq
import pytest
import tensorflow as tf

from keras_ternary import Ternary
from tests.custom_objects import SignedUniform

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def custom_model(tmp_path_factory) -> Path:
    inputs = tf.keras.Input((8, 8, 3))
    x = lq.layers.QuantConv2D(
        8,
        3,
        padding="same",
        use_bias=False,
        kernel_quantizer=Ternary(0.1),
        kernel_initializer=SignedUniform(0.5, seed=1),
        name="conv",
    )(inputs)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    x = lq.layers.QuantDense(4, kernel_quantizer=Ternary(0.1), name="fc")(x)
    path = tmp_path_factory.mktemp("import") / "custom.h5"
    tf.keras.Model(inputs, x).save(path)
    return path


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def _error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if "error:" in ln]


def test_profile_needs_and_uses_import(custom_model: Path):
    bare = _run("hw_sim.profile", str(custom_model), "--format", "json")
    assert bare.returncode == 2
    (line,) = _error_lines(bare.stderr)
    assert "SignedUniform" in line
    done = _run(
        "hw_sim.profile", str(custom_model), "--format", "json", "--import", "tests.custom_objects"
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["total"]["macs"] == 8 * 8 * 27 * 8 + 8 * 4


def test_export_needs_and_uses_import(custom_model: Path, tmp_path: Path):
    out = tmp_path / "m.tkp"
    bare = _run("keras_ternary", "export", str(custom_model), "--to", "packed", "--out", str(out))
    assert bare.returncode == 2
    (line,) = _error_lines(bare.stderr)
    assert "SignedUniform" in line
    assert not out.exists()
    done = _run(
        "keras_ternary",
        "export",
        str(custom_model),
        "--to",
        "packed",
        "--out",
        str(out),
        "--import",
        "tests.custom_objects",
        "--import",
        "larq",
    )
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 0
