"""``import keras_ternary`` is light, and saved models still reload without custom_objects.

That the light subcommands (``--help``, ``configs``, ``report``) do not import TensorFlow
is tested in tests/test_first_hour.py.

Every check runs in a fresh interpreter: what matters is the order of the imports.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow as tf

from keras_ternary.activations import HardTanh
from tests.helpers import tiny_ternary_model

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TF_USE_LEGACY_KERAS", None)  # as a user's shell: keras_ternary selects it
    return subprocess.run(
        [sys.executable, *args, "-c", code] if code else [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_import_does_not_load_tensorflow_or_larq():
    proc = _python(
        "import sys, keras_ternary\n"
        "assert 'tensorflow' not in sys.modules and 'larq' not in sys.modules\n"
        "import keras_ternary.rundir, keras_ternary.config, keras_ternary.report\n"
        "import keras_ternary.sweep, keras_ternary.tflog\n"
        "keras_ternary.config.config_from_dict({'epochs': 2})  # validation too\n"
        "assert 'tensorflow' not in sys.modules, 'a light module imported TensorFlow'\n"
        "assert keras_ternary.regimes.delta_at(0, 'fixed', 0.1) == 0.1\n"
        "assert 'tensorflow' not in sys.modules\n"
    )
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    """A .h5 model with Ternary quantizers and a HardTanh layer (both registered classes)."""
    base = tiny_ternary_model()
    outputs = HardTanh(name="hardtanh")(base.output)
    path = tmp_path_factory.mktemp("model") / "m.h5"
    tf.keras.Model(base.input, outputs).save(path, save_format="h5")
    return path


LOAD = (
    "model = {loader}({path!r})\n"
    "kinds = {{type(l).__name__ for l in model.layers}}\n"
    "assert 'HardTanh' in kinds, kinds\n"
    "q = model.get_layer('conv').kernel_quantizer\n"
    "assert type(q).__name__ == 'Ternary' and type(q).__module__ == 'keras_ternary.quantizers'\n"
)

ORDERS = {
    "keras_ternary_then_tensorflow": (
        "import sys, keras_ternary\nassert 'tensorflow' not in sys.modules\n"
        "import tensorflow as tf\n",
        "tf.keras.models.load_model",
    ),
    "tensorflow_then_keras_ternary": (
        "import os\nos.environ['TF_USE_LEGACY_KERAS'] = '1'\n"
        "import tensorflow as tf\nimport keras_ternary\n",
        "tf.keras.models.load_model",
    ),
    "keras_ternary_then_larq": (
        "import keras_ternary\nimport larq\nimport tensorflow as tf\n",
        "tf.keras.models.load_model",
    ),
    "keras_ternary_then_tf_keras": (
        "import keras_ternary\nimport tf_keras\n",
        "tf_keras.models.load_model",
    ),
}


@pytest.mark.parametrize("order", sorted(ORDERS))
def test_saved_models_reload_without_custom_objects(saved_model, order):
    prelude, loader = ORDERS[order]
    proc = _python(prelude + LOAD.format(loader=loader, path=str(saved_model)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "keras_ternary:" not in proc.stderr  # the hook's warning


def test_keras3_after_import_is_a_warning_not_a_broken_import():
    """A user who asked for Keras 3 keeps a working ``import tensorflow``; we warn."""
    proc = _python(
        "import os, warnings\nos.environ['TF_USE_LEGACY_KERAS'] = '0'\n"
        "warnings.simplefilter('always')\n"
        "import keras_ternary\nimport tensorflow as tf\nprint(tf.__version__)\n"
    )
    if proc.returncode != 0 and "No module named 'keras'" in proc.stderr:
        pytest.skip("Keras 3 is not installed")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "needs Keras 2" in proc.stderr


def test_first_use_imports_tensorflow_quietly():
    proc = _python("import keras_ternary\nkeras_ternary.Ternary(0.1)\n")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for word in ("cuInit", "oneDNN custom operations", "cudart_stub", "absl::InitializeLog"):
        assert word not in proc.stderr, proc.stderr
