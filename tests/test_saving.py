import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from keras_ternary import Ternary, resnet20_star
from keras_ternary.callbacks import find_ternary_quantizers


@pytest.mark.parametrize("ext", ["h5", "keras"])
@pytest.mark.parametrize("input_quantizer", [None, "ternary"])
def test_save_load_keeps_predictions_and_delta(tmp_path, ext, input_quantizer):
    model = resnet20_star(inflation=1, blocks_per_stage=1, seed=2, input_quantizer=input_quantizer)
    for i, q in enumerate(find_ternary_quantizers(model, inputs=True)):
        q.delta = 0.05 + 0.01 * i
    x = np.random.default_rng(0).normal(size=(3, 32, 32, 3)).astype("float32")
    path = str(tmp_path / f"model.{ext}")
    model.save(path)
    loaded = tf.keras.models.load_model(path)  # no custom_objects
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    deltas = [q.delta for q in find_ternary_quantizers(loaded, inputs=True)]
    assert deltas == [q.delta for q in find_ternary_quantizers(model, inputs=True)]
    assert all(isinstance(q, Ternary) for q in find_ternary_quantizers(loaded))


def _run(code: str, env_extra: dict) -> subprocess.CompletedProcess:
    import os

    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )


def test_import_selects_legacy_keras_in_fresh_interpreter():
    r = _run(
        "import keras_ternary, tensorflow as tf, tf_keras;"
        "assert tf.keras.layers.Layer is tf_keras.layers.Layer; print('ok')",
        {},
    )
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]


def test_import_after_keras3_raises_clear_error():
    r = _run("import tensorflow as tf; tf.keras.layers.Dense; import keras_ternary", {})
    assert r.returncode != 0
    assert "TF_USE_LEGACY_KERAS=1" in r.stderr and "ImportError" in r.stderr
